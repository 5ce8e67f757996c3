"""The deploy chain under Pulumi mocks: order, triggers, secrets and host-key pinning.

pulumi-command runs a command again exactly when one of its inputs changes, so "what re-runs" is
"which resources' inputs differ between two evaluations of the program".
"""

from pathlib import Path

import pytest
import yaml

import components.site
from components.guard import guarded
from components.host import volume_release_script
from components.nixos import final_health_command
from tests.harness import (
    MockCloud,
    ProgramFailedError,
    ProgramRun,
    Secret,
    plain_strings,
    run_failing_program,
    run_program,
)

COMMAND = "command:remote:Command"
ADMIN_PASSWORD = "admin-pw-Zq9!correct-horse"
GITHUB_SECRET = "gh-secret-5f1d2e"
SECRETS = {"adminPassword", "socialLogins"}

NIXOS = {
    "configuration.nix": "{ ... }:\n{\n  imports = [ ./mailman.nix ];\n}\n",
    "mailman.nix": "{ ... }:\n{\n  services.mailman.enable = true;\n}\n",
    "mailman_reconcile.py": "print('reconcile')\n",
    "tests/vm.nix": "{ }\n",
}
LISTS = {
    "lists": [
        {
            "address": "announce@lists.example.org",
            "owners": ["postmaster@example.org"],
            "display_name": "Announcements",
        }
    ]
}


