"""The site and the whole program: outputs, determinism, secret hygiene, component conventions."""

import ast
from pathlib import Path

import pytest

from tests.components.conftest import BASE, ZONED, ZONED_SECRETS
from tests.harness import MOCK_IPV4, Secret, plain_strings, run_program

REPO = Path(__file__).resolve().parents[2]
SECRET_VALUES = ("correct horse battery staple", "gh-client-secret-123")


def test_outputs_of_the_design_contract(base_run):
    outputs = base_run.outputs
    assert outputs["siteUrl"] == "https://lists.example.org/"
    assert outputs["adminUrl"] == "https://lists.example.org/admin/"
    assert outputs["postoriusUrl"] == "https://lists.example.org/postorius/lists/"
    assert outputs["hyperkittyUrl"] == "https://lists.example.org/hyperkitty/"
    assert outputs["ipv4"] == MOCK_IPV4
    assert outputs["ipv6"] == "2001:db8:1:2::1"
    assert outputs["sshCommand"] == f"ssh root@{MOCK_IPV4}"
    assert outputs["nixosRelease"] == "nixos-26.05"
    assert outputs["hostname"] == "lists.example.org"
    assert outputs["mailDomains"] == ["lists.example.org"]
    assert isinstance(outputs["dnsRecords"], list)
    assert outputs["sshHostKey"].startswith("ssh-ed25519 ")


def test_generated_admin_password_is_a_secret_output(base_run):
    password = base_run.one("random:index/randomPassword:RandomPassword", "mailman-admin-password")
    assert base_run.outputs["adminPassword"] == password.outputs["result"]
    # The other secret outputs are the backup's (tests/components/test_backup.py).
    assert base_run.secret_outputs == {
        "adminPassword",
        "backupRepositoryPassword",
        "backupSshPrivateKey",
    }
    assert password.inputs["length"] >= 20


def test_configured_admin_password_is_used_and_nothing_generated(zoned_run):
    names = [r.name for r in zoned_run.of_type("random:index/randomPassword:RandomPassword")]
    # The backup's two are tests/components/test_backup.py's.
    assert names == [
        "mailman-rest-api-password",
        "mailman-one-click-key",
        "mailman-backup-repository-password",
        "mailman-backup-box-password",
    ]
    assert zoned_run.outputs["adminPassword"] == "correct horse battery staple"
    assert "adminPassword" in zoned_run.secret_outputs


def test_one_click_key_lives_in_the_stack_and_reaches_the_host_as_a_secret(base_run):
    key = base_run.one("random:index/randomPassword:RandomPassword", "mailman-one-click-key")
    # Letters and digits only (a systemd credential file, read stripped); >= KEY_MIN_LENGTH.
    assert key.inputs["length"] >= 32
    assert key.inputs["special"] is False
    assert "oneClickKey" not in base_run.outputs


def test_dkim_key_lives_in_the_stack(base_run):
    key = base_run.one("tls:index/privateKey:PrivateKey", "mailman-dkim-key")
    assert key.inputs == {"algorithm": "RSA", "rsaBits": 2048}


@pytest.mark.parametrize(("config", "secrets"), [(BASE, set()), (ZONED, ZONED_SECRETS)])
def test_two_evaluations_register_identical_inputs(config, secrets):
    first = run_program(config, secrets=secrets)
    second = run_program(config, secrets=secrets)

    def snapshot(run):
        return [
            (r.type, r.name, r.parent, r.raw_inputs, r.protect, r.ignore_changes, r.depends_on)
            for r in sorted(run.resources, key=lambda r: r.urn)
        ]

    assert snapshot(first) == snapshot(second)
    assert first.outputs == second.outputs


def _secret_texts(run) -> set[str]:
    """Plain text of every secret: configured ones and what secret-marked provider outputs hold."""
    texts = set(SECRET_VALUES)
    for resource in run.resources:
        for key in resource.additional_secret_outputs:
            value = resource.outputs.get(key)
            if isinstance(value, str) and value:
                texts.add(value)
    return texts


