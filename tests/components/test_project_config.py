"""Pulumi.yaml's typed `config:` declarations: generated from CONFIG_KEYS, valid for the CLI,
agreeing with the README table and the program's own defaults, and refusing wrong types."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from components.settings import CONFIG_KEYS, DEFAULT_SSH_ALLOWED_IPS, NO_DEFAULT, project_config
from tests.components.conftest import BASE
from tests.harness import OPERATOR_ED25519_PUBLIC, run_failing_program, run_program
from tests.pulumi_engine import EngineConfigError, validate_value

REPO = Path(__file__).resolve().parents[2]
PROJECT = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
DECLARED = {k: v for k, v in PROJECT["config"].items() if ":" not in k}

# pulumi/pulumi sdk/go/common/workspace/project.json: `$defs.simpleConfigType` and the
# attributes `$defs.configTypeDeclaration` allows (additionalProperties: false).
SCHEMA_TYPES = {"string", "integer", "boolean", "array"}
DECLARATION_ATTRIBUTES = {"type", "items", "description", "secret", "default", "value"}

# The README's default column in words, and the declared default that means the same.
README_WORDS = {
    "\u2013": NO_DEFAULT,  # required
    "unset": "",  # dnsZone: the program reads an empty value as unset
    "generated": "",  # adminPassword
    "world": list(DEFAULT_SSH_ALLOWED_IPS),
    "`[hostname]`": [],  # mailDomains: empty means the hostname
    "`[]`": [],
    "true": True,
    "false": False,
}


def test_pulumi_yaml_declares_exactly_what_config_keys_define():
    assert project_config() == DECLARED
    assert list(DECLARED) == [key.name for key in CONFIG_KEYS]


def test_the_generator_finds_pulumi_yaml_up_to_date():
    check = subprocess.run(
        [sys.executable, str(REPO / "tools" / "pulumi_yaml.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize("name", list(DECLARED))
def test_each_declaration_is_one_the_cli_accepts(name):
    declaration = DECLARED[name]
    assert set(declaration) <= DECLARATION_ATTRIBUTES
    assert declaration["description"]
    if "type" not in declaration:
        return
    assert declaration["type"] in SCHEMA_TYPES
    # project.go `Validate`: an array names its items, and a default must be of the type.
    if declaration["type"] == "array":
        assert declaration["items"] == {"type": "string"}
    if "default" in declaration:
        assert validate_value(declaration["type"], declaration.get("items"), declaration["default"])


@pytest.mark.parametrize("key", CONFIG_KEYS, ids=[key.name for key in CONFIG_KEYS])
def test_readme_default_and_declared_default_agree(key):
    words = key.default
    if words in README_WORDS:
        wanted = README_WORDS[words]
    elif words.isdigit():
        wanted = int(words)
    elif words.startswith("`{"):
        wanted = yaml.safe_load(words.strip("`"))  # an object, in YAML flow style
    else:
        wanted = words.strip("`")
    assert key.declared.default == wanted or (
        key.name == "socialLogins" and key.declared.default == {}
    )


def _settings(run):
    settings = run.namespace["site"].settings
    return {k: v for k, v in vars(settings).items() if k != "admin_password"}


def test_the_declared_defaults_are_the_programs_own_defaults():
    # With the engine's merge (every default passed in) and without (nothing passed), the
    # program ends up with the same settings.
    merged = run_program(BASE)
    bare = run_program(BASE, engine_checks=False)
    assert _settings(merged) == _settings(bare)
    assert merged.namespace["site"].settings.admin_password is None


# `pulumi config set mailman:<key> <value>` stores text; the CLI refuses these before the
# program runs (one line naming the stack, the key and the type).
ENGINE_REFUSED = [
    ("volumeSize", "abc", "integer"),
    ("volumeSize", "10.5", "integer"),
    ("acmeStaging", "yes", "boolean"),
    ("protect", "0", "boolean"),
    ("backups", "TRUE", "boolean"),
    ("mailman2Redirects", "on", "boolean"),
    ("mailDomains", "example.org", "array<string>"),
    ("sshAllowedIps", "198.51.100.0/24", "array<string>"),
    ("sshAllowedIps", [24], "array<string>"),
    ("hostname", ["lists.example.org"], "string"),
]


@pytest.mark.parametrize(("key", "value", "type_name"), ENGINE_REFUSED)
def test_a_value_of_the_wrong_type_is_refused_before_the_program_runs(key, value, type_name):
    run = run_failing_program({**BASE, key: value})
    assert isinstance(run.error, EngineConfigError)
    assert str(run.error) == (
        f"Stack 'test' with configuration key '{key}' must be of type '{type_name}'"
    )
    assert run.resources == []


def test_missing_required_keys_are_refused_together():
    run = run_failing_program({})
    assert str(run.error) == (
        "Stack 'test' is missing configuration values 'adminEmail' and 'hostname'"
    )


def test_values_the_cli_stores_as_text_pass_the_types():
    run_program(
        {
            **BASE,
            "volumeSize": "20",
            "protect": "false",
            "backups": False,
            "sshPublicKeys": OPERATOR_ED25519_PUBLIC,
            "dnsZone": "",
        }
    )


def test_the_generator_rewrites_a_stale_block_into_the_committed_file():
    sys.path.insert(0, str(REPO / "tools"))
    import pulumi_yaml  # noqa: PLC0415 - tools/ is not a package

    text = (REPO / "Pulumi.yaml").read_text()
    stale = text.replace("default: cx23", "default: cx22").replace(
        "  socialLogins:", "  socialLogin:"
    )
    assert not pulumi_yaml.is_current(stale)
    rewritten = pulumi_yaml.with_block(stale, pulumi_yaml.config_block(stale))
    assert pulumi_yaml.is_current(rewritten)
    if pulumi_yaml.BEGIN in text:  # this repository: the committed file, byte for byte
        assert rewritten == text


def test_the_generator_rewrites_a_file_without_its_markers():
    # What `pulumi new` may leave: the same content, comments dropped by its re-save.
    sys.path.insert(0, str(REPO / "tools"))
    import pulumi_yaml  # noqa: PLC0415 - tools/ is not a package

    bare = yaml.safe_dump({**PROJECT, "config": {"hostname": {"type": "string"}}}, sort_keys=False)
    rewritten = pulumi_yaml.with_block(bare, pulumi_yaml.config_block(bare))
    assert pulumi_yaml.is_current(rewritten)
    assert yaml.safe_load(rewritten).get("template") == PROJECT.get("template")
