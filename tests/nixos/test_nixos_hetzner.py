"""hetzner.nix evaluated for real (builtins only): the uplink it configures on the real host."""

from __future__ import annotations

import fnmatch
import json
import subprocess

import pytest
from nixos_support import DOCUMENTS, NIXOS, nix_env

UPLINK = 'systemd.network.networks."10-uplink"'


def hetzner_value(nix_instantiate: str, attribute: str) -> object:
    expression = (
        f"(import {NIXOS / 'hetzner.nix'} {{ modulesPath = /modules; deployment = import "
        f"{NIXOS / 'deployment.nix'} {{ documentPath = {DOCUMENTS / 'production.json'}; }}; }})"
        f".{attribute}"
    )
    result = subprocess.run(
        [nix_instantiate, "--eval", "--strict", "--json", "--expr", expression],
        capture_output=True,
        text=True,
        env=nix_env(),
        check=True,
    )
    return json.loads(result.stdout)


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