def test_secret_hygiene_no_plain_secret_in_any_input_or_output(zoned_run):
    secrets = _secret_texts(zoned_run)
    assert len(secrets) > len(SECRET_VALUES)  # provider secrets (keys, passwords) are covered
    for resource in zoned_run.resources:
        for text in plain_strings(resource.raw_inputs):
            leaked = [s for s in secrets if s.strip() in text]
            assert not leaked, f"{resource.name} has a secret in a plain input"
    for urn, outputs in zoned_run.component_outputs.items():
        for text in plain_strings(outputs):
            assert not [s for s in secrets if s.strip() in text], urn
    for name, value in zoned_run.outputs.items():
        if name in zoned_run.secret_outputs:
            continue
        for text in plain_strings(value):
            assert not [s for s in secrets if s.strip() in text], name


def test_secret_hygiene_catches_a_leak():
    """The scan above can fail: a plain copy of a secret is found."""
    leaky = {
        "labels": {"x": "correct horse battery staple"},
        "ok": Secret("correct horse battery staple"),
    }
    found = [t for t in plain_strings(leaky) if "correct horse battery staple" in t]
    assert found == ["correct horse battery staple"]


def test_social_login_client_secret_stays_secret(zoned_run):
    site = zoned_run.one("mailman:site:MailmanSite")
    assert "gh-client-secret-123" not in str(
        list(plain_strings(zoned_run.component_outputs[site.urn]))
    )


def _component_classes():
    for path in sorted((REPO / "components").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                ast.unparse(base) == "pulumi.ComponentResource" for base in node.bases
            ):
                yield path.name, node


@pytest.mark.parametrize(
    "component", list(_component_classes()), ids=lambda c: f"{c[0]}:{c[1].name}"
)
def test_components_call_super_first_and_register_outputs_last(component):
    _, cls = component
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    statements = [
        s for s in init.body if not isinstance(s, ast.Expr) or not isinstance(s.value, ast.Constant)
    ]
    assert "super().__init__" in ast.unparse(statements[0])
    assert ast.unparse(statements[-1]).startswith("self.register_outputs(")


def test_children_are_named_after_their_component(base_run):
    components = {r.urn: r.name for r in base_run.resources if not r.custom}
    for resource in base_run.resources:
        if resource.parent in components:
            assert resource.name.startswith(components[resource.parent] + "-")


def test_preview_evaluates_the_same_resources(base_run):
    preview = run_program(BASE, preview=True)
    assert sorted(r.urn for r in preview.resources) == sorted(r.urn for r in base_run.resources)


def test_review_stack_names_are_safe_hetzner_labels_and_names():
    run = run_program(BASE, stack="pr-123/Feature_X")
    server = run.one("hcloud:index/server:Server")
    assert server.inputs["labels"] == {"project": "mailman", "stack": "pr-123-Feature_X"}
    assert run.one("hcloud:index/volume:Volume").inputs["name"] == "mailman-pr-123-Feature_X-data"


def test_site_hands_the_deploy_chain_its_secrets_as_secret_outputs(zoned_run):
    site = zoned_run.namespace["site"]
    for output in (site.dkim_private_key_pem, site.admin_password, site.rest_api_password):
        value, secret = zoned_run.resolve(output)
        assert secret
        assert value
    assert zoned_run.resolve(site.admin_password)[0] == "correct horse battery staple"
    rest = zoned_run.one("random:index/randomPassword:RandomPassword", "mailman-rest-api-password")
    assert zoned_run.resolve(site.rest_api_password)[0] == rest.outputs["result"]


def test_site_exposes_settings_lists_and_the_plain_deployment_document(zoned_run):
    site = zoned_run.namespace["site"]
    assert site.settings.hostname == "lists.example.org"
    # lists.yaml names bare lists: they live in the first of mailDomains.
    assert [entry["address"] for entry in site.lists] == [
        "announce@example.org",
        "discuss@example.org",
    ]
    text, secret = zoned_run.resolve(site.deployment_document)
    assert not secret
    assert '"hostname": "lists.example.org"' in text


def test_host_connection_and_readiness_for_the_deploy_chain(zoned_run):
    host = zoned_run.namespace["site"].host
    assert zoned_run.resolve(host.connection.host)[0] == MOCK_IPV4
    key, secret = zoned_run.resolve(host.connection.private_key)
    assert secret
    assert "OPENSSH PRIVATE KEY" in key
    ready = zoned_run.one("command:remote:Command", "mailman-host-nixos-ready")
    assert zoned_run.resolve(host.nixos_ready.urn)[0] == ready.urn
