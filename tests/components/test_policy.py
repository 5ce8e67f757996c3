"""The policy pack's rules (policy/rules.py) on every resource the program registers under mocks,
as the policy engine shows them: secret inputs unwrapped, the `protect` option, the URN.

The CrossGuard SDK cannot evaluate a program by itself (pulumi-policy 1.21.0 `PolicyPack()`
starts the analyzer's gRPC server for the engine and blocks), so ./test.sh runs the rule
functions directly; the preview workflow runs the same rules through policy/__main__.py.
"""

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
    assert len(found) == 4  # server, IPv4, IPv6, volume
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