class Deploy:
    """The real program (__main__.py) with nixos/ and lists.yaml replaced by files in a temp dir."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.nixos = root / "nixos"
        self.lists = root / "lists.yaml"
        for path, text in NIXOS.items():
            (self.nixos / path).parent.mkdir(parents=True, exist_ok=True)
            (self.nixos / path).write_text(text)
        self.lists.write_text(yaml.safe_dump(LISTS))
        monkeypatch.setattr(components.site, "NIXOS_DIR", self.nixos)

    def config(self, **config: object) -> dict[str, object]:
        return {
            "hostname": "lists.example.org",
            "adminEmail": "postmaster@example.org",
            "lists": str(self.lists),
            "adminPassword": ADMIN_PASSWORD,
            "socialLogins": {"github": {"clientId": "gh-client", "clientSecret": GITHUB_SECRET}},
            **config,
        }

    def run(self, **config: object) -> ProgramRun:
        return run_program(self.config(**config), secrets=SECRETS)


@pytest.fixture
def deploy(tmp_path, monkeypatch):
    return Deploy(tmp_path, monkeypatch)


@pytest.fixture
def run(deploy):
    return deploy.run()


def commands(run: ProgramRun) -> dict[str, dict]:
    return {r.name: r.inputs for r in run.of_type(COMMAND)}


def rerun(before: ProgramRun, after: ProgramRun) -> set[str]:
    """Names of the commands whose inputs changed (or that are new) between two evaluations."""
    old = commands(before)
    return {name for name, inputs in commands(after).items() if old.get(name) != inputs}


def direct_dependencies(run: ProgramRun, name: str) -> set[str]:
    resource = next(r for r in run.resources if r.name == name)
    return {run.by_urn(urn).name for urn in resource.depends_on}


PUSHES = {
    "mailman-nixos-file-configuration.nix",
    "mailman-nixos-file-mailman.nix",
    "mailman-nixos-file-mailman_reconcile.py",
    "mailman-nixos-file-deployment.json",
    "mailman-nixos-secret-rest-api-password",
    "mailman-nixos-secret-dkim-private-key.pem",
    "mailman-nixos-secret-one-click-key",
    "mailman-nixos-switch-script",
}
SWITCH = {"mailman-nixos-switch", "mailman-nixos-switch-verify"}


def test_every_file_of_nixos_except_tests_is_pushed_as_readable_text(run):
    pushed = {r.name: r for r in run.of_type(COMMAND) if r.name.startswith("mailman-nixos-file-")}
    assert set(pushed) == {n for n in PUSHES if n.startswith("mailman-nixos-file-")}
    mailman = pushed["mailman-nixos-file-mailman.nix"]
    assert mailman.inputs["stdin"] == NIXOS["mailman.nix"]
    assert not mailman.is_secret("stdin")
    assert "/etc/nixos/mailman.nix" in mailman.inputs["create"]


def test_the_deployment_document_is_pushed_as_text(run):
    document = run.one(COMMAND, "mailman-nixos-file-deployment.json")
    assert '"hostname": "lists.example.org"' in document.inputs["stdin"]
    assert "/etc/nixos/deployment.json" in document.inputs["create"]


def test_chain_order_server_ready_push_switch_verify_reconcile_health(run):
    server = run.one("hcloud:index/server:Server").name
    assert server in direct_dependencies(run, "mailman-host-nixos-ready")
    for push in PUSHES:
        assert "mailman-host-nixos-ready" in direct_dependencies(run, push), push
    assert direct_dependencies(run, "mailman-nixos-switch") >= PUSHES
    assert "mailman-nixos-switch" in direct_dependencies(run, "mailman-nixos-switch-verify")
    assert "mailman-nixos-switch-verify" in direct_dependencies(run, "mailman-reconcile-run")
    assert "mailman-reconcile-run" in direct_dependencies(run, "mailman-health-check")


def test_no_edit_gives_identical_inputs_everywhere(deploy, run):
    again = deploy.run()

    # Registration order is asynchronous; compare by URN.
    assert {r.urn: r.raw_inputs for r in again.resources} == {
        r.urn: r.raw_inputs for r in run.resources
    }


def test_a_nix_edit_reruns_that_push_and_the_switch_only(deploy, run):
    (deploy.nixos / "mailman.nix").write_text(
        NIXOS["mailman.nix"].replace("}\n", "  services.mailman.hyperkitty.enable = true;\n}\n")
    )

    assert rerun(run, deploy.run()) == {
        "mailman-nixos-file-mailman.nix",
        "mailman-nixos-switch",
        "mailman-nixos-switch-verify",
    }


def test_a_new_module_is_pushed_and_switched(deploy, run):
    (deploy.nixos / "backup.nix").write_text("{ }\n")

    after = deploy.run()

    assert rerun(run, after) == {
        "mailman-nixos-file-backup.nix",
        "mailman-nixos-switch",
        "mailman-nixos-switch-verify",
    }
    assert "backup.nix" in after.one(COMMAND, "mailman-nixos-switch").inputs["create"]


def test_an_edit_under_nixos_tests_changes_nothing(deploy, run):
    (deploy.nixos / "tests" / "vm.nix").write_text("{ pkgs, ... }: { }\n")

    assert rerun(run, deploy.run()) == set()


def test_a_lists_edit_reruns_the_reconcile_only(deploy, run):
    lists = yaml.safe_load(deploy.lists.read_text())
    lists["lists"][0]["description"] = "Low traffic."
    deploy.lists.write_text(yaml.safe_dump(lists))

    after = deploy.run()

    assert rerun(run, after) == {"mailman-reconcile-run"}
    triggers = after.one(COMMAND, "mailman-reconcile-run").inputs["triggers"]
    assert "description: Low traffic." in triggers[0]


def test_a_release_change_without_a_pin_of_that_release_is_refused(deploy):
    with pytest.raises(ProgramFailedError) as refused:
        deploy.run(nixosRelease="nixos-26.11")
    assert (
        'mailman:nixosRelease: "nixos-26.11" is not the release of the pinned nixpkgs '
        "(nixos-26.05, components/nixpkgs-pin.json)"
    ) in str(refused.value)


def test_a_pin_bump_reruns_the_document_push_and_the_switch_and_shows_the_revision(
    deploy, run, pin_nixpkgs
):
    new = pin_nixpkgs("nixos-26.05", "2" * 40)

    after = deploy.run()

    assert rerun(run, after) == {
        "mailman-nixos-file-deployment.json",
        "mailman-nixos-switch",
        "mailman-nixos-switch-verify",
    }
    # The preview diff of the document push shows the old and the new revision as lines.
    before_text = run.one(COMMAND, "mailman-nixos-file-deployment.json").inputs["stdin"]
    after_text = after.one(COMMAND, "mailman-nixos-file-deployment.json").inputs["stdin"]
    assert f'"rev": "{new.rev}"' in after_text
    assert '"rev": "7fc6f2c20af09cdcaf48b92ec3121860139ec668"' in before_text
    assert f'"url": "{new.url}"' in after_text


def test_a_release_change_reruns_the_switch_only(deploy, run, pin_nixpkgs):
    pin_nixpkgs("nixos-26.11", "3" * 40)
    after = deploy.run(nixosRelease="nixos-26.11")

    # The release is also in the deployment document (nixos reads it, e.g. for stateVersion).
    # The install script names it too: on the live host it only prints "already NixOS".
    assert rerun(run, after) == {
        "mailman-host-nixos-install",
        "mailman-nixos-file-deployment.json",
        "mailman-nixos-switch",
        "mailman-nixos-switch-verify",
    }
    assert "nixos-26.11" in after.one(COMMAND, "mailman-nixos-switch").inputs["triggers"]


def test_a_new_admin_password_reruns_the_reconcile_only(deploy, run):
    after = deploy.run(adminPassword="another-long-password")

    assert rerun(run, after) == {"mailman-reconcile-run"}


def test_a_replaced_server_reruns_the_whole_chain(deploy, run, monkeypatch):
    answer = MockCloud.new_resource

    def rebuilt_server(self, args):
        resource_id, state = answer(self, args)
        if args.typ == "hcloud:index/server:Server":
            resource_id = str(int(resource_id) + 1)
        return resource_id, state

    monkeypatch.setattr(MockCloud, "new_resource", rebuilt_server)
    after = deploy.run()

    chain = PUSHES | {
        "mailman-nixos-switch",
        "mailman-nixos-switch-verify",
        "mailman-reconcile-run",
        "mailman-health-check",
    }
    assert rerun(run, after) >= chain


def test_a_resized_server_is_health_checked_again(deploy, run):
    """A serverType change is an in-place resize (same server id) after a hard power-off."""
    after = deploy.run(serverType="cpx32")

    assert rerun(run, after) == {"mailman-health-check"}
    assert "cpx32" in after.one(COMMAND, "mailman-health-check").inputs["triggers"]


def test_switch_triggers_are_content_hash_release_and_server_id(run):
    switch = run.one(COMMAND, "mailman-nixos-switch")
    digest, release, server_id = switch.inputs["triggers"]
    assert len(digest) == 64
    assert int(digest, 16) >= 0  # a sha256 hex digest, not a timestamp
    assert release == "nixos-26.05"
    assert server_id == run.one(COMMAND, "mailman-nixos-file-mailman.nix").inputs["triggers"][0]
    assert run.one("hcloud:index/server:Server").urn in switch.depends_on


def test_list_changes_stay_readable_in_previews(run):
    reconcile = run.one(COMMAND, "mailman-reconcile-run")
    assert not reconcile.is_secret("triggers")
    lists_text, public_text, _ = reconcile.inputs["triggers"]
    assert "address: announce@lists.example.org" in lists_text
    assert "display_name: Announcements" in lists_text
    assert "clientId: gh-client" in public_text


PASSWORD = "random:index/randomPassword:RandomPassword"


def rest_password(run: ProgramRun) -> str:
    generated = run.one("random:index/randomPassword:RandomPassword", "mailman-rest-api-password")
    return generated.outputs["result"]


def one_click_key(run: ProgramRun) -> str:
    generated = run.one("random:index/randomPassword:RandomPassword", "mailman-one-click-key")
    return generated.outputs["result"]


def test_no_secret_in_any_plain_input(run):
    restricted = [
        ADMIN_PASSWORD,
        GITHUB_SECRET,
        rest_password(run),
        one_click_key(run),
        "MOCK-RSA-mailman-dkim-key",
        "MOCK-ED25519-mailman-host-deploy-key",
        "MOCK-ED25519-mailman-host-ssh-host-key",
        "MOCK-ED25519-mailman-backup-ssh-key",
        run.one(PASSWORD, "mailman-backup-repository-password").outputs["result"],
        run.one(PASSWORD, "mailman-backup-box-password").outputs["result"],
    ]
    for resource in run.resources:
        for text in plain_strings(resource.raw_inputs):
            for secret in restricted:
                assert secret not in text, f"{resource.name} has a secret in a plain input"


def test_secrets_travel_only_on_secret_stdin_with_logging_off(run):
    for name in (
        "mailman-nixos-secret-rest-api-password",
        "mailman-nixos-secret-dkim-private-key.pem",
        "mailman-nixos-secret-restic-password",
        "mailman-nixos-secret-backup-ssh-key",
        "mailman-nixos-secret-one-click-key",
    ):
        resource = run.one(COMMAND, name)
        assert resource.is_secret("stdin")
        assert resource.inputs["logging"] == "none"
        assert set(resource.additional_secret_outputs) >= {"stdin", "stdout", "stderr"}
        assert "environment" not in resource.inputs
    rest = run.one(COMMAND, "mailman-nixos-secret-rest-api-password")
    assert rest.inputs["stdin"] == rest_password(run)
    assert "/var/lib/mailman-site/secrets/rest-api-password" in rest.inputs["create"]
    key = run.one(COMMAND, "mailman-nixos-secret-one-click-key")
    assert key.inputs["stdin"] == one_click_key(run)
    assert len(one_click_key(run)) >= 32  # mailman_one_click.KEY_MIN_LENGTH
    assert "/var/lib/mailman-site/secrets/one-click-key" in key.inputs["create"]


def test_reconcile_sends_the_whole_desired_state_as_secret_stdin(run):
    reconcile = run.one(COMMAND, "mailman-reconcile-run")
    assert reconcile.is_secret("stdin")
    assert reconcile.inputs["create"] == guarded(
        "mailman-reconcile", "mailman-reconcile failed", public_prefix="mailman-reconcile: "
    )
    assert reconcile.inputs["logging"] == "stdout"
    assert ADMIN_PASSWORD in reconcile.inputs["stdin"]
    assert GITHUB_SECRET in reconcile.inputs["stdin"]
    assert {"stdin", "stderr"} <= set(reconcile.additional_secret_outputs)


def test_every_remote_command_pins_the_host_key(run):
    key = run.one("tls:index/privateKey:PrivateKey", "mailman-host-ssh-host-key")
    host_key = key.outputs["publicKeyOpenssh"].strip()
    assert host_key.startswith("ssh-ed25519 ")
    remote = run.of_type(COMMAND)
    assert len(remote) >= 10
    for resource in remote:
        assert resource.inputs["connection"]["hostKey"] == host_key, resource.name


def test_no_command_deletes_anything_on_the_host(run):
    """Only the volume release has a delete, and it only stops and unmounts (test_host.py)."""
    for resource in run.of_type(COMMAND):
        if resource.name == "mailman-host-data-release":
            assert resource.inputs["delete"] == volume_release_script()
        else:
            assert "delete" not in resource.inputs, resource.name
        assert (
            resource.inputs.get("addPreviousOutputInEnv") is False
            or resource.name == "mailman-host-nixos-ready"
        )


def test_components_register_with_their_types(run):
    assert run.one("mailman:nixos:NixosDeployment").name == "mailman-nixos"
    assert run.one("mailman:mailman:MailmanReconcile").name == "mailman-reconcile"
    assert run.one("mailman:nixos:SiteHealthCheck").name == "mailman-health"
    nixos = run.one("mailman:nixos:NixosDeployment")
    assert run.one(COMMAND, "mailman-nixos-switch").parent == nixos.urn


def test_secret_values_are_not_visible_with_secret_markers_stripped_by_accident(run):
    """Guard for the test above: the secrets really are present, just marked."""
    reconcile = run.one(COMMAND, "mailman-reconcile-run")
    assert isinstance(reconcile.raw_inputs["stdin"], Secret)


def test_port_25_warnings_are_streamed_by_the_check_never_replayed_from_state(
    deploy, monkeypatch, caplog
):
    """An update that does not re-run the check must not repeat its old WARN lines.

    The mock answers with the stdout a previous run left in state (port 25 blocked then). The
    WARN lines reach `pulumi up` only as the command's streamed output while it runs
    (pulumi-command streams stdout when logging includes it), so the program logs nothing.
    """
    answer = MockCloud.new_resource
    blocked = "WARN  outbound    no answer from mx.example.net:25: outbound SMTP looks blocked."

    def health_output(self, args):
        resource_id, state = answer(self, args)
        if args.name == "mailman-health-check":
            state["stdout"] = f"ok    smtp        220 lists.example.org ESMTP\n{blocked}\n"
        return resource_id, state

    monkeypatch.setattr(MockCloud, "new_resource", health_output)
    with caplog.at_level("WARNING"):
        run = deploy.run()

    assert not [r.getMessage() for r in caplog.records if "outbound" in r.getMessage()]
    check = run.one(COMMAND, "mailman-health-check")
    assert check.inputs["create"] == final_health_command()
    assert check.inputs["logging"] == "stdoutAndStderr"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("my module.nix", "nixos/my module.nix: file names in nixos/ must be letters, digits"),
        ("deployment.json", "nixos/deployment.json: this file is generated by the program"),
    ],
)
def test_files_that_cannot_be_pushed_stop_the_program_with_one_line(deploy, name, message):
    (deploy.nixos / name).write_text("{ }\n")

    failed = run_failing_program(deploy.config(), secrets=SECRETS)

    assert str(failed.error).startswith(message)
    assert "mailman-nixos-switch" not in [r.name for r in failed.of_type(COMMAND)]
