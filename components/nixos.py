"""Push the NixOS configuration to the host, switch to it safely, and check the site's health.

Every remote step is a `command.remote.Command` over the host's pinned SSH connection
(docs/contracts.md section 3), created only after the host answers as NixOS (`nixos_ready`), so
the installer's reboot never fails a command. Files travel as `stdin`, which makes each file's
text an input of the resource that writes it: `pulumi preview --diff` shows the changed Nix lines.

No command here has a `delete`: deleting or replacing a resource must never undo a deploy on a
live host. Files dropped from `nixos/` are removed by the switch script, which remembers what it
was given (components/scripts/switch-with-rollback.sh, `prune_files`).
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_command as command

from components.guard import guarded
from components.ssh import ACROSS_REBOOT, with_budget

ETC_NIXOS = "/etc/nixos"
STATE_DIR = "/var/lib/mailman-site"
SECRETS_DIR = f"{STATE_DIR}/secrets"
SWITCH_SCRIPT = Path(__file__).parent / "scripts" / "switch-with-rollback.sh"
SWITCH_SCRIPT_ON_HOST = f"{STATE_DIR}/bin/switch-with-rollback.sh"
DEPLOYMENT_DOCUMENT = "deployment.json"

# Parts of nixos/ that are not host configuration: local build and editor leftovers.
_NOT_PUSHED_DIRS = frozenset({"__pycache__", ".pytest_cache", ".mypy_cache", "result"})
_NOT_PUSHED_SUFFIXES = (".pyc", ".swp", "~")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$")


def read_nixos_tree(root: Path) -> dict[str, str]:
    """Every file of `root` (the repository's nixos/) the host needs, by path relative to `root`.

    nixos/tests/ is excluded (contracts section 4): the VM test runs on a developer's machine.
    """
    files: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if (
            not path.is_file()
            or relative.parts[0] == "tests"
            or _NOT_PUSHED_DIRS.intersection(relative.parts)
            or path.name.endswith(_NOT_PUSHED_SUFFIXES)
        ):
            continue
        files[relative.as_posix()] = path.read_text(encoding="utf-8")
    return files


def configuration_digest(files: Mapping[str, str], deployment_document: str) -> str:
    """A content hash of everything `nixos-rebuild` reads from /etc/nixos that we push.

    File names are part of it, so adding, removing or renaming a module changes it too.
    """
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{len(files[path])}\0".encode())
        digest.update(files[path].encode())
    digest.update(f"{DEPLOYMENT_DOCUMENT}\0".encode())
    digest.update(deployment_document.encode())
    return digest.hexdigest()


def write_file_command(
    target: str,
    *,
    mode: str = "0644",
    dir_mode: str = "0755",
    restart_units: Sequence[str] = (),
) -> str:
    """A shell command that atomically replaces `target` with its stdin.

    The new content goes to a temp file in the same directory (created under a umask that keeps
    it private from the first byte) and is renamed over the target, so a dropped connection never
    leaves half a file. With `restart_units`, those units are restarted when the content changed
    on a host that already runs NixOS services (e.g. a rotated secret); they don't exist yet on
    the first deploy and the switch starts them anyway.
    """
    directory = shlex.quote(str(Path(target).parent))
    quoted = shlex.quote(target)
    lines = [
        "set -eu",
        "umask 077",
        f"mkdir -p {directory}",
        f"chmod {dir_mode} {directory}",
        f"tmp=$(mktemp {directory}/.incoming.XXXXXX)",
        "trap 'rm -f \"$tmp\"' EXIT",
        'cat >"$tmp"',
        f'chmod {mode} "$tmp"',
    ]
    if restart_units:
        units = " ".join(shlex.quote(unit) for unit in restart_units)
        lines += [
            f'if cmp -s "$tmp" {quoted}; then changed=""; else changed=1; fi',
            f'mv -f "$tmp" {quoted}',
            f'if [ -n "$changed" ] && [ -d /run/systemd/system ]; then '
            f"systemctl try-restart {units} || true; fi",
        ]
    else:
        lines.append(f'mv -f "$tmp" {quoted}')
    return "\n".join(lines) + "\n"


def _check_pushable(path: str) -> None:
    if not _SAFE_PATH.fullmatch(path) or ".." in path.split("/"):
        raise pulumi.RunError(
            f"nixos/{path}: file names in nixos/ must be letters, digits, '_', '.', '+', '-'"
        )


def remote_command(
    resource_name: str,
    *,
    connection: command.remote.ConnectionArgs,
    parent: pulumi.Resource,
    depends_on: Sequence[pulumi.Resource],
    create: str,
    triggers: Sequence[pulumi.Input[str]],
    stdin: pulumi.Input[str] | None = None,
    secret: bool = False,
    failure_reason: str = "",
    public_prefix: str = "",
    logging: command.remote.Logging | None = None,
) -> command.remote.Command:
    """A command run once over SSH, again only when `create`, `stdin` or `triggers` change.

    `secret`: `stdin` carries a secret; it is sent marked secret, nothing is logged unless
    `logging` says otherwise, stdin/stdout/stderr are secret outputs, and `create` runs
    `guarded` with `failure_reason` as its one line on failure (followed by the body's own
    stderr lines starting with `public_prefix`, if given). Previous output is never put
    into the next run's environment.
    """
    if secret:
        if not failure_reason:
            raise ValueError(f"{resource_name}: a secret command needs a failure_reason")
        create = guarded(create, failure_reason, public_prefix)
    secret_outputs = ["stdin", "stdout", "stderr"] if secret else []
    if secret and logging is None:
        logging = command.remote.Logging.NONE
    if secret and logging == command.remote.Logging.STDOUT:
        secret_outputs.remove("stdout")
    return command.remote.Command(
        resource_name,
        connection=connection,
        add_previous_output_in_env=False,
        create=create,
        stdin=pulumi.Output.secret(stdin) if secret and stdin is not None else stdin,
        triggers=list(triggers),
        logging=logging,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=list(depends_on),
            additional_secret_outputs=secret_outputs,
        ),
    )


@dataclass(frozen=True)
class HostSecret:
    """A secret the NixOS configuration reads from a root-only file (contracts section 4)."""

    file_name: str
    """Name inside /var/lib/mailman-site/secrets/."""
    value: pulumi.Input[str]
    """The secret; sent on stdin only, and marked secret in state."""
    restart_units: tuple[str, ...] = ()
    """Units that read the file and must restart when it changes."""


def host_secrets(
    *,
    rest_api_password: pulumi.Input[str],
    dkim_private_key_pem: pulumi.Input[str],
    restic_password: pulumi.Input[str],
    backup_ssh_key: pulumi.Input[str],
    one_click_key: pulumi.Input[str],
) -> list[HostSecret]:
    """The secret files of contracts section 4, with the units that must see a new value.

    The REST password is substituted into /etc/mailman.cfg by mailman-settings and read by core
    and the web app (and, as a systemd credential, the one-click endpoint); the DKIM key needs
    nothing here, a path unit in nixos/dkim.nix restarts OpenDKIM when the file changes. The
    backup's two files (nixos/backup.nix) are read anew by every run of restic and ssh. The
    one-click key is a systemd credential of core and of the endpoint (nixos/one-click.nix),
    copied at unit start, so both restart when it changes.
    """
    return [
        HostSecret(
            "rest-api-password",
            rest_api_password,
            (
                "mailman-settings.service",
                "mailman.service",
                "mailman-uwsgi.service",
                "mailman-one-click.service",
            ),
        ),
        HostSecret("dkim-private-key.pem", dkim_private_key_pem),
        HostSecret("restic-password", restic_password),
        HostSecret("backup-ssh-key", backup_ssh_key),
        HostSecret(
            "one-click-key", one_click_key, ("mailman.service", "mailman-one-click.service")
        ),
    ]


class NixosDeployment(pulumi.ComponentResource):
    """Push nixos/, the deployment document and host secrets, then switch with rollback.

    `ready` completes once the host runs the pushed configuration and it passed
    `mailman-site-health` (after a reboot, when the change needed one).
    """

    switch: command.remote.Command
    ready: command.remote.Command
    configuration_digest: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        connection: command.remote.ConnectionArgs,
        nixos_ready: pulumi.Resource,
        server_id: pulumi.Input[str],
        files: Mapping[str, str],
        deployment_document: pulumi.Input[str],
        nixos_release: str,
        secrets: Sequence[HostSecret],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Args:
        connection: `Host.connection` (pinned host key, a few minutes of dial retries);
            `switch-verify` dials it with the long budget, since it may cross a reboot.
        nixos_ready: `Host.nixos_ready`; nothing here runs before it.
        server_id: the server's id; a replaced server gets everything pushed and switched again.
        files: nixos/ as `read_nixos_tree` returns it.
        deployment_document: the JSON text of /etc/nixos/deployment.json (no secrets in it).
        nixos_release: the channel the host follows, e.g. "nixos-26.05".
        secrets: root-only files under /var/lib/mailman-site/secrets.
        """
        super().__init__("mailman:nixos:NixosDeployment", name, {}, opts)
        for path in files:
            _check_pushable(path)
        if DEPLOYMENT_DOCUMENT in files:
            raise pulumi.RunError(
                f"nixos/{DEPLOYMENT_DOCUMENT}: this file is generated by the program; remove it"
            )

        def remote(
            role: str,
            depends_on: Sequence[pulumi.Resource],
            create: str,
            triggers: Sequence[pulumi.Input[str]],
            stdin: pulumi.Input[str] | None = None,
            *,
            secret: bool = False,
            failure_reason: str = "",
            via: command.remote.ConnectionArgs = connection,
        ) -> command.remote.Command:
            return remote_command(
                f"{name}-{role}",
                connection=via,
                parent=self,
                depends_on=depends_on,
                create=create,
                triggers=triggers,
                stdin=stdin,
                secret=secret,
                failure_reason=failure_reason,
            )

        # Configuration files: one resource per file, the text as stdin, so a diff is per file.
        pushed = [
            remote(
                f"file-{path}",
                [nixos_ready],
                write_file_command(f"{ETC_NIXOS}/{path}"),
                [server_id],
                stdin=text,
            )
            for path, text in sorted(files.items())
        ]
        pushed.append(
            remote(
                f"file-{DEPLOYMENT_DOCUMENT}",
                [nixos_ready],
                write_file_command(f"{ETC_NIXOS}/{DEPLOYMENT_DOCUMENT}"),
                [server_id],
                stdin=deployment_document,
            )
        )
        # Secrets: stdin only (never argv or environment), nothing logged, every output secret.
        pushed += [
            remote(
                f"secret-{secret.file_name}",
                [nixos_ready],
                write_file_command(
                    f"{SECRETS_DIR}/{secret.file_name}",
                    mode="0600",
                    dir_mode="0700",
                    restart_units=secret.restart_units,
                ),
                [server_id],
                stdin=secret.value,
                secret=True,
                failure_reason=f"writing the secret file {secret.file_name} failed",
            )
            for secret in secrets
        ]
        # The deploy procedure itself; editing it does not re-run the switch.
        script = remote(
            "switch-script",
            [nixos_ready],
            write_file_command(SWITCH_SCRIPT_ON_HOST, mode="0700", dir_mode="0700"),
            [server_id],
            stdin=SWITCH_SCRIPT.read_text(encoding="utf-8"),
        )

        self.configuration_digest = pulumi.Output.from_input(deployment_document).apply(
            lambda document: configuration_digest(files, document)
        )
        # Content hashes, not timestamps: the switch runs when the configuration, the release or
        # the server changes, and never on a plain re-run.
        triggers: list[pulumi.Input[str]] = [self.configuration_digest, nixos_release, server_id]
        managed = " ".join(shlex.quote(path) for path in sorted(files))
        self.switch = remote(
            "switch",
            [*pushed, script],
            f"bash {SWITCH_SCRIPT_ON_HOST} apply {shlex.quote(nixos_release)} {managed}",
            triggers,
        )
        # After a boot-path switch the host reboots; this connects again with the long dial
        # budget (the only command here that crosses a reboot) and checks the rebooted host (or
        # confirms the live switch).
        self.ready = remote(
            "switch-verify",
            [self.switch],
            f"bash {SWITCH_SCRIPT_ON_HOST} verify",
            triggers,
            via=with_budget(connection, ACROSS_REBOOT),
        )
        self.register_outputs(
            {"configurationDigest": self.configuration_digest, "switchOutput": self.switch.stdout}
        )


# How long the final check waits for a site that is still (re)starting.
FINAL_HEALTH_TIMEOUT_SECONDS = 180
FINAL_HEALTH_INTERVAL_SECONDS = 5


def final_health_command(
    timeout_seconds: int = FINAL_HEALTH_TIMEOUT_SECONDS,
    interval_seconds: int = FINAL_HEALTH_INTERVAL_SECONDS,
) -> str:
    """`mailman-site-health --outbound`, retried while the site is still starting.

    The reconcile just before it restarts the web app after a Site rename (every first deploy),
    and uwsgi answers only once Django has loaded, seconds later; a single immediate check would
    fail a healthy site. Prints the last run's output and exits with its status.
    """
    return "\n".join(
        [
            "set -u",
            f"deadline=$(( $(date +%s) + {timeout_seconds} ))",
            "until output=$(mailman-site-health --outbound 2>&1); do",
            '  if [ "$(date +%s)" -ge "$deadline" ]; then',
            "    printf '%s\\n' \"$output\"",
            "    exit 1",
            "  fi",
            f"  sleep {interval_seconds}",
            "done",
            "printf '%s\\n' \"$output\"",
        ]
    )


class SiteHealthCheck(pulumi.ComponentResource):
    """The final check: `mailman-site-health --outbound`; outbound problems only warn.

    Hetzner blocks outbound port 25 on new projects; the site is healthy without it, but mail
    cannot leave, so the check prints `WARN` lines with the unblock hint and exits 0.

    Those lines reach the `pulumi up` output only while the command runs: pulumi-command v1.2.1
    streams a remote command's stdout and stderr line by line as it runs (logging unset or
    stdoutAndStderr: provider/pkg/provider/remote/commandOutputs.go lines 80-93, util.go
    LogOutput lines 32-53). Nothing here reads the stdout kept in state, which a later update
    that does not re-run the check would replay after the block was lifted.
    """

    check: command.remote.Command

    def __init__(
        self,
        name: str,
        *,
        connection: command.remote.ConnectionArgs,
        server_id: pulumi.Input[str],
        server_type: pulumi.Input[str],
        depends_on: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """Args:
        server_id: a new server is checked again.
        server_type: so is a resized one: Hetzner changes the type in place (same id), after the
            provider powered the server off hard; the program powers it on again
            (`Host.power_on`), and this is what proves the site came back (its dial retries wait
            for the boot).
        """
        super().__init__("mailman:nixos:SiteHealthCheck", name, {}, opts)
        self.check = remote_command(
            f"{name}-check",
            connection=connection,
            parent=self,
            depends_on=depends_on,
            # --outbound runs every site check too (non-zero exit when one fails) and adds the
            # outbound SMTP probe, which only ever prints WARN lines.
            create=final_health_command(),
            triggers=[server_id, server_type],
            logging=command.remote.Logging.STDOUT_AND_STDERR,
        )
        self.register_outputs({"output": self.check.stdout})
