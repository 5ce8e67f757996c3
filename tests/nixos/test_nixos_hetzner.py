"""hetzner.nix evaluated for real (builtins only): the uplink it configures on the real host."""

from __future__ import annotations

import fnmatch
import os
import subprocess
import sys

import pytest
from nixos_support import DOCUMENTS, NIXOS, evaluate_json, require_tool

UPLINK = 'systemd.network.networks."10-uplink"'


def hetzner_value(nix_instantiate: str, attribute: str) -> object:
    expression = (
        f"(import {NIXOS / 'hetzner.nix'} {{ modulesPath = /modules; deployment = import "
        f"{NIXOS / 'deployment.nix'} {{ documentPath = {DOCUMENTS / 'production.json'}; }}; }})"
        f".{attribute}"
    )
    return evaluate_json(nix_instantiate, "--expr", expression)


def matches(name_globs: object, interface: str) -> bool:
    """systemd.network(5) [Match] Name=: a whitespace-separated list of shell-style globs."""
    globs = name_globs if isinstance(name_globs, list) else [name_globs]
    return any(
        fnmatch.fnmatchcase(interface, glob) for entry in globs for glob in str(entry).split()
    )


@pytest.mark.nix
@pytest.mark.parametrize(
    "interface",
    [
        # What the first switch finds: nixos-infect's NixOS (its networking.nix sets
        # usePredictableInterfaceNames = false on Hetzner's Debian, whose uplink is eth0) keeps that
        # name until the next reboot. Unmatched, networkd leaves the uplink without addresses.
        "eth0",
        # After a reboot into our configuration (predictable names): cx*2/cpx/cax/ccx, legacy cx*1.
        "enp1s0",
        "ens3",
    ],
)
def test_uplink_is_configured_under_every_name_the_interface_has(
    nix_instantiate: str, interface: str
) -> None:
    name = hetzner_value(nix_instantiate, f"{UPLINK}.matchConfig.Name")
    assert matches(name, interface), name


METADATA_TABLE = "networking.nftables.tables.mailman-site-metadata"
METADATA_ADDRESS = "169.254.169.254"
# What a process on the host does to read user_data (and with it the SSH host private keys).
FETCH_METADATA = f"""
import socket
server = socket.create_server(("{METADATA_ADDRESS}", 80))
try:
    socket.create_connection(("{METADATA_ADDRESS}", 80), timeout=2).close()
    print("reached")
except OSError:
    print("blocked")
"""


def nftables_file(table: dict) -> str:
    """The table as nixpkgs' nftables module writes it into the ruleset it loads."""
    name, family = "mailman-site-metadata", table["family"]
    return (
        f"table {family} {name}\ndelete table {family} {name}\n"
        f"table {family} {name} {{\n{table['content']}\n}}\n"
    )


@pytest.fixture
def namespace():
    """A network namespace of our own where the metadata address is a local listener."""
    require_tool("ip")
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("network namespaces need root")
        pytest.skip("network namespaces need root")
    name = f"mailman-test-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["ip", "addr", "add", f"{METADATA_ADDRESS}/32", "dev", "lo"],
            ["ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(["ip", "netns", "exec", name, *command], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def fetch_metadata(namespace: str) -> str:
    result = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", FETCH_METADATA],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip()


@pytest.mark.nix
def test_metadata_table_is_valid_nftables(nix_instantiate: str, tmp_path) -> None:
    table = hetzner_value(nix_instantiate, METADATA_TABLE)
    ruleset = tmp_path / "ruleset.nft"
    ruleset.write_text(nftables_file(table))
    result = subprocess.run(
        [require_tool("nft"), "--check", "--file", str(ruleset)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.nix
def test_no_process_on_the_host_reaches_the_metadata_service(
    nix_instantiate: str, namespace: str, tmp_path
) -> None:
    assert fetch_metadata(namespace) == "reached"  # the namespace really serves the address
    ruleset = tmp_path / "ruleset.nft"
    ruleset.write_text(nftables_file(hetzner_value(nix_instantiate, METADATA_TABLE)))
    subprocess.run(
        ["ip", "netns", "exec", namespace, require_tool("nft"), "--file", str(ruleset)],
        check=True,
    )
    assert fetch_metadata(namespace) == "blocked"
