"""The committed example stacks: known keys only, no secrets, staging cheaper and disposable."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.workflows.conftest import ROOT
from tests.workflows.test_readme import readme_config_rows

# Hetzner's shared x86 line, smallest first.
SERVER_SIZES = ["cx23", "cx33", "cx43", "cx53"]


def stack(name: str) -> dict[str, Any]:
    document = yaml.safe_load((ROOT / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))
    config = document["config"]
    assert isinstance(config, dict)
    return config


@pytest.mark.parametrize("name", ["staging", "production"])
def test_stack_file_uses_only_documented_mailman_keys(name: str) -> None:
    documented = {row[0].strip("`") for row in readme_config_rows()}

    keys = stack(name).keys()

    assert all(key.startswith("mailman:") for key in keys), keys
    assert {key.removeprefix("mailman:") for key in keys} <= documented


@pytest.mark.parametrize("name", ["staging", "production"])
def test_stack_file_holds_no_secret(name: str) -> None:
    config = stack(name)

    assert "hcloud:token" not in config
    assert not [k for k, v in config.items() if isinstance(v, dict) and "secure" in v]
    assert {"mailman:adminPassword", "mailman:socialLogins"}.isdisjoint(config)


def test_staging_differs_from_production_as_a_staging_stack_should() -> None:
    staging, production = stack("staging"), stack("production")

    assert staging["mailman:hostname"] != production["mailman:hostname"]
    assert (staging["mailman:acmeStaging"], production["mailman:acmeStaging"]) == (True, False)
    assert (staging["mailman:protect"], production["mailman:protect"]) == (False, True)
    assert (staging["mailman:backups"], production["mailman:backups"]) == (False, True)
    assert SERVER_SIZES.index(staging["mailman:serverType"]) < SERVER_SIZES.index(
        production["mailman:serverType"]
    )


def test_both_stacks_run_the_same_nixos_release_and_database() -> None:
    staging, production = stack("staging"), stack("production")

    for key in ("mailman:nixosRelease", "mailman:database"):
        assert staging[key] == production[key]


@pytest.mark.parametrize("name", ["staging", "production"])
def test_stack_file_sets_no_dns_zone_so_both_dns_cases_work(name: str) -> None:
    # deploy.sh writes dnsZone only with --dns-zone; an example zone here would break every
    # site whose DNS is not at Hetzner (the hostname must lie inside the zone).
    assert "mailman:dnsZone" not in stack(name)
