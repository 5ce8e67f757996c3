"""Run the whole Pulumi program under `pulumi.runtime.set_mocks` and record what it registers.

Usage (the API other test areas build on; keep it stable):

    from tests.harness import run_program, run_failing_program

    run = run_program({"hostname": "lists.example.org", "adminEmail": "pm@example.org"},
                      secrets={"adminPassword"})
    server = run.one("hcloud:index/server:Server")
    server.inputs["serverType"]          # inputs as the provider would receive them (camelCase)
    server.protect, server.ignore_changes, server.depends_on, server.parent
    run.outputs["siteUrl"], "adminPassword" in run.secret_outputs

    failed = run_failing_program({"hostname": "lists_example"})
    str(failed.error)                    # the one line the Pulumi CLI would print
    failed.resources                     # what was registered before it failed

    site = run.namespace["site"]         # the program's globals, e.g. the MailmanSite object
    value, is_secret = run.resolve(site.host.connection.private_key)
    run.component_outputs[urn]           # what a component passed to register_outputs

    run_program(config, cloud=FIRST_DEPLOY.with_server("cx23"))  # the stack already runs a cx23

`cloud` is what the provider's data sources (invokes) report: server types, locations, zones and
the servers already in the project (`Cloud`, `FIRST_DEPLOY` by default: no server yet).

`config` keys without a namespace get `mailman:`; values that are not strings are JSON-encoded the
way `pulumi config set --path`/structured config stores them (`true`, `["a"]`, `{...}`).
`secrets` names the config keys stored as secrets (same spelling as in `config`). Both reach the
program as the Python language host passes them: the PULUMI_CONFIG / PULUMI_CONFIG_SECRET_KEYS
environment (`language_host_environment`), read through `pulumi.Config`.

The real SDK resource classes run unmodified: a wrong argument name or type fails here exactly as
it would in `pulumi up`. What the mocks return for outputs (IP addresses, volume device paths,
key material) is in `MockCloud.new_resource`; outputs the provider schema marks secret
(`additionalSecretOutputs`, e.g. `tls.PrivateKey.privateKeyOpenssh`) come back secret, as the
engine does it.

Why this runner, unlike the program, imports SDK internals: the public mock API
(`pulumi.runtime.Mocks.new_resource`, pulumi 3.272.0 pulumi/runtime/mocks.py `MockResourceArgs`)
sees only type, name, unwrapped inputs, provider and id -- not `protect`,
`deleteBeforeReplace`, `ignoreChanges`, `dependsOn`, `additionalSecretOutputs` or which inputs
are secret, which is what the deploy's safety rests on. So `RecordingMonitor` extends the SDK's
mock monitor at the request level (`rpc`, `resource_pb2`), and `run_pulumi_func` runs the
program as the language host does, with stack outputs. The program itself uses public APIs only
(tests/components/test_settings.py checks its configuration reads).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import hashlib
import json
import os
import runpy
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import SETTINGS, get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from tests.pulumi_engine import EngineConfigError, apply_project_config, load_project

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "__main__.py"
PROJECT = "mailman"

# Public halves of throwaway keys, so that values the program validates or publishes (SSH
# authorized_keys lines, the DKIM record) have the real format. The private halves were never kept.
MOCK_ED25519_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINZUtH8+sXkGoj8tFhPk5nzatSyt4YCTquImoE2/suEg"
)
OPERATOR_ED25519_PUBLIC = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGjrlnqH1FFnciio/robS/ae98DRmFBVLgwH/eNrK066"
)
MOCK_RSA_PUBLIC_PEM = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA0ryVN8bog0zjCyEy+wKy
CKuJ7lym1jEJDm1V//QcKQRn+4pfQcCcxUadLH7do5T1GCpC7OxzEj8fKpxwFb9z
qNGTtOC2tZ1Kc+VrrIP1frg/YB7MiH2HUuXclLOAmMn3Tt4kPq8G+ETrawsd/lOp
ZP9drawZ42Qotrr7MJpYNRMrkTN3lnMDBR9TDUrIC+j0ExT4OQG2G7occzXfRIPi
C/wbEXgrrjux3FTJ5B2lCpJ+dz2boYD7EVIm568Q2/c5Fd0dhRJzbKrAawSoY4b/
Q9ufdV3WdSpUEuLFZSFB7VFxa+Fm4U/24hxumvsPoMVYe1vVQJ926oB67JBEsBlC
1QIDAQAB
-----END PUBLIC KEY-----
"""
MOCK_IPV4 = "203.0.113.10"
MOCK_IPV6_PREFIX = "2001:db8:1:2::"
MOCK_IPV6_NETWORK = MOCK_IPV6_PREFIX + "/64"

