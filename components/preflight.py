"""Preflight: what Hetzner and this machine must offer, checked before any resource exists.

Settings (`components/settings.py`) check the form of each value; this module asks Hetzner,
through the provider's own data sources, whether the values exist: the server type, whether it is
sold (and not deprecated) in the location, the DNS zone, and -- when the stack already runs a
server -- whether a `serverType` change is one Hetzner can make in place. A refusal is the same
one line as a bad setting (`mailman:<key>: <value> is not <expected form>`, `pulumi.RunError`).

The invokes also run under `pulumi preview`, so a preview refuses what `pulumi up` would refuse.
Only the SSH agent check is a warning there: a preview runs no remote command.
"""

from __future__ import annotations

import os
import re
import socket
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import pulumi
import pulumi_hcloud as hcloud

from components.settings import NAMESPACE, Settings, fail, not_expected, shown

T = TypeVar("T")


@dataclass(frozen=True)
class ServerTypeFacts:
    """What the program relies on about a server type (`hcloud.get_server_type`)."""

    name: str
    architecture: str  # "x86" or "arm"
    disk_gb: int


@dataclass(frozen=True)
class ExistingServer:
    """The server this stack already runs, as Hetzner reports it (`hcloud.get_servers`)."""

    name: str
    location: str
    server_type: str
    architecture: str
    disk_gb: int  # the disk it has now: with keep_disk a resize never grows it
    powered_off: bool  # e.g. an earlier `pulumi up` resized it and stopped before powering on


@dataclass(frozen=True)
class PreflightFacts:
    """What preflight learned; the host builds on it."""

    server_type: ServerTypeFacts
    existing: ExistingServer | None  # None on a first deploy

    @property
    def resizes(self) -> bool:
        """Whether this `pulumi up` changes the running server's type (in place, with downtime)."""
        return self.existing is not None and self.existing.server_type != self.server_type.name

    @property
    def powers_on(self) -> bool:
        """Whether this `pulumi up` must power the server on: after the resize it makes, or
        because an earlier one resized it and failed before its power-on ran."""
        return self.resizes or (self.existing is not None and self.existing.powered_off)


def _first_line(error: Exception) -> str:
    """The provider's message without the SDK's "invoke of <token> failed: " prefix."""
    lines = str(error).strip().splitlines()
    line = lines[-1].strip() if lines else type(error).__name__
    return re.sub(r"^invoke of \S+ failed: ", "", line)


def _lookup(call: Callable[[], T], key: str, value: str, expected: str) -> T:
    """Run an invoke; "not found" is the one-line refusal for `key`, any other error says so."""
    try:
        return call()
    except Exception as error:  # the invoke's own error type is a bare Exception
        line = _first_line(error)
        # hcloudutil.NotFoundDiagnostic (v1.68.0 internal/util/hcloudutil/error_framework.go
        # line 98): "Resource (<what>) was not found: ...".
        if "was not found" in line:
            fail(key, value, f"{expected} (Hetzner: {line})")
        raise pulumi.RunError(
            f"{NAMESPACE}:{key}: {shown(value)} could not be checked with Hetzner: {line}"
        ) from None


def check_server_type(settings: Settings, running: str | None = None) -> ServerTypeFacts:
    """The type exists, is sold in the location and is not deprecated there.

    `running`: the type of the stack's server. A server that already has the type keeps it
    (Hetzner does not take a running server away): then "not sold" and "deprecated" are
    warnings, refusals only for a server to be created or resized.
    """
    name, location = settings.server_type, settings.location
    refuse = _warn if running == name else fail
    found = _lookup(
        lambda: hcloud.get_server_type(name=name),
        "serverType",
        name,
        "a server type Hetzner offers (hcloud server-type list)",
    )
    # terraform-provider-hcloud v1.68.0 internal/servertype/data_source.go lines 187-235: the
    # per-location list (name, available, recommended, deprecation) replaces the type-wide
    # deprecation fields, which are phased out.
    here = [entry for entry in found.locations if entry.name == location]
    sold_in = sorted(entry.name for entry in found.locations if entry.available)
    if not here or not here[0].available:
        refuse("serverType", name, f"sold in {location} (it is sold in: {', '.join(sold_in)})")
    elif here[0].is_deprecated:
        after = here[0].unavailable_after or "a date Hetzner announced"
        refuse(
            "serverType",
            name,
            f"a current server type in {location} ({name} is deprecated, unavailable after "
            f"{after})",
        )
    return ServerTypeFacts(name=name, architecture=found.architecture, disk_gb=found.disk)


def _warn(key: str, value: object, expected: str) -> None:
    pulumi.log.warn(f"{not_expected(key, value, expected)}; the running server keeps it")


def check_location(settings: Settings) -> None:
    _lookup(
        lambda: hcloud.get_location(name=settings.location),
        "location",
        settings.location,
        "a Hetzner location",
    )


def check_zone(settings: Settings) -> None:
    zone = settings.dns_zone
    if zone is None:
        return
    _lookup(
        lambda: hcloud.get_zone(name=zone),
        "dnsZone",
        zone,
        "a DNS zone in this Hetzner project (create it first, or unset dnsZone)",
    )


