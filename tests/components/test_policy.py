"""The policy pack's rules (policy/rules.py) on every resource the program registers under mocks,
as the policy engine shows them: secret inputs unwrapped, the `protect` option, the URN.

The CrossGuard SDK cannot evaluate a program by itself (pulumi-policy 1.21.0 `PolicyPack()`
starts the analyzer's gRPC server for the engine and blocks), so ./test.sh runs the rule
functions directly, and once more through policy/__main__.py and the real SDK in the pack's own
virtualenv (tests/components/data/policy_sdk_driver.py); the preview workflow runs the pack.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.components.conftest import BASE, ZONED, ZONED_SECRETS
from tests.harness import ProgramRun, RegisteredResource, Secret, run_program, unwrap

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "policy"))
import rules  # policy/ is not a package

REPO = Path(__file__).resolve().parents[2]
RESTRICTED = {**ZONED, "sshAllowedIps": ["198.51.100.0/24"]}


def as_policy_sees_it(resource: RegisteredResource) -> rules.Resource:
    return rules.Resource(
        type=resource.type,
        name=resource.name,
        urn=resource.urn,
        props=unwrap(resource.raw_inputs),
        protect=resource.protect,
    )


def violations(run: ProgramRun) -> list[str]:
    return [
        message
        for resource in run.resources
        for rule in rules.RULES
        for message in rule.check(as_policy_sees_it(resource))
    ]


@pytest.fixture(scope="module")
def production_run():
    return run_program(RESTRICTED, ZONED_SECRETS, stack="production")


@pytest.fixture(scope="module")
def world_ssh_production_run():
    world = {k: v for k, v in ZONED.items() if k != "sshAllowedIps"}
    return run_program(world, ZONED_SECRETS, stack="production")


def test_the_urn_names_the_stack(production_run):
    server = production_run.one(rules.SERVER)
    assert as_policy_sees_it(server).stack == "production"
    assert as_policy_sees_it(server).production


@pytest.mark.parametrize("stack", ["staging", "dev"])
def test_a_default_staging_stack_keeps_every_promise(stack):
    assert violations(run_program({**BASE, "protect": False}, stack=stack)) == []


def test_a_restricted_protected_production_stack_keeps_every_promise(production_run):
    assert violations(production_run) == []


def test_ssh_open_to_the_world_fails_only_in_production(world_ssh_production_run, base_run):
    assert violations(world_ssh_production_run) == [
        "firewall mailman-host-firewall: port 22 open to 0.0.0.0/0, ::/0 in stack production"
        " (set mailman:sshAllowedIps to your networks)"
    ]
    assert violations(base_run) == []  # the same firewall in stack "test"


def test_unprotected_persistent_resources_fail_in_production():
    run = run_program({**RESTRICTED, "protect": False}, ZONED_SECRETS, stack="production")
    found = violations(run)
    names = sorted(message.split(":")[0] for message in found)
    assert names == sorted(r.name for r in run.resources if r.type in rules.PERSISTENT)
    assert len(found) == 5  # server, IPv4, IPv6, volume, backup Storage Box
    assert all("mailman:protect must stay true" in message for message in found)


def test_every_server_gets_its_firewall_at_creation(production_run):
    server = as_policy_sees_it(production_run.one(rules.SERVER))
    assert server.props["firewallIds"]
    assert rules.server_has_a_firewall_at_creation(server) == []
    bare = replace(server, props={k: v for k, v in server.props.items() if k != "firewallIds"})
    assert rules.server_has_a_firewall_at_creation(bare) == [
        "server mailman-host-server: no firewall in firewallIds (attach one at creation)"
    ]


@pytest.mark.parametrize(
    ("config", "secrets"),
    [(BASE, set()), (ZONED, ZONED_SECRETS), (RESTRICTED, ZONED_SECRETS)],
    ids=["base", "zoned", "restricted"],
)
def test_the_inputs_the_rule_skips_are_always_sent_as_secrets(config, secrets):
    # The policy engine shows secrets unwrapped, so no_secret_in_plain_inputs skips these
    # inputs; that is sound only while the program marks every one of them secret.
    run = run_program(config, secrets)
    covered = [
        (resource, name)
        for resource in run.resources
        for name in resource.raw_inputs
        if any(s.covers(resource.type, resource.name, name) for s in rules.SECRET_INPUTS)
    ]
    for resource, name in covered:
        assert isinstance(resource.raw_inputs[name], Secret), f"{resource.name}.{name} is plain"
    assert {(r.type, name) for r, name in covered} == {
        (s.type, s.input) for s in rules.SECRET_INPUTS
    }


def test_plain_stdin_is_scanned_and_holds_no_private_key(zoned_run):
    plain_stdin = [
        r
        for r in zoned_run.of_type(rules.COMMAND)
        if isinstance(r.raw_inputs.get("stdin"), str)
    ]
    assert len(plain_stdin) > 10  # the NixOS files, shown in previews
    for resource in plain_stdin:
        assert not rules.sent_as_secret(as_policy_sees_it(resource), "stdin")
        assert rules.no_secret_in_plain_inputs(as_policy_sees_it(resource)) == []


def test_a_private_key_in_a_plain_input_fails(zoned_run):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    server = as_policy_sees_it(zoned_run.one(rules.SERVER))
    leaked = replace(server, props={**server.props, "labels": {"note": key}})
    assert rules.no_secret_in_plain_inputs(leaked) == [
        "mailman-host-server: labels.note holds a private key outside the inputs sent as secrets"
    ]
    # The same key in userData (always sent as a secret) is what the program does on purpose.
    assert rules.no_secret_in_plain_inputs(replace(server, props={"userData": key})) == []


def test_values_unknown_during_a_preview_become_unknown():
    # pulumi-policy's property proxy raises UnknownValueError when a value unknown during a
    # preview is read (pulumi_policy/proxy.py `_raise_if_unknown`); `plain` keeps the rest.
    class UnknownValueError(Exception):
        pass

    class Proxy(dict):
        def __getitem__(self, key):
            if key == "ipv4":
                raise UnknownValueError
            return super().__getitem__(key)

    props = Proxy(name="server", ipv4="?", firewallIds=[1])
    assert rules.plain_props(props, UnknownValueError) == {
        "name": "server",
        "ipv4": rules.UNKNOWN,
        "firewallIds": [1],
    }


def test_the_pack_runs_every_rule_as_mandatory():
    main = (REPO / "policy" / "__main__.py").read_text()
    assert 'PolicyPack(name="mailman", policies=[_policy(rule) for rule in rules.RULES])' in main
    assert "enforcement_level=EnforcementLevel.MANDATORY" in main
    assert len({rule.name for rule in rules.RULES}) == len(rules.RULES) == 4
    pack = yaml.safe_load((REPO / "policy" / "PulumiPolicy.yaml").read_text())
    assert pack["runtime"] == {"name": "python", "options": {"virtualenv": "venv"}}
    requirements = (REPO / "policy" / "requirements.txt").read_text()
    assert "pulumi-policy==1.21.0" in requirements
    pulumi_pin = next(
        line for line in (REPO / "requirements.txt").read_text().splitlines()
        if line.startswith("pulumi==")
    )
    assert pulumi_pin in requirements.splitlines()


def test_the_preview_workflow_runs_the_pack():
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "preview.yml").read_text())
    steps = workflow["jobs"]["preview"]["steps"]
    install = next(i for i, s in enumerate(steps) if "policy/requirements.txt" in s.get("run", ""))
    preview = next(i for i, s in enumerate(steps) if "policyPacks" in s.get("with", {}))
    assert install < preview
    assert steps[preview]["with"]["policyPacks"] == "policy"


# The real SDK, in the pack's own virtualenv (policy/requirements.txt), built once per
# requirements under .cache/ like the reconcile tests' Mailman.
UNKNOWN_NUMBER = "3eeb2bf0-c639-47a8-9e75-3b44932eb421"  # pulumi_policy/proxy.py
UNKNOWN_STRING = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


@pytest.fixture(scope="session")
def policy_python() -> Path:
    requirements = REPO / "policy" / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:16]
    root = REPO / ".cache" / f"policy-venv-{key}"
    if not (root / "ready").exists():
        # `ready` is written last, so an interrupted build is thrown away, never reused.
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        install = subprocess.run(
            [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet",
             "--disable-pip-version-check", "-r", str(requirements)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if install.returncode != 0:
            message = f"cannot install policy/requirements.txt: {install.stderr[-2000:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        (root / "ready").write_text("")
    return root / "bin" / "python"


def _engine_view(resource: RegisteredResource, preview: bool) -> dict[str, object]:
    props = unwrap(resource.raw_inputs)
    if preview and resource.type == rules.SERVER:
        # During a first preview the firewall's id is not known yet, nor is a primary IP's.
        props = {**props, "firewallIds": [UNKNOWN_NUMBER], "ipv4Address": UNKNOWN_STRING}
    return {
        "type": resource.type,
        "name": resource.name,
        "urn": resource.urn,
        "props": props,
        "protect": resource.protect,
    }


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
def test_the_pack_reports_through_the_real_sdk_what_the_rules_find(policy_python, preview):
    world = {k: v for k, v in ZONED.items() if k != "sshAllowedIps"}
    bad = run_program({**world, "protect": False}, ZONED_SECRETS, stack="production")
    resources = [r for r in bad.resources if r.custom]
    leaked = replace(resources[0], raw_inputs={**resources[0].raw_inputs, "labels": {
        "k": "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----"}})  # fmt: skip
    resources.append(leaked)
    driver = subprocess.run(
        [str(policy_python), str(REPO / "tests" / "components" / "data" / "policy_sdk_driver.py"),
         str(REPO / "policy")],
        input=json.dumps([_engine_view(r, preview) for r in resources]),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert driver.returncode == 0, driver.stderr[-3000:]
    report = json.loads(driver.stdout)
    assert report["pack"] == "mailman"
    assert report["policies"] == [[rule.name, "mandatory"] for rule in rules.RULES]
    expected = sorted(
        [rule.name, message, resource.urn]
        for resource in resources
        for rule in rules.RULES
        for message in rule.check(as_policy_sees_it(resource))
    )
    assert sorted(report["violations"]) == expected
    # Every promise broken once here: world SSH, no protection (5, backup box included), a plain
    # private key.
    assert {name for name, _, _ in report["violations"]} == {
        "production-ssh-not-open-to-the-world",
        "production-persistent-resources-protected",
        "no-secret-in-plain-inputs",
    }
    assert len(expected) == 7
