"""The mock harness records what a program registers, with options, secrets and outputs."""

from pathlib import Path

import pulumi
import pytest

from tests.harness import (
    MOCK_ED25519_PUBLIC,
    ProgramFailedError,
    Secret,
    plain_strings,
    run_failing_program,
    run_program,
)

FIXTURE = Path(__file__).parent / "fixtures" / "harness_program.py"
CONFIG = {"publicKey": MOCK_ED25519_PUBLIC, "token": "s3cret-token"}


@pytest.fixture(scope="module")
def run():
    return run_program(CONFIG, secrets={"token"}, program=FIXTURE)


def test_records_type_name_and_inputs(run):
    key = run.one("hcloud:index/sshKey:SshKey")
    assert key.name == "key"
    assert key.inputs["publicKey"] == MOCK_ED25519_PUBLIC


def test_records_resource_options(run):
    key = run.one("hcloud:index/sshKey:SshKey")
    password = run.one("random:index/randomPassword:RandomPassword")
    assert key.protect
    assert key.ignore_changes == ("labels",)
    assert password.urn in key.depends_on
    assert not password.protect


def test_records_parents(run):
    group = run.one("test:index:Group")
    password = run.one("random:index/randomPassword:RandomPassword")
    assert password.parent == group.urn
    assert run.ancestors(password) == [group]


def test_secret_config_reaches_inputs_marked_secret(run):
    labels = run.one("hcloud:index/sshKey:SshKey").raw_inputs["labels"]
    assert "s3cret-token" not in list(plain_strings(labels))
    assert isinstance(labels, Secret) or isinstance(labels.get("token"), Secret)


def test_outputs_resolved_with_secretness(run):
    assert run.outputs["publicKey"] == MOCK_ED25519_PUBLIC
    assert run.outputs["password"].startswith("mock-password-pw")
    assert "password" in run.secret_outputs
    assert "publicKey" not in run.secret_outputs


def test_txt_record_invoke_splits_like_the_provider(run):
    assert run.outputs["txt"] == '"' + "x" * 255 + '" "' + "x" * 45 + '"'


def test_failure_is_returned_not_raised():
    failed = run_failing_program({**CONFIG, "fail": True}, secrets={"token"}, program=FIXTURE)
    assert isinstance(failed.error, pulumi.RunError)
    assert str(failed.error) == "mailman:fail: true is not allowed"


def test_run_program_raises_on_failure():
    with pytest.raises(ProgramFailedError):
        run_program({**CONFIG, "fail": True}, secrets={"token"}, program=FIXTURE)


def test_evaluations_are_independent():
    first = run_program(CONFIG, secrets={"token"}, program=FIXTURE)
    second = run_program(CONFIG, secrets={"token"}, program=FIXTURE)
    assert [r.urn for r in first.resources] == [r.urn for r in second.resources]
    assert len(second.of_type("hcloud:index/sshKey:SshKey")) == 1