def label_selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def existing_server(settings: Settings) -> ExistingServer | None:
    """The stack's server, found by the labels every resource of the stack carries."""
    servers = _lookup(
        lambda: hcloud.get_servers(with_selector=label_selector(settings.labels)).servers,
        "serverType",
        settings.server_type,
        "checkable against the running server",
    )
    if not servers:
        return None
    # The hostname may be changing in this same update, so the name only breaks a tie.
    server = next((s for s in servers if s.name == settings.hostname), servers[0])
    facts = _lookup(
        lambda: hcloud.get_server_type(name=server.server_type),
        "serverType",
        settings.server_type,
        f"checkable against the running server's type {server.server_type}",
    )
    return ExistingServer(
        name=server.name,
        location=server.location,
        server_type=server.server_type,
        architecture=facts.architecture,
        disk_gb=server.primary_disk_size,
        powered_off=server.status == "off",
    )


def check_resize(wanted: ServerTypeFacts, existing: ExistingServer | None) -> None:
    """Refuse a type change Hetzner would refuse only after the provider powered the server off.

    terraform-provider-hcloud v1.68.0 internal/server/resource.go lines 587-611: Poweroff, then
    ChangeType (keep_disk: upgrade_disk false); Hetzner refuses another architecture and a type
    whose disk is smaller than the server's (terraform-provider-hcloud issue #853), leaving the
    server off.
    """
    if existing is None or existing.server_type == wanted.name:
        return
    if wanted.architecture != existing.architecture:
        fail(
            "serverType",
            wanted.name,
            f"of the running {existing.server_type}'s architecture {existing.architecture} "
            f"(Hetzner cannot change it in place; {wanted.name} is {wanted.architecture})",
        )
    if wanted.disk_gb < existing.disk_gb:
        fail(
            "serverType",
            wanted.name,
            f"a type with at least the running server's {existing.disk_gb} GB disk "
            f"({wanted.name} has {wanted.disk_gb} GB; Hetzner cannot shrink a disk)",
        )


def check_volume_size(settings: Settings) -> None:
    """Hetzner grows volumes, never shrinks them; refuse before the update fails half-way."""
    volumes = _lookup(
        lambda: hcloud.get_volumes(with_selector=label_selector(settings.labels)).volumes,
        "volumeSize",
        str(settings.volume_size),
        "checkable against the stack's volume",
    )
    for volume in volumes:
        if volume.name == settings.volume_name and volume.size > settings.volume_size:
            fail(
                "volumeSize",
                settings.volume_size,
                f"at least the volume's {volume.size} GB (Hetzner volumes cannot shrink)",
            )


def check_agent_socket(environ: Mapping[str, str], *, preview: bool) -> None:
    """A set SSH_AUTH_SOCK must be a live agent: pulumi-command dials it for every command.

    pulumi-command v1.2.1 provider/pkg/provider/remote/connection.go lines ~131-145: with
    SSH_AUTH_SOCK set, a failed agent dial fails every remote command at once.
    """
    path = environ.get("SSH_AUTH_SOCK")
    if not path:
        return
    problem = _agent_socket_problem(path)
    if problem is None:
        return
    line = (
        f"SSH_AUTH_SOCK: {path} is not a live ssh-agent socket ({problem}); every remote "
        "command would fail: unset SSH_AUTH_SOCK or start the agent"
    )
    if preview:
        pulumi.log.warn(line + " before `pulumi up`")
        return
    raise pulumi.RunError(line)


def _agent_socket_problem(path: str) -> str | None:
    try:
        mode = os.stat(path).st_mode  # noqa: PTH116 - a socket path, not a file we open
    except OSError as error:
        return error.strerror or "cannot stat"
    if not stat.S_ISSOCK(mode):
        return "not a socket"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(2)
        try:
            client.connect(path)
        except OSError as error:
            return error.strerror or "cannot connect"
    return None


def check_token_source(environ: Mapping[str, str], stack_token: str | None) -> None:
    """A Hetzner token in the stack config must not silently win over the environment's.

    The hcloud provider takes `hcloud:token` over HCLOUD_TOKEN (terraform-provider-hcloud
    v1.68.0 hcloud/plugin_provider.go lines 144-147: the variable is read, then replaced by the
    configured value; hcloud/provider.go lines 37-41 for the SDK provider, where the variable is
    only the default). A CI job that provides its own, narrower token (a read-only one for
    previews, docs/workflows.md) would then act with the stack file's token instead. Both set
    and different: refused, naming the fix. Neither value is printed.
    """
    env_token = environ.get("HCLOUD_TOKEN", "")
    if stack_token and env_token and stack_token != env_token:
        raise pulumi.RunError(
            "hcloud:token: the stack's token differs from HCLOUD_TOKEN in the environment, and "
            "the provider would use the stack's; keep one: `pulumi config rm hcloud:token` "
            "(use the environment's, as CI does) or unset HCLOUD_TOKEN"
        )


def run_preflight(settings: Settings) -> PreflightFacts:
    """Every check, in the order a user fixes them; the first refusal raises `pulumi.RunError`."""
    # pulumi.Config.get of a secret value: plain, no warning (pulumi 3.272.0 pulumi/config.py,
    # Config._get: the secret-use warning is commented out); the value is only compared.
    check_token_source(os.environ, pulumi.Config("hcloud").get("token"))
    check_agent_socket(os.environ, preview=pulumi.runtime.is_dry_run())
    check_location(settings)
    check_zone(settings)
    existing = existing_server(settings)
    if existing is not None and existing.location != settings.location:
        # A location change replaces the server, its IPs and the volume (docs/program.md, "What
        # a change of each setting does"): check the type as for a new server, and nothing
        # against the old server or volume, which will be deleted first.
        existing = None
        wanted = check_server_type(settings)
    else:
        wanted = check_server_type(settings, existing.server_type if existing else None)
        check_resize(wanted, existing)
        check_volume_size(settings)
    return PreflightFacts(server_type=wanted, existing=existing)
