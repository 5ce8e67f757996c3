"""nixos/boot-devices.nix: the install's recorded device names win over nixos-infect's.

Evaluated for real with nix-instantiate (builtins only). `lib.mkIf` and `lib.mkForce` are given
with nixpkgs' own definitions (lib/modules.nix: `mkIf = condition: content: { _type = "if";
inherit condition content; }`, `mkOverride = priority: content: { _type = "override"; inherit
priority content; }`, `mkForce = mkOverride 50`), and the expression below applies them the way
the module system does: a false `mkIf` defines nothing, an override carries its priority.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from nixos_support import NIXOS, evaluate_json, require_tool

EFFECTIVE = """
let
  lib = {
    mkIf = condition: content: { _type = "if"; inherit condition content; };
    mkForce = content: { _type = "override"; priority = 50; inherit content; };
  };
  module = import ./boot-devices.nix { inherit lib; };
  typed = v: builtins.isAttrs v && v ? _type;
  apply = v:
    if typed v && v._type == "if" then (if v.condition then apply v.content else null)
    else if typed v && v._type == "override" then { priority = v.priority; value = v.content; }
    else v;
  fileSystems = apply module.fileSystems;
in {
  root = if fileSystems == null then null else apply fileSystems."/".device;
  grub = apply module.boot.loader.grub.device;
}
"""


def effective(tmp_path: Path, facts: dict[str, str] | None) -> object:
    nix_instantiate = require_tool("nix-instantiate")
    shutil.copy(NIXOS / "boot-devices.nix", tmp_path / "boot-devices.nix")
    if facts is not None:
        (tmp_path / "boot-devices.json").write_text(json.dumps(facts))
    (tmp_path / "effective.nix").write_text(EFFECTIVE)
    return evaluate_json(nix_instantiate, str(tmp_path / "effective.nix"))


ROOT = "/dev/disk/by-uuid/3f1a6c2e-8d4b-4f6a-9c21-5b7e0d9a1c44"
DISK = "/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-scsi0-0-0-0"


def test_bios_host_gets_root_by_uuid_and_grub_on_the_disk_by_id(tmp_path):
    facts = {"firmware": "bios", "rootDevice": ROOT, "grubDevice": DISK}
    assert effective(tmp_path, facts) == {
        "root": {"priority": 50, "value": ROOT},
        "grub": {"priority": 50, "value": DISK},
    }


def test_efi_host_gets_root_by_uuid_and_leaves_grub_to_nixos_infect(tmp_path):
    facts = {"firmware": "efi", "rootDevice": ROOT}
    assert effective(tmp_path, facts) == {"root": {"priority": 50, "value": ROOT}, "grub": None}


@pytest.mark.parametrize("facts", [None, {"firmware": "bios"}], ids=["no file", "no names"])
def test_without_recorded_names_it_sets_nothing(tmp_path, facts):
    assert effective(tmp_path, facts) == {"root": None, "grub": None}


def test_configuration_imports_it():
    assert "./boot-devices.nix" in (NIXOS / "configuration.nix").read_text()
