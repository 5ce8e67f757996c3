"""components/backup.py: the Storage Box, restic's repository password and the box's SSH key."""

from __future__ import annotations

import json
import re

import pytest

from components.backup import BOX_PASSWORD_SPECIALS
from tests.components.conftest import BASE
from tests.harness import run_program

BOX = "hcloud:index/storageBox:StorageBox"
KEY = "tls:index/privateKey:PrivateKey"
PASSWORD = "random:index/randomPassword:RandomPassword"
COMMAND = "command:remote:Command"


def _document(run):
    return json.loads(run.one(COMMAND, "mailman-nixos-file-deployment.json").inputs["stdin"])


def test_the_box_is_reachable_by_ssh_with_the_stack_key_only(base_run):
    box = base_run.one(BOX)
    public = base_run.one(KEY, "mailman-backup-ssh-key").outputs["publicKeyOpenssh"]
    # As Hetzner stores keys: trimmed (the mock's key ends in a newline, like tls's).
    assert box.inputs["sshKeys"] == [public.strip()]
    assert box.inputs["accessSettings"]["sshEnabled"] is True
    assert not box.inputs["accessSettings"]["sambaEnabled"]
    assert not box.inputs["accessSettings"]["webdavEnabled"]


def test_the_box_has_a_stack_unique_name_and_the_stack_labels(base_run):
    box = base_run.one(BOX)
    assert box.inputs["name"] == "mailman-test-backup-fsn1"
    assert box.inputs["labels"] == {"project": "mailman", "stack": "test"}


def test_the_box_password_is_generated_to_hetzners_policy_and_secret(base_run):
    box = base_run.one(BOX)
    generated = base_run.one(PASSWORD, "mailman-backup-box-password")
    # 12-128 characters with an upper and lower case letter, a digit and a special character
    # from Hetzner's set (the policy the provider's `password` description links to).
    assert 12 <= generated.inputs["length"] <= 128
    for key in ("minUpper", "minLower", "minNumeric", "minSpecial"):
        assert generated.inputs[key] >= 1
    assert set(generated.inputs["overrideSpecial"]) <= set("^°!§$%/()=?+#-.,;:~*@{}_&")
    assert generated.inputs["overrideSpecial"] == BOX_PASSWORD_SPECIALS
    assert box.is_secret("password")


def test_protect_guards_the_box_and_its_keys_like_the_volume(base_run, unprotected_run):
    for run, protected in ((base_run, True), (unprotected_run, False)):
        box = run.one(BOX)
        assert box.protect is protected
        assert box.inputs["deleteProtection"] is protected
        assert run.one(KEY, "mailman-backup-ssh-key").protect is protected
        assert run.one(PASSWORD, "mailman-backup-repository-password").protect is protected
        volume = run.one("hcloud:index/volume:Volume")
        assert (box.protect, box.inputs["deleteProtection"]) == (
            volume.protect,
            volume.inputs["deleteProtection"],
        )


def test_the_deployment_document_names_the_box_and_the_retention(base_run):
    box = base_run.one(BOX)
    backup = _document(base_run)["backup"]
    assert backup == {
        "host": box.outputs["server"],
        "user": box.outputs["username"],
        "port": 23,
        "path": "mailman-site",
        "keep": {"daily": 7, "weekly": 4, "monthly": 6},
    }


def test_retention_setting_reaches_the_host_with_unset_periods_at_zero():
    run = run_program({**BASE, "backupRetention": {"daily": 14, "monthly": 24}})
    assert _document(run)["backup"]["keep"] == {"daily": 14, "weekly": 0, "monthly": 24}


def test_location_and_type_settings_reach_the_box():
    run = run_program({**BASE, "backupLocation": "hel1", "backupBoxType": "bx21"})
    box = run.one(BOX)
    assert (box.inputs["location"], box.inputs["storageBoxType"]) == ("hel1", "bx21")


def test_the_repository_password_and_ssh_key_reach_the_host_as_secret_files(base_run):
    password = base_run.one(PASSWORD, "mailman-backup-repository-password")
    assert password.inputs["length"] >= 32
    restic = base_run.one(COMMAND, "mailman-nixos-secret-restic-password")
    assert restic.is_secret("stdin")
    assert restic.inputs["stdin"] == password.outputs["result"]
    assert "/var/lib/mailman-site/secrets/restic-password" in restic.inputs["create"]
    ssh = base_run.one(COMMAND, "mailman-nixos-secret-backup-ssh-key")
    assert ssh.is_secret("stdin")
    assert "MOCK-ED25519-mailman-backup-ssh-key" in ssh.inputs["stdin"]
    assert "umask 077" in ssh.inputs["create"]


@pytest.mark.parametrize("name", ["backupRepositoryPassword", "backupSshPrivateKey"])
def test_what_a_restore_elsewhere_needs_is_exported_as_secrets(base_run, name):
    assert name in base_run.secret_outputs


def test_the_repository_address_is_exported(base_run):
    box = base_run.one(BOX)
    assert base_run.outputs["backupRepository"] == (
        f"sftp://{box.outputs['username']}@{box.outputs['server']}:23/mailman-site"
    )
    assert re.fullmatch(r"sftp://u\d+@u\d+\.your-storagebox\.de:23/mailman-site",
                        base_run.outputs["backupRepository"])