# The wire marker the engine uses for secret values (private names in the SDK, stable protocol).
_SECRET_SIG = rpc._special_secret_sig
_SIG_KEY = rpc._special_sig_key


@dataclass(frozen=True)
class Secret:
    """A value the engine would receive marked secret."""

    value: Any


@dataclass(frozen=True)
class RegisteredResource:
    """One `RegisterResource` call as the engine would see it."""

    type: str
    name: str
    urn: str
    id: str  # the provider id the mocks assigned
    custom: bool
    parent: str
    raw_inputs: Mapping[str, Any]  # secret values wrapped in `Secret`
    outputs: Mapping[str, Any]  # the state the mocks returned (plain)
    protect: bool
    ignore_changes: tuple[str, ...]
    depends_on: tuple[str, ...]  # URNs of explicit and implied dependencies
    delete_before_replace: bool
    replace_on_changes: tuple[str, ...]
    additional_secret_outputs: tuple[str, ...]
    retain_on_delete: bool
    deleted_with: str
    provider: str

    @property
    def inputs(self) -> Any:
        """Inputs with secret markers removed."""
        return unwrap(self.raw_inputs)

    def registered_outputs(self, run: ProgramRun) -> Any:
        """What this component passed to `register_outputs` (secret markers removed)."""
        return unwrap(run.component_outputs.get(self.urn, {}))

    def is_secret(self, key: str) -> bool:
        """Whether top-level input `key` is sent to the engine as a secret."""
        return isinstance(self.raw_inputs.get(key), Secret)


@dataclass
class ProgramRun:
    """Everything one evaluation of the program registered and exported."""

    resources: list[RegisteredResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    invokes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    # What each component passed to `register_outputs`, by URN (secret values wrapped in `Secret`).
    component_outputs: dict[str, Any] = field(default_factory=dict)
    error: BaseException | None = None
    # The program's module globals after it ran (e.g. `namespace["site"]`), for tests that need
    # the Python objects themselves; resolve their outputs with `ProgramRun.resolve`.
    namespace: dict[str, Any] = field(default_factory=dict)

    def resolve(self, value: Any) -> tuple[Any, bool]:
        """The value of an `Output` (or plain input) of this run, and whether it is secret."""
        output = pulumi.Output.from_input(value)

        async def _get() -> tuple[Any, bool]:
            return await output.future(with_unknowns=False), await output.is_secret()

        return _sync_await(_get())

    def of_type(self, type_: str) -> list[RegisteredResource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: str | None = None) -> RegisteredResource:
        found = [r for r in self.of_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            names = [r.name for r in self.of_type(type_)]
            raise AssertionError(f"expected one {type_} named {name!r}, found {names}")
        return found[0]

    def by_urn(self, urn: str) -> RegisteredResource:
        for resource in self.resources:
            if resource.urn == urn:
                return resource
        raise KeyError(urn)

    def ancestors(self, resource: RegisteredResource) -> list[RegisteredResource]:
        """Parents of `resource`, nearest first (the Stack itself is not recorded)."""
        chain: list[RegisteredResource] = []
        known = {r.urn: r for r in self.resources}
        parent = resource.parent
        while parent in known:
            chain.append(known[parent])
            parent = known[parent].parent
        return chain


class ProgramFailedError(AssertionError):
    """The program raised where the test expected it to succeed."""


def unwrap(value: Any) -> Any:
    """Strip `Secret` markers from a recorded value."""
    if isinstance(value, Secret):
        return unwrap(value.value)
    if isinstance(value, Mapping):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unwrap(v) for v in value]
    return value


def plain_strings(value: Any) -> Iterator[str]:
    """Every string in `value` that is not under a `Secret` marker (keys included)."""
    if isinstance(value, Secret):
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield str(k)
            yield from plain_strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from plain_strings(v)


def _mark_secrets(value: Any) -> Any:
    """Turn the wire format's secret wrappers into `Secret`."""
    if isinstance(value, dict):
        if value.get(_SIG_KEY) == _SECRET_SIG:
            return Secret(_mark_secrets(value.get("value")))
        return {k: _mark_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_secrets(v) for v in value]
    return value


def _stable_number(text: str, digits: int = 8) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16) % 10**digits


