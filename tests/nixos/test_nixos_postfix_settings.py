"""Postfix's main.cf as postfix.nix defines it: what the mailman module asserts, what Postfix knows.

`services.postfix.settings.main` is free-form in NixOS 26.05, so the option check cannot catch
a misspelled main.cf parameter; Postfix's own `postconf` can. postfix.nix is evaluated for real
(builtins only, with the three lib functions it uses) on the sample production document.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nixos_support import DOCUMENTS
from postfix_live import postfix_module, render_main_cf


@pytest.fixture(scope="module")
def main_cf(nix_instantiate: str) -> dict[str, Any]:
    settings: dict[str, Any] = postfix_module(nix_instantiate, DOCUMENTS / "production.json")[
        "settings"
    ]["main"]
    return settings


@pytest.mark.nix
@pytest.mark.parametrize(
    ("parameter", "data_file"),
    [
        ("relay_domains", "postfix_domains"),
        ("transport_maps", "postfix_lmtp"),
        ("local_recipient_maps", "postfix_lmtp"),
    ],
)
def test_mailman_module_assertion_on_the_postfix_maps_holds(main_cf, parameter, data_file):
    # nixpkgs 26.05 nixos/modules/services/mail/mailman.nix, requirePostfixHash: the option must
    # be a list that contains exactly this entry.
    value = main_cf[parameter]
    assert isinstance(value, list)
    assert f"hash:/var/lib/mailman/data/{data_file}" in value


@pytest.mark.nix
def test_tls_key_comes_before_its_certificate_chain(main_cf):
    assert main_cf["smtpd_tls_chain_files"] == [
        "/var/lib/acme/lists.example.org/key.pem",
        "/var/lib/acme/lists.example.org/fullchain.pem",
    ]


@pytest.mark.nix
def test_typed_main_cf_options_have_their_26_05_types(main_cf):
    # The options postfix.nix declares inside settings.main (the rest is free-form).
    assert isinstance(main_cf["message_size_limit"], int)
    assert all(isinstance(n, str) for n in main_cf["mynetworks"])
    client_levels = {
        "none",
        "may",
        "encrypt",
        "dane",
        "dane-only",
        "fingerprint",
        "verify",
        "secure",
    }
    assert main_cf["smtp_tls_security_level"] in client_levels
    assert main_cf["smtpd_tls_security_level"] in {"none", "may", "encrypt"}


def _postconf() -> str:
    path = shutil.which("postconf", path=os.environ.get("PATH", "") + ":/usr/sbin")
    if path is None:
        message = "postconf is not installed (CI installs postfix through .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.mark.nix
def test_every_main_cf_parameter_is_one_postfix_knows(main_cf, tmp_path: Path):
    (tmp_path / "main.cf").write_text(render_main_cf(main_cf))
    (tmp_path / "master.cf").write_text("")
    names = sorted(main_cf)
    result = subprocess.run(
        [_postconf(), "-c", str(tmp_path), "-n", *names],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "unknown parameter" not in result.stderr, result.stderr
    assert "unused parameter" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) >= len(names)
