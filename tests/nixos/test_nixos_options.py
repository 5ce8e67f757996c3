"""Every option path the configuration defines exists in NixOS 26.05 (options-26.05.txt here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from nix_options import DYNAMIC, OptionList, check_module, check_test_nodes, display
from nixos_support import NIXOS

OPTIONS_FILE = Path(__file__).with_name("options-26.05.txt")
# Plain values for the modules (builtins only) and the pinned nixpkgs source, not modules.
VALUE_FILES = {"deployment.nix", "mailman-units.nix", "backup-status-file.nix", "nixpkgs.nix"}
MODULES = sorted(p for p in NIXOS.glob("*.nix") if p.name not in VALUE_FILES)


@pytest.fixture(scope="module")
def options() -> OptionList:
    return OptionList.read(OPTIONS_FILE)


def module(body: str) -> str:
    return "{ config, lib, pkgs, ... }:\n{\n" + body + "\n}\n"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_sets_only_26_05_options(path: Path, options: OptionList) -> None:
    check = check_module(path.read_text(), options)
    assert check.errors == ()
    assert check.defined, "the walk found no option at all"


def test_vm_test_node_sets_only_26_05_options(options: OptionList) -> None:
    checks = check_test_nodes((NIXOS / "tests" / "mailman-site.nix").read_text(), options)
    assert set(checks) == {"machine"}
    assert checks["machine"].errors == ()


def test_configuration_covers_each_concern(options: OptionList) -> None:
    defined = {
        display(p) for path in MODULES for p in check_module(path.read_text(), options).defined
    }
    for option in [
        "services.mailman.serve.enable",
        "services.mailman.restApiPassFile",
        "services.postfix.settings.main.smtpd_tls_chain_files",
        "services.opendkim.selector",
        f"services.nginx.virtualHosts.{DYNAMIC}.forceSSL",
        "security.acme.acceptTerms",
        "services.postgresql.ensureUsers",
        f"fileSystems.{DYNAMIC}.device",
        "services.openssh.settings.PermitRootLogin",
        "users.users.root.openssh.authorizedKeys.keys",
        "system.stateVersion",
    ]:
        assert option in defined


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('services.postfix.sslCert = "/var/lib/acme/x/full.pem";', "services.postfix.sslCert"),
        ('services.postfix.sslKey = "/var/lib/acme/x/key.pem";', "services.postfix.sslKey"),
        ('services.postfix.config.transport_maps = [ "hash:x" ];', "services.postfix.config"),
        ('services.postfix.relayDomains = [ "hash:x" ];', "services.postfix.relayDomains"),
        ('services.mailman.hyperkittyApiKey = "secret";', "services.mailman.hyperkittyApiKey"),
        ('services.mailman.hyperkittyBaseUrl = "http://x/";', "services.mailman.hyperkittyBaseUrl"),
        ("services.nginx.virtualHosts.x.enableAcme = true;", "services.nginx.virtualHosts.x"),
    ],
)
def test_removed_renamed_or_misspelled_option_is_caught(
    body: str, path: str, options: OptionList
) -> None:
    errors = check_module(module(body), options).errors
    assert len(errors) == 1
    assert errors[0].startswith(path.rsplit(".", 1)[0] if "virtualHosts" in path else path)


def test_removed_option_is_caught_in_nested_sets_and_under_mkif(options: OptionList) -> None:
    body = """
      services.postfix = lib.mkIf true {
        enable = true;
        config = { relay_domains = [ "hash:x" ]; };
      };
      services = { mailman = lib.mkMerge [ { enable = true; } { hyperkittyApiKey = "k"; } ]; };
    """
    errors = check_module(module(body), options).errors
    assert [e.split(":")[0] for e in errors] == [
        "services.postfix.config",
        "services.mailman.hyperkittyApiKey",
    ]


def test_removed_option_is_caught_in_an_explicit_config_section(options: OptionList) -> None:
    source = '{ lib, ... }: { options = { }; config.services.postfix.sslCert = "x"; }'
    assert check_module(source, options).errors == (
        "services.postfix.sslCert: no such option in NixOS 26.05",
    )


def test_value_the_walk_cannot_see_into_is_an_error(options: OptionList) -> None:
    source = "{ lib, ... }: let cfg = { sslCert = 1; }; in { services.postfix = cfg; }"
    (error,) = check_module(source, options).errors
    assert "services.postfix: value cannot be checked" in error


def test_free_form_settings_accept_any_key(options: OptionList) -> None:
    body = 'services.postfix.settings.main.smtpd_banner = "$myhostname ESMTP";'
    assert check_module(module(body), options).errors == ()


def test_dynamic_names_match_only_name_placeholders(options: OptionList) -> None:
    body = 'services.${"post" + "fix"}.enable = true;'
    (error,) = check_module(module(body), options).errors
    assert error.startswith(f"services.{DYNAMIC}")


def test_every_option_family_names_its_26_05_source_file() -> None:
    source = None
    for line in OPTIONS_FILE.read_text().splitlines():
        if re.match(r"^# (nixos|lib)/\S+\.nix", line):
            source = line
        elif line.strip() and not line.startswith("#"):
            assert source is not None, f"{line} has no source file above it"
