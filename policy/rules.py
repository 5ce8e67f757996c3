"""What this project promises about the resources it creates, as plain functions.

Each rule takes one resource as the policy engine shows it (type, name, URN, input properties,
the `protect` option) and returns the violations as one-line messages. policy/__main__.py runs
them as a Pulumi CrossGuard policy pack (`pulumi preview --policy-pack policy`); the tests run
them on every resource the program registers under mocks (tests/components/test_policy.py), so
the promises are checked by ./test.sh without a cloud account or the Pulumi engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SERVER = "hcloud:index/server:Server"
FIREWALL = "hcloud:index/firewall:Firewall"
PRIMARY_IP = "hcloud:index/primaryIp:PrimaryIp"
VOLUME = "hcloud:index/volume:Volume"
STORAGE_BOX = "hcloud:index/storageBox:StorageBox"
# What holds the site's data, its backups or its addresses: losing one loses mail, archives,
# every snapshot or DNS.
PERSISTENT = (SERVER, PRIMARY_IP, VOLUME, STORAGE_BOX)
# Stacks that must keep the production promises, by name.
PRODUCTION_STACKS = ("production",)
WORLD = ("0.0.0.0/0", "::/0")
SSH_PORT = "22"
COMMAND = "command:remote:Command"


@dataclass(frozen=True)
class SecretInput:
    """An input this program fills with secrets and always sends as a secret: the policy engine
    shows secret inputs unwrapped, so `no_secret_in_plain_inputs` does not scan these (the tests
    check on every run that each one is marked secret)."""

    type: str
    input: str
    names: str  # a regular expression the resource name matches in full

    def covers(self, resource_type: str, name: str, input_name: str) -> bool:
        return (
            resource_type == self.type
            and input_name == self.input
            and re.fullmatch(self.names, name) is not None
        )


SECRET_INPUTS: tuple[SecretInput, ...] = (
    SecretInput(SERVER, "userData", ".*"),  # the install script carries the SSH host key
    SecretInput(COMMAND, "connection", ".*"),  # the deploy key
    # Secret files pushed to the host, and the reconcile's credentials; other commands' stdin
    # (the NixOS modules, in plain so previews show their diff) is scanned.
    SecretInput(COMMAND, "stdin", r".*-nixos-secret-.*|.*-reconcile-run"),
)
SECRET_SHAPED = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


class Unknown:
    """A value not known during a preview (the engine computes it during the update)."""

    def __repr__(self) -> str:
        return "Unknown()"


UNKNOWN = Unknown()


@dataclass(frozen=True)
class Resource:
    """One resource as a policy sees it."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool

    @property
    def stack(self) -> str:
        # urn:pulumi:<stack>::<project>::<type>::<name> (Pulumi's URN format).
        return self.urn.split("::", 1)[0].split(":", 2)[2]

    @property
    def production(self) -> bool:
        return self.stack in PRODUCTION_STACKS


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[Resource], list[str]]


def server_has_a_firewall_at_creation(resource: Resource) -> list[str]:
    # Attached through the server's own firewall_ids (not a later FirewallAttachment), so the
    # server never answers on a port before the firewall applies.
    if resource.type != SERVER or resource.props.get("firewallIds"):
        return []
    return [f"server {resource.name}: no firewall in firewallIds (attach one at creation)"]


def _world_ssh_rules(props: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    rules = props.get("rules")
    for rule in rules if isinstance(rules, Sequence) else ():
        if not isinstance(rule, Mapping) or rule.get("direction") != "in":
            continue
        if rule.get("port") in (SSH_PORT, UNKNOWN) and rule.get("protocol") == "tcp":
            sources = rule.get("sourceIps")
            if isinstance(sources, Sequence) and set(WORLD) & set(sources):
                yield rule


def ssh_not_open_to_the_world_in_production(resource: Resource) -> list[str]:
    if resource.type != FIREWALL or not resource.production:
        return []
    messages = []
    for rule in _world_ssh_rules(resource.props):
        world = ", ".join(sorted(set(WORLD) & set(rule["sourceIps"])))
        messages.append(
            f"firewall {resource.name}: port 22 open to {world} in stack {resource.stack}"
            " (set mailman:sshAllowedIps to your networks)"
        )
    return messages


def persistent_resources_are_protected_in_production(resource: Resource) -> list[str]:
    if resource.type not in PERSISTENT or not resource.production:
        return []
    missing = [] if resource.protect else ["Pulumi protect"]
    if resource.props.get("deleteProtection") is not True:
        missing.append("deleteProtection")
    if resource.type == SERVER and resource.props.get("rebuildProtection") is not True:
        missing.append("rebuildProtection")
    if not missing:
        return []
    return [
        f"{resource.name}: no {' or '.join(missing)} in stack {resource.stack}"
        " (mailman:protect must stay true in production)"
    ]


def _strings(value: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, Sequence):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def sent_as_secret(resource: Resource, path: str) -> bool:
    top = re.split(r"[.[]", path, maxsplit=1)[0]
    return any(secret.covers(resource.type, resource.name, top) for secret in SECRET_INPUTS)


def no_secret_in_plain_inputs(resource: Resource) -> list[str]:
    return [
        f"{resource.name}: {path} holds a private key outside the inputs sent as secrets"
        for path, text in _strings(resource.props, "")
        if SECRET_SHAPED.search(text) and not sent_as_secret(resource, path)
    ]


RULES: tuple[Rule, ...] = (
    Rule(
        "server-firewall-at-creation",
        "Every server has a firewall attached when it is created.",
        server_has_a_firewall_at_creation,
    ),
    Rule(
        "production-ssh-not-open-to-the-world",
        "In production stacks, SSH (port 22) is open only to mailman:sshAllowedIps networks.",
        ssh_not_open_to_the_world_in_production,
    ),
    Rule(
        "production-persistent-resources-protected",
        "In production stacks, server, primary IPs and volume are protected against deletion.",
        persistent_resources_are_protected_in_production,
    ),
    Rule(
        "no-secret-in-plain-inputs",
        "No private key in an input that is not sent as a secret.",
        no_secret_in_plain_inputs,
    ),
)


def plain(value: object, unknown_error: type[Exception]) -> object:
    """A copy of the policy SDK's property proxy as plain dicts and lists; values the SDK
    refuses to read during a preview (`unknown_error`) become `UNKNOWN`."""
    if isinstance(value, Mapping):
        result: dict[object, object] = {}
        for key in value:
            try:
                result[key] = plain(value[key], unknown_error)
            except unknown_error:
                result[key] = UNKNOWN
        return result
    if isinstance(value, Sequence) and not isinstance(value, str):
        items: list[object] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index], unknown_error))
            except unknown_error:
                items.append(UNKNOWN)
        return items
    return value


def plain_props(props: Mapping[str, object], unknown_error: type[Exception]) -> dict[str, Any]:
    """`plain` for a resource's input properties."""
    return {
        str(key): plain(value, unknown_error) if value is not UNKNOWN else value
        for key, value in _readable(props, unknown_error)
    }


def _readable(
    props: Mapping[str, object], unknown_error: type[Exception]
) -> Iterator[tuple[str, object]]:
    for key in props:
        try:
            yield key, props[key]
        except unknown_error:
            yield key, UNKNOWN
