"""nixos/core-python-modules.nix (with the MTA classes core loads: deferred-postfix-maps.nix,
one-click.nix) evaluated for real, against a model of the nixpkgs it uses.

No nixpkgs tree exists here, so tests/nixos/models/mailman-package-set.nix models (with citations)
the pieces the override relies on: the extensible mailman package set, makeOverridable, Python's
withPackages/buildEnv, and requiredPythonModules, which silently drops anything that is not a
Python module of the same interpreter. The real build runs in the nixos-vm-test workflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from nixos_support import NIXOS, evaluate_json

MODEL = Path(__file__).resolve().parent / "models" / "mailman-package-set.nix"
WIRING = NIXOS / "core-python-modules.nix"
INCOMING = NIXOS / "deferred-postfix-maps.nix"
ONE_CLICK = NIXOS / "one-click.nix"
MODULE_FILES = ["mailman_deferred_mta.py", "mailman_one_click.py", "mailman_one_click_mta.py"]


def evaluate(nix_instantiate: str, body: str) -> Any:
    expression = f"""
      let
        pkgs = import {MODEL};
        host = import {WIRING} {{ inherit pkgs; }};
        incoming = import {INCOMING};
        oneClick = import {ONE_CLICK} {{
          inherit pkgs;
          config.services.mailman = {{
            webUser = "mailman-web";
            settings.webservice = {{ hostname = "127.0.0.1"; port = "8001"; }};
          }};
          deployment.hostname = "lists.example.org";
        }};
        names = env: map (d: d.name) env.paths;
      in {body}
    """
    # --readonly-mode: the module file's store path is computed, nothing is written.
    return evaluate_json(nix_instantiate, "--readonly-mode", "--expr", expression)


@pytest.mark.nix
@pytest.mark.parametrize("hyperkitty", [True, False])
def test_core_environment_gets_the_deferred_class_beside_stock_packages(
    nix_instantiate: str, hyperkitty: bool
) -> None:
    flag = "true" if hyperkitty else "false"
    result = evaluate(
        nix_instantiate,
        f"""let envs = host.services.mailman.packageSet.buildEnvs {{ withHyperkitty = {flag}; }};
            in {{ core = names envs.mailmanEnv; web = names envs.webEnv; }}""",
    )
    stock = ["python3-3.13", "python3.13-mailman-3.3.10", "python3.13-psycopg2"]
    if hyperkitty:
        stock.append("python3.13-mailman-hyperkitty-1.2.1")
    assert result["core"] == [*stock, "mailman-site-core-modules"]
    # mailman-web's interpreter never loads core's MTA class: it stays the stock environment.
    assert result["web"] == ["python3-3.13", "python3.13-mailman-web-0.0.9", "python3.13-psycopg2"]


@pytest.mark.nix
def test_the_module_lands_in_the_interpreters_site_packages(nix_instantiate: str) -> None:
    script = evaluate(
        nix_instantiate,
        """let env = (host.services.mailman.packageSet.buildEnvs { }).mailmanEnv;
           in (builtins.elemAt env.paths 3).script""",
    )
    copies = [line.split()[1:] for line in script.splitlines() if line.startswith("cp ")]
    assert len(copies) == len(MODULE_FILES)
    for (source, target), module in zip(copies, MODULE_FILES, strict=True):
        assert source.endswith(f"-{module}")
        assert target == f"$out/lib/python3.13/site-packages/{module}"


@pytest.mark.nix
def test_core_loads_the_class_the_module_file_defines(nix_instantiate: str) -> None:
    incoming = evaluate(nix_instantiate, "incoming.services.mailman.settings.mta.incoming")
    module, _, name = incoming.rpartition(".")
    assert f"{module}.py" in MODULE_FILES
    assert f"class {name}(" in (NIXOS / f"{module}.py").read_text()


@pytest.mark.nix
def test_core_delivers_with_the_one_click_function_the_module_file_defines(
    nix_instantiate: str,
) -> None:
    outgoing = evaluate(nix_instantiate, "oneClick.services.mailman.settings.mta.outgoing")
    module, _, name = outgoing.rpartition(".")
    assert f"{module}.py" in MODULE_FILES
    assert f"\ndef {name}(" in (NIXOS / f"{module}.py").read_text()
    # The reconcile and the tests name it through mailman_one_click.OUTGOING.
    assert f'OUTGOING = "{outgoing}"' in (NIXOS / "mailman_one_click.py").read_text()


@pytest.mark.nix
def test_model_drops_a_path_that_is_not_a_python_module(nix_instantiate: str) -> None:
    """The model keeps nixpkgs' filter, so a wiring without toPythonModule would fail above."""
    result = evaluate(
        nix_instantiate,
        """names (pkgs.mailmanPackages.python3.withPackages
             (ps: [ (pkgs.runCommand "plain" { } "") ]))""",
    )
    assert result == ["python3-3.13"]


@pytest.mark.nix
def test_the_one_click_settings_file_is_where_and_what_the_delivery_reads(
    nix_instantiate: str,
) -> None:
    etc = evaluate(nix_instantiate, "builtins.attrNames oneClick.environment.etc")
    settings = json.loads(evaluate(
        nix_instantiate, 'oneClick.environment.etc."mailman-one-click.json".text'))
    source = (NIXOS / "mailman_one_click.py").read_text()
    assert etc == ["mailman-one-click.json"]
    assert f'SETTINGS_FILE = "{etc[0]}"' in source
    assert settings == {
        "base_url": "https://lists.example.org/one-click",
        # The unit's credential (LoadCredential one-click-key on mailman.service).
        "key_file": "/run/credentials/mailman.service/one-click-key",
        "switches_file": "/var/lib/mailman-one-click/lists.json",
    }
    credentials = evaluate(
        nix_instantiate, "oneClick.systemd.services.mailman.serviceConfig.LoadCredential")
    assert credentials == ["one-click-key:/var/lib/mailman-site/secrets/one-click-key"]