def _split_txt(record: str) -> str:
    """What the hcloud provider's `txt_record` function returns: 255-char quoted strings."""
    if record.startswith('"') and record.endswith('"'):
        return record
    chunks = [record[i : i + 255] for i in range(0, len(record), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


EU = ("fsn1", "nbg1", "hel1")
EVERYWHERE = ("fsn1", "nbg1", "hel1", "ash", "hil", "sin")


@dataclass(frozen=True)
class ServerType:
    """A Hetzner server type as `hcloud.get_server_type` describes it."""

    name: str
    architecture: str
    cores: int
    memory: int
    disk: int
    sold_in: tuple[str, ...]
    deprecated_in: tuple[str, ...] = ()  # locations where it is deprecated

    def invoke_result(self, type_id: int) -> dict[str, Any]:
        """The data source's answer (terraform-provider-hcloud v1.68.0
        internal/servertype/data_source.go lines 146-240), in the SDK's wire names."""
        deprecated_everywhere = bool(self.deprecated_in) and set(self.deprecated_in) >= set(
            self.sold_in
        )
        return {
            "id": type_id,
            "name": self.name,
            "description": self.name.upper(),
            "category": "shared" if self.name.startswith(("cx", "cpx", "cax")) else "dedicated",
            "cores": self.cores,
            "memory": self.memory,
            "disk": self.disk,
            "storageType": "local",
            "cpuType": "shared" if not self.name.startswith("ccx") else "dedicated",
            "architecture": self.architecture,
            "includedTraffic": 0,
            "isDeprecated": deprecated_everywhere,
            "deprecationAnnounced": "2026-01-01T00:00:00Z" if deprecated_everywhere else "",
            "unavailableAfter": "2026-04-01T00:00:00Z" if deprecated_everywhere else "",
            "locations": [
                {
                    "id": EVERYWHERE.index(location) + 1,
                    "name": location,
                    "available": location in self.sold_in,
                    "recommended": location in self.sold_in,
                    "isDeprecated": location in self.deprecated_in,
                    "deprecationAnnounced": (
                        "2026-01-01T00:00:00Z" if location in self.deprecated_in else ""
                    ),
                    "unavailableAfter": (
                        "2026-04-01T00:00:00Z" if location in self.deprecated_in else ""
                    ),
                }
                for location in EVERYWHERE
                if location in self.sold_in or location in self.deprecated_in
            ],
        }


# Hetzner's catalogue as of 2026 (https://www.hetzner.com/cloud): cores, GB memory, GB disk.
SERVER_TYPES = {
    t.name: t
    for t in (
        ServerType("cx23", "x86", 2, 4, 40, EU),
        ServerType("cx33", "x86", 4, 8, 80, EU),
        ServerType("cx43", "x86", 8, 16, 160, EU),
        ServerType("cx53", "x86", 16, 32, 320, EU),
        ServerType("cpx22", "x86", 2, 4, 80, EVERYWHERE),
        ServerType("cpx32", "x86", 4, 8, 160, EVERYWHERE),
        ServerType("cax11", "arm", 2, 4, 40, EU),
        ServerType("cax21", "arm", 4, 8, 80, EU),
        ServerType("ccx13", "x86", 2, 8, 80, EVERYWHERE),
        # Deprecated (still orderable until its date), and sold nowhere any more.
        ServerType("cx22", "x86", 2, 4, 40, EU, deprecated_in=EU),
        ServerType("cx11", "x86", 1, 2, 20, ()),
    )
}


@dataclass(frozen=True)
class CloudServer:
    """A server that already exists in the Hetzner project (a stack's earlier `pulumi up`)."""

    name: str
    server_type: str
    primary_disk_size: int
    labels: Mapping[str, str]
    location: str = "nbg1"
    status: str = "running"  # "off" after a resize whose power-on never ran


@dataclass(frozen=True)
class CloudVolume:
    """A volume that already exists in the Hetzner project."""

    name: str
    size: int
    labels: Mapping[str, str]


@dataclass(frozen=True)
class Cloud:
    """What the Hetzner project holds, as the provider's data sources (invokes) report it."""

    server_types: Mapping[str, ServerType] = field(default_factory=lambda: dict(SERVER_TYPES))
    locations: tuple[str, ...] = EVERYWHERE
    zones: tuple[str, ...] = ("example.org", "corp.example.org", "other.org")
    servers: tuple[CloudServer, ...] = ()
    volumes: tuple[CloudVolume, ...] = ()
    api_error: str | None = None  # every lookup fails with this (a bad token, an outage)

    def with_server(
        self,
        server_type: str,
        *,
        stack: str = "test",
        name: str = "lists.example.org",
        volume_size: int = 10,
        status: str = "running",
    ) -> Cloud:
        """This cloud after a first deploy of `stack` on `server_type` (disk as created), with
        its data volume."""
        disk = self.server_types[server_type].disk
        labels = {"project": PROJECT, "stack": stack}
        server = CloudServer(name, server_type, disk, labels, status=status)
        volume = CloudVolume(f"{PROJECT}-{stack}-data", volume_size, labels)
        return dataclasses.replace(
            self, servers=(*self.servers, server), volumes=(*self.volumes, volume)
        )


FIRST_DEPLOY = Cloud()


def _not_found(what: str, key: str, value: object) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    # hcloudutil.NotFoundDiagnostic (v1.68.0 internal/util/hcloudutil/error_framework.go line 98).
    return {}, [(key, f'Resource ({what}) was not found: {key}="{value}"')]


def _server_result(server: CloudServer, server_id: int) -> dict[str, Any]:
    """One `hcloud.get_servers` entry (GetServersServerResult, wire names)."""
    return {
        "id": server_id,
        "name": server.name,
        "serverType": server.server_type,
        "primaryDiskSize": server.primary_disk_size,
        "labels": dict(server.labels),
        "location": server.location,
        "datacenter": "",
        "image": "debian-12",
        "status": server.status,
        "backups": True,
        "backupWindow": "22-02",
        "deleteProtection": True,
        "rebuildProtection": True,
        "firewallIds": [],
        "ipv4Address": MOCK_IPV4,
        "ipv6Address": MOCK_IPV6_PREFIX + "1",
        "ipv6Network": MOCK_IPV6_NETWORK,
        "iso": "",
        "placementGroupId": 0,
        "rescue": "",
    }


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
    return all(labels.get(k) == v for k, v in wanted.items())


class MockCloud(pulumi.runtime.Mocks):
    """Plausible provider answers: deterministic ids and outputs derived from names and inputs."""

    def __init__(self, run: ProgramRun, cloud: Cloud = FIRST_DEPLOY) -> None:
        self.run = run
        self.cloud = cloud

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        inputs = dict(args.inputs)
        resource_id = str(_stable_number(f"{args.typ}::{args.name}"))
        state: dict[str, Any] = dict(inputs)
        typ = args.typ
        if typ == "hcloud:index/primaryIp:PrimaryIp":
            if inputs.get("type") == "ipv6":
                state["ipAddress"] = MOCK_IPV6_PREFIX
                state["ipNetwork"] = MOCK_IPV6_NETWORK
            else:
                state["ipAddress"] = MOCK_IPV4
        elif typ == "hcloud:index/volume:Volume":
            state["linuxDevice"] = f"/dev/disk/by-id/scsi-0HC_Volume_{resource_id}"
        elif typ == "hcloud:index/server:Server":
            state["ipv4Address"] = MOCK_IPV4
            state["ipv6Address"] = MOCK_IPV6_PREFIX + "1"
            state["ipv6Network"] = MOCK_IPV6_NETWORK
            state["status"] = "running"
        elif typ == "hcloud:index/storageBox:StorageBox":
            # The API names a box's main user u<number> and its host <user>.your-storagebox.de.
            state["username"] = f"u{resource_id[-6:]}"
            state["server"] = f"u{resource_id[-6:]}.your-storagebox.de"
        elif typ == "tls:index/privateKey:PrivateKey":
            state.update(self._key_material(args.name, str(inputs.get("algorithm"))))
        elif typ == "random:index/randomPassword:RandomPassword":
            state["result"] = f"mock-password-{args.name}-{_stable_number(args.name)}"
        elif typ in ("command:remote:Command", "command:local:Command"):
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        return resource_id, state

    def _lookups(self) -> dict[str, Callable[[dict[str, Any]], tuple[dict[str, Any], Any]]]:
        return {
            "hcloud:index/getServerType:getServerType": self._server_type,
            "hcloud:index/getLocation:getLocation": self._location,
            "hcloud:index/getZone:getZone": self._zone,
            "hcloud:index/getServers:getServers": self._servers,
            "hcloud:index/getVolumes:getVolumes": self._volumes,
        }

    def _volumes(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        selector = str(args.get("withSelector", ""))
        volumes = [
            {
                "id": _stable_number(v.name),
                "name": v.name,
                "size": v.size,
                "labels": dict(v.labels),
                "linuxDevice": f"/dev/disk/by-id/scsi-0HC_Volume_{_stable_number(v.name)}",
                "location": "nbg1",
                "deleteProtection": True,
                "serverId": 0,
            }
            for v in self.cloud.volumes
            if _matches(v.labels, selector)
        ]
        return {"id": selector, "volumes": volumes, "withSelector": selector}, []

    def _server_type(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        name = str(args.get("name"))
        found = self.cloud.server_types.get(name)
        if found is None:
            return _not_found("server type", "name", name)
        return found.invoke_result(_stable_number(name, 3)), []

    def _location(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        name = str(args.get("name"))
        if name not in self.cloud.locations:
            return _not_found("location", "name", name)
        return {
            "id": self.cloud.locations.index(name) + 1,
            "name": name,
            "description": name,
            "city": name,
            "country": "DE",
            "latitude": 0.0,
            "longitude": 0.0,
            "networkZone": "eu-central",
        }, []

    def _zone(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        name = str(args.get("name"))
        if name not in self.cloud.zones:
            return _not_found("zone", "name", name)
        return {
            "id": _stable_number(name),
            "name": name,
            "mode": "primary",
            "ttl": 3600,
            "labels": {},
            "deleteProtection": False,
            "registrar": "other",
            "primaryNameservers": [],
            "authoritativeNameservers": {
                "assigneds": ["hydrogen.ns.hetzner.com.", "oxygen.ns.hetzner.com."]
            },
        }, []

    def _servers(self, args: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        selector = str(args.get("withSelector", ""))
        servers = [
            _server_result(s, _stable_number(s.name))
            for s in self.cloud.servers
            if _matches(s.labels, selector)
        ]
        return {"id": selector, "servers": servers, "withSelector": selector}, []

    @staticmethod
    def _key_material(name: str, algorithm: str) -> dict[str, str]:
        marker = f"MOCK-{algorithm}-{name}"
        private_pem = f"-----BEGIN PRIVATE KEY-----\n{marker}\n-----END PRIVATE KEY-----\n"
        private_openssh = (
            f"-----BEGIN OPENSSH PRIVATE KEY-----\n{marker}\n-----END OPENSSH PRIVATE KEY-----\n"
        )
        public_openssh = (
            MOCK_ED25519_PUBLIC if algorithm == "ED25519" else "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB"
        )
        return {
            "privateKeyPem": private_pem,
            "privateKeyPemPkcs8": private_pem,
            "privateKeyOpenssh": private_openssh,
            "publicKeyOpenssh": public_openssh + "\n",
            "publicKeyPem": MOCK_RSA_PUBLIC_PEM,
            "publicKeyFingerprintSha256": f"SHA256:{marker}",
        }

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.run.invokes.append((args.token, dict(args.args)))
        if args.token == "hcloud:index/txtRecord:txtRecord":
            return {"result": _split_txt(str(args.args.get("record", "")))}, []
        if args.token == "hcloud:index/idna:idna":
            return {"result": str(args.args.get("domain", "")).encode("idna").decode()}, []
        lookup = self._lookups().get(args.token)
        if lookup is not None and self.cloud.api_error is not None:
            return {}, [("", self.cloud.api_error)]
        if lookup is not None:
            return lookup(dict(args.args))
        raise NotImplementedError(f"harness has no mock for invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    """The SDK's mock monitor, plus a record of every registration's options."""

    def __init__(self, mocks: MockCloud, run: ProgramRun) -> None:
        super().__init__(mocks)
        self.run = run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == "pulumi:pulumi:Stack":
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        inputs = rpc.deserialize_properties(request.object)
        resource_args = pulumi.runtime.MockResourceArgs(
            typ=request.type,
            name=request.name,
            inputs=unwrap(_mark_secrets(inputs)),
            provider=request.provider,
            resource_id=request.importId,
            custom=request.custom or False,
        )
        id_, state = self.mocks.new_resource(resource_args)
        wire_state = {
            k: ({_SIG_KEY: _SECRET_SIG, "value": v} if k in request.additionalSecretOutputs else v)
            for k, v in state.items()
        }
        obj_proto = _sync_await(rpc.serialize_properties(wire_state, {}))
        self.resources[urn] = pulumi_mocks.MockMonitor.ResourceRegistration(urn, id_, state)
        dependencies = set(request.dependencies)
        for deps in request.propertyDependencies.values():
            dependencies.update(deps.urns)
        self.run.resources.append(
            RegisteredResource(
                type=request.type,
                name=request.name,
                urn=urn,
                id=id_ or "",
                custom=bool(request.custom),
                parent=request.parent,
                raw_inputs=_mark_secrets(inputs),
                outputs=state,
                protect=bool(request.protect),
                ignore_changes=tuple(request.ignoreChanges),
                depends_on=tuple(sorted(dependencies)),
                delete_before_replace=bool(request.deleteBeforeReplace),
                replace_on_changes=tuple(request.replaceOnChanges),
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
                retain_on_delete=bool(request.retainOnDelete),
                deleted_with=request.deletedWith,
                provider=request.provider,
            )
        )
        return resource_pb2.RegisterResourceResponse(urn=urn, id=id_, object=obj_proto)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        _ensure_event_loop()
        outputs = rpc.deserialize_properties(request.outputs)
        self.run.component_outputs[request.urn] = _mark_secrets(outputs)
        return super().RegisterResourceOutputs(request)


def _config_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _qualified(key: str) -> str:
    return key if ":" in key else f"mailman:{key}"


async def _resolve_outputs(exports: Mapping[str, Any], run: ProgramRun) -> None:
    for name, value in exports.items():
        output = pulumi.Output.from_input(value)
        run.outputs[name] = await output.future(with_unknowns=False)
        if await output.is_secret():
            run.secret_outputs.add(name)


def _evaluate(
    program: Path,
    *,
    stack: str,
    preview: bool,
    cloud: Cloud,
    project: str,
) -> ProgramRun:
    run = ProgramRun()
    mocks = MockCloud(run, cloud)
    pulumi.runtime.set_mocks(
        mocks, project=project, stack=stack, preview=preview, monitor=RecordingMonitor(mocks, run)
    )
    SETTINGS.rpc_manager.clear()
    SETTINGS.outputs.clear()

    def program_body() -> None:
        run.namespace = runpy.run_path(str(program), run_name="__main__")

    try:
        _sync_await(run_pulumi_func(program_body))
        root = get_root_resource()
        exports = dict(getattr(root, "outputs", {}))
        _sync_await(_resolve_outputs(exports, run))
    except Exception as error:  # handed to the caller to assert on
        run.error = error
    return run


def language_host_environment(
    config: Mapping[str, Any], secrets: Iterable[str] = ()
) -> dict[str, str]:
    """The environment the Python language host gives a program for this stack configuration.

    pulumi/pulumi sdk/python/cmd/pulumi-language-python/main.go passes the configuration as
    `PULUMI_CONFIG` (a JSON object of fully qualified keys to strings; structured values
    JSON-encoded) and `PULUMI_CONFIG_SECRET_KEYS` (a JSON array of the keys stored encrypted);
    `pulumi.Config` reads the values from there (pulumi/runtime/config.py `get_config_env`).
    """
    return {
        "PULUMI_CONFIG": json.dumps({_qualified(k): _config_value(v) for k, v in config.items()}),
        "PULUMI_CONFIG_SECRET_KEYS": json.dumps(sorted(_qualified(k) for k in secrets)),
    }


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables for the duration of one evaluation."""
    previous = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value
        yield
    finally:
        for name, value in previous.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def run_failing_program(
    config: Mapping[str, Any],
    secrets: Iterable[str] = (),
    *,
    stack: str = "test",
    preview: bool = False,
    program: Path = MAIN,
    cloud: Cloud = FIRST_DEPLOY,
    ssh_auth_sock: str | None = None,
    project: str = PROJECT,
    engine_checks: bool = True,
) -> ProgramRun:
    """Evaluate the program once; any exception is returned in `ProgramRun.error`, not raised.

    For the real program, the configuration first goes through what the CLI does with it
    (tests/pulumi_engine.py: Pulumi.yaml's defaults merged in, declared types and required keys
    checked; a refusal is returned as `ProgramRun.error`, an `EngineConfigError`, with nothing
    run). `engine_checks=False` skips that, to test the program's own checks on values the
    engine would already refuse (what tools/check_settings.py sees). The configuration then
    reaches the program the way the Python language host passes it: in the
    `PULUMI_CONFIG`/`PULUMI_CONFIG_SECRET_KEYS` environment (`language_host_environment`).
    `ssh_auth_sock`: SSH_AUTH_SOCK while the program runs (unset by default, whatever the
    environment of the tests says: preflight refuses a stale agent socket).
    """
    if engine_checks and program == MAIN:
        try:
            engine = apply_project_config(
                load_project(REPO / "Pulumi.yaml"),
                stack,
                {_qualified(k): v for k, v in config.items()},
                [_qualified(k) for k in secrets],
            )
        except EngineConfigError as error:
            return ProgramRun(error=error)
        config, secrets = engine.values, engine.secret_keys
    previous_cwd = Path.cwd()
    environment: dict[str, str | None] = {
        **language_host_environment(config, secrets),
        "SSH_AUTH_SOCK": ssh_auth_sock,
    }
    # Pulumi runs a program with the project directory as working directory; relative paths in
    # config (e.g. `mailman:lists`) resolve against it.
    os.chdir(REPO)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    try:
        with _environment(environment):
            # A fresh context per evaluation: the SDK keeps the root Stack and settings in
            # contextvars.
            context = contextvars.Context()
            return context.run(
                _evaluate,
                program,
                stack=stack,
                preview=preview,
                cloud=cloud,
                project=project,
            )
    finally:
        os.chdir(previous_cwd)


def run_program(
    config: Mapping[str, Any],
    secrets: Iterable[str] = (),
    *,
    stack: str = "test",
    preview: bool = False,
    program: Path = MAIN,
    cloud: Cloud = FIRST_DEPLOY,
    ssh_auth_sock: str | None = None,
    project: str = PROJECT,
    engine_checks: bool = True,
) -> ProgramRun:
    """Evaluate the program once and return what it registered; raise if it failed."""
    run = run_failing_program(
        config,
        secrets,
        stack=stack,
        preview=preview,
        program=program,
        cloud=cloud,
        ssh_auth_sock=ssh_auth_sock,
        project=project,
        engine_checks=engine_checks,
    )
    if run.error is not None:
        raise ProgramFailedError(f"program failed: {run.error!r}") from run.error
    return run
