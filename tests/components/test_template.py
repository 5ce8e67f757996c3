"""`pulumi new <repository URL>`: the template section prompts for what matters and the answers
make a working, staging-safe stack.

What `pulumi new` does with `template:` (pulumi/pulumi pkg/cmd/pulumi/newcmd/config.go
`promptForConfig`): one prompt per `template.config` key, sorted by fully qualified key, a key
without a namespace is put in the project's; the prompt shows `description (key)` and offers
`default`; an empty answer is not stored; answers are stored as plain text values
(`config.NewValue`), encrypted when `secret: true`. pkg/cmd/pulumi/newcmd/new.go then drops the
`template:` section from the new project's Pulumi.yaml (`proj.Template = nil`).
"""

from pathlib import Path

import pytest
import yaml

from components.settings import CONFIG_KEYS
from tests.harness import OPERATOR_ED25519_PUBLIC, run_failing_program, run_program

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
# A project made by `pulumi new` from this repository has no template section any more; it
# records the template's URL in the stack tag instead (newcmd/new.go AddConfigStackTags).
MADE_BY_PULUMI_NEW = "template" not in PROJECT and bool(
    PROJECT["config"].get("pulumi:tags", {}).get("value", {}).get("pulumi:template")
)
pytestmark = pytest.mark.skipif(MADE_BY_PULUMI_NEW, reason="a project made by pulumi new")
TEMPLATE = PROJECT.get("template", {})
PROMPTS = TEMPLATE.get("config", {})
# pulumi/pulumi sdk/go/common/workspace/project.json `template` (additionalProperties: false)
# and its `config` values (apitype.ProjectTemplateConfigValue: description, default, secret).
TEMPLATE_ATTRIBUTES = {"description", "quickstart", "important", "config"}
PROMPT_ATTRIBUTES = {"description", "default", "secret"}
MAILMAN_KEYS = {key.name for key in CONFIG_KEYS}


def pulumi_new_answers(typed: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    """The stack config `pulumi new` saves when the user types `typed` and accepts the rest."""
    config, secrets = {}, set()
    for key, prompt in sorted(PROMPTS.items()):
        answer = typed.get(key, prompt.get("default", ""))
        if answer == "":
            continue  # "Don't add empty values to the config."
        config[key] = answer
        if prompt.get("secret"):
            secrets.add(key)
    return config, secrets


def test_the_template_section_has_only_what_the_project_schema_allows():
    assert set(TEMPLATE) <= TEMPLATE_ATTRIBUTES
    assert TEMPLATE["description"]
    for key, prompt in PROMPTS.items():
        assert set(prompt) <= PROMPT_ATTRIBUTES, key
        assert prompt["description"], key
        # ProjectTemplateConfigValue.Default is a string: the prompt's offered text.
        assert isinstance(prompt.get("default", ""), str), key


def test_it_asks_for_hostname_admin_email_dns_zone_and_the_operator_key():
    assert {"hostname", "adminEmail", "dnsZone", "sshPublicKeys"} <= set(PROMPTS)
    assert {k for k in PROMPTS if ":" not in k} <= MAILMAN_KEYS
    assert PROMPTS["dnsZone"]["default"] == ""  # optional: an empty answer stores nothing
    assert [k for k, p in PROMPTS.items() if p.get("secret")] == ["hcloud:token"]


TYPED = {
    "hostname": "lists.example.org",
    "adminEmail": "postmaster@example.org",
    "sshPublicKeys": OPERATOR_ED25519_PUBLIC + " me@laptop",
    "hcloud:token": "t" * 64,
}


def test_accepting_the_defaults_makes_a_staging_safe_stack():
    config, secrets = pulumi_new_answers(TYPED)
    run = run_program(config, secrets, stack="dev")
    settings = run.namespace["site"].settings
    assert settings.acme_staging is True
    assert settings.protect is False
    assert settings.backups is False
    assert settings.dns_zone is None
    assert settings.ssh_public_keys == (OPERATOR_ED25519_PUBLIC + " me@laptop",)
    server = run.one("hcloud:index/server:Server")
    assert server.protect is False
    assert server.inputs["backups"] is False


def test_a_dns_zone_answer_writes_the_records_into_the_zone():
    config, secrets = pulumi_new_answers({**TYPED, "dnsZone": "example.org"})
    run = run_program(config, secrets, stack="dev")
    assert run.namespace["site"].settings.dns_zone == "example.org"
    assert run.of_type("hcloud:index/zoneRrset:ZoneRrset")


@pytest.mark.parametrize("key", ["hostname", "adminEmail"])
def test_a_required_answer_left_empty_is_refused_before_the_program_runs(key):
    config, secrets = pulumi_new_answers({**TYPED, key: ""})
    run = run_failing_program(config, secrets, stack="dev")
    assert str(run.error) == f"Stack 'dev' is missing configuration value '{key}'"
