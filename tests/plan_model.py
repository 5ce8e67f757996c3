"""What `pulumi up` would do between two evaluations of the program, from the providers' rules.

Two runs of `tests.harness.run_program` (the stack before and after a settings change) go in;
per resource comes out: same, update in place, replace (delete first or not), create, delete, or
refused by protection. The rules are the providers' own force-new lists, read in the pinned
sources (cited per resource below), and the Pulumi engine's step generator:

- replace when a force-new input differs (`ForceNew` in SDKv2 schemas, `RequiresReplace` in
  plugin-framework schemas), or when an input refers to a resource that is itself replaced (its
  id and computed outputs change, so the input changes);
- pulumi-command `Command`: `triggers` is `replaceOnChanges` (pulumi-command v1.2.1
  provider/pkg/provider/common/inputs.go line 10); any other input change is an update, which
  re-runs `create`;
- refused: a replacement when the old and the new resource are both `protect`ed (pulumi/pulumi
  pkg/resource/deploy/step_generator.go, "if new.Protect && old.Protect": unprotecting and
  replacing in one update is allowed), a delete of a protected resource, and a delete or
  replacement of a Hetzner resource whose state still has `delete_protection` (the provider does
  not lift it before deleting; the API refuses);
- the old state is what the provider stored (`STORED`), not what the program sent: an input the
  API normalizes differently from how we send it is a difference on every run (issue 8, item 2).

Not modelled: outputs that change without a replacement (an update that changes a computed
output), and the order of steps. Component resources are not compared.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tests.components.conftest import ZONED, ZONED_SECRETS
from tests.harness import (
    FIRST_DEPLOY,
    ProgramRun,
    RegisteredResource,
    run_failing_program,
    run_program,
)

TF_HCLOUD = "terraform-provider-hcloud v1.68.0 (bridged by pulumi-hcloud 1.43.3)"


@dataclass(frozen=True)
class Rules:
    """A resource type's replacement rules, with where they are written."""

    force_new: frozenset[str]  # engine (camelCase) input names
    source: str
    every_input_force_new: bool = False


def _rules(source: str, *names: str) -> Rules:
    return Rules(frozenset(names), source)


RULES: dict[str, Rules] = {
    "hcloud:index/server:Server": _rules(
        f"{TF_HCLOUD} internal/server/resource.go lines 54-113 (image 58, location 70, "
        "user_data 90, ssh_keys 113 ForceNew); server_type is updated in place (lines 587-611)",
        "image",
        "location",
        "userData",
        "sshKeys",
    ),
    "hcloud:index/primaryIp:PrimaryIp": _rules(
        f"{TF_HCLOUD} internal/primaryip/resource.go lines 85-97 (type 89, location 97)",
        "type",
        "location",
    ),
    "hcloud:index/volume:Volume": _rules(
        f"{TF_HCLOUD} internal/volume/resource.go line 46 (location); size is a Resize "
        "(lines 288-301)",
        "location",
    ),
    "hcloud:index/volumeAttachment:VolumeAttachment": _rules(
        f"{TF_HCLOUD} internal/volume/resource_attachment.go lines 34, 39",
        "volumeId",
        "serverId",
    ),
    "hcloud:index/storageBox:StorageBox": _rules(
        f"{TF_HCLOUD} internal/storagebox/resource.go lines 101-122 (location 105, ssh_keys 121 "
        "RequiresReplace); storage_box_type (ChangeType), password (ResetPassword), "
        "access_settings, delete_protection and labels are updated in place (lines 383-553)",
        "location",
        "sshKeys",
    ),
    "hcloud:index/sshKey:SshKey": _rules(
        f"{TF_HCLOUD} internal/sshkey/resource.go line 72 (public_key)", "publicKey"
    ),
    "hcloud:index/firewall:Firewall": _rules(
        f"{TF_HCLOUD} internal/firewall/resource.go lines 33-140: nothing is ForceNew"
    ),
    "hcloud:index/rdns:Rdns": _rules(
        f"{TF_HCLOUD} internal/rdns/resource.go lines 66-99 (server_id, primary_ip_id, "
        "floating_ip_id, load_balancer_id, ip_address); dns_ptr in place",
        "serverId",
        "primaryIpId",
        "floatingIpId",
        "loadBalancerId",
        "ipAddress",
    ),
    "hcloud:index/zoneRrset:ZoneRrset": _rules(
        f"{TF_HCLOUD} internal/zonerrset/resource.go lines 84-109 (zone, name, type)",
        "zone",
        "name",
        "type",
    ),
    "tls:index/privateKey:PrivateKey": Rules(
        frozenset(),
        "hashicorp/terraform-provider-tls internal/provider/resource_private_key.go: every "
        "argument RequiresReplace, Update is a no-op",
        every_input_force_new=True,
    ),
    "random:index/randomPassword:RandomPassword": Rules(
        frozenset(),
        "hashicorp/terraform-provider-random internal/provider/resource_password.go: every "
        "argument RequiresReplace",
        every_input_force_new=True,
    ),
    "command:remote:Command": _rules(
        "pulumi-command v1.2.1 provider/pkg/provider/common/inputs.go line 10 (triggers "
        "replaceOnChanges); other inputs update, re-running create",
        "triggers",
    ),
    "command:local:Command": _rules(
        "pulumi-command v1.2.1 provider/pkg/provider/common/inputs.go line 10 (triggers "
        "replaceOnChanges, embedded by local/command.go line 46); other inputs update, re-running "
        "create (local/commandController.go lines 79-88)",
        "triggers",
    ),
}


def _user_data_hash(value: object) -> object:
    # internal/server/resource.go lines 91-99: state holds a hash (userDataHashSum); the diff
    # compares hashes, which is the same as comparing the text.
    return hashlib.sha1(str(value).encode()).hexdigest()  # noqa: S324 - as the provider does


def go_ipnet_string(text: str) -> str:
    """A firewall source as the provider stores it: normalizeIP (terraform-provider-hcloud
    v1.68.0 internal/firewall/validation.go lines 31-66) is Go's net.IPNet.String() of the
    parsed CIDR (a bare address gets /32 or /128): lower-case, RFC 5952 compressed, and an
    IPv4-mapped IPv6 address printed as IPv4."""
    address, _, length = text.partition("/")
    ip = ipaddress.ip_address(address)
    bits = int(length) if length else ip.max_prefixlen
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return f"{ip.ipv4_mapped}/{bits}"
    return f"{ip}/{bits}"


def _firewall_rules(rules: Any) -> Any:
    return [
        {**rule, "sourceIps": [go_ipnet_string(ip) for ip in rule.get("sourceIps", [])]}
        for rule in rules
    ]


# How the provider stores an input, where that differs from a plain copy: (type, input) -> f.
STORED: dict[tuple[str, str], Callable[[Any], Any]] = {
    # Hetzner trims the key (API changelog 2026-04-22); the provider stores the API's value
    # (internal/sshkey/common.go line 28).
    ("hcloud:index/sshKey:SshKey", "publicKey"): lambda key: str(key).strip(),
    ("hcloud:index/server:Server", "userData"): _user_data_hash,
    ("hcloud:index/firewall:Firewall", "rules"): _firewall_rules,
}


# Inputs whose provider schema has a StateFunc: Terraform applies it to the new configuration
# too when it plans, so the diff compares stored with stored (user_data: the hash,
# internal/server/resource.go lines 85-92). Every other STORED entry compares the stored value
# with the raw input -- which is how a trimmed SSH key forced a replacement (issue 8, item 2).
STATE_FUNC: frozenset[tuple[str, str]] = frozenset({("hcloud:index/server:Server", "userData")})


class Action(enum.Enum):
    SAME = "same"
    UPDATE = "update in place"
    REPLACE = "replace"
    CREATE = "create"
    DELETE = "delete"
    REFUSED = "refused by protection"


@dataclass(frozen=True)
class Step:
    """What happens to one resource."""

    name: str
    type: str
    action: Action
    changed: tuple[str, ...] = ()  # inputs that differ
    delete_first: bool = False  # replacement deletes the old resource before creating the new
    reason: str = ""  # why a step is refused


def stored_inputs(resource: RegisteredResource) -> dict[str, Any]:
    """The inputs as the provider keeps them in state after creating `resource`."""
    inputs = dict(resource.inputs)
    for (type_, key), store in STORED.items():
        if resource.type == type_ and key in inputs:
            inputs[key] = store(inputs[key])
    return inputs


def _leaves(value: Any) -> Iterator[str]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


def _identity(resource: RegisteredResource) -> set[str]:
    """Values that change when `resource` is replaced: its id and computed outputs."""
    computed = {k: v for k, v in resource.outputs.items() if k not in resource.inputs}
    # Stripped: the program may send a computed value trimmed (the deploy key's public half).
    return {v.strip() for v in [resource.id, *_leaves(computed)] if len(v.strip()) >= 6}


def _refers_to(value: Any, identities: set[str]) -> bool:
    return any(ident in leaf for leaf in _leaves(value) for ident in identities)


def _changed(old: RegisteredResource, new: RegisteredResource, replaced: set[str]) -> list[str]:
    before = stored_inputs(old)
    after = {
        key: STORED[(new.type, key)](value) if (new.type, key) in STATE_FUNC else value
        for key, value in new.inputs.items()
    }
    keys = sorted((set(before) | set(after)) - set(new.ignore_changes))
    changed = [k for k in keys if before.get(k) != after.get(k)]
    # An input that carries a replaced resource's id or outputs changes with it.
    return sorted({*changed, *(k for k in keys if _refers_to(after.get(k), replaced))})


def _is_replacement(resource: RegisteredResource, changed: list[str]) -> bool:
    rules = RULES.get(resource.type)
    if rules is None:
        raise KeyError(f"plan model has no rules for {resource.type}")
    forced = set(changed) & (rules.force_new | set(resource.replace_on_changes))
    return bool(changed) and (rules.every_input_force_new or bool(forced))


def _deletion_refused(old: RegisteredResource) -> str:
    if old.protect:
        return "Pulumi protect"
    if old.inputs.get("deleteProtection") is True:
        return "Hetzner delete protection"
    return ""


def plan(
    before: ProgramRun, after: ProgramRun, *, replace: Collection[str] = ()
) -> dict[str, Step]:
    """Every custom resource of either run, by URN, with what the update does to it.

    `replace`: resource URNs given to `pulumi up --replace`.
    """
    old = {r.urn: r for r in before.resources if r.custom}
    new = {r.urn: r for r in after.resources if r.custom}
    steps: dict[str, Step] = {}
    replaced: set[str] = set()  # identities of replaced resources
    # Registration order is dependency order: what an input refers to is decided before it.
    for resource in after.resources:
        if not resource.custom:
            continue
        urn = resource.urn
        previous = old.get(urn)
        if previous is None:
            steps[urn] = Step(resource.name, resource.type, Action.CREATE)
            continue
        changed = _changed(previous, resource, replaced)
        if urn in replace:
            steps[urn] = _replacement(previous, resource, [*changed, "--replace"])
            replaced |= _identity(previous)
        elif not changed:
            steps[urn] = Step(resource.name, resource.type, Action.SAME)
        elif not _is_replacement(resource, changed):
            steps[urn] = Step(resource.name, resource.type, Action.UPDATE, tuple(changed))
        else:
            steps[urn] = _replacement(previous, resource, changed)
            replaced |= _identity(previous)
    for urn, previous in old.items():
        if urn not in new:
            refused = _deletion_refused(previous)
            action = Action.REFUSED if refused else Action.DELETE
            steps[urn] = Step(previous.name, previous.type, action, reason=refused)
    return steps


def by_name(steps: Mapping[str, Step], type_prefix: str = "") -> dict[str, Step]:
    """Steps by resource name (names are unique per type; filter by type where they are not)."""
    named: dict[str, Step] = {}
    for step in steps.values():
        if step.type.startswith(type_prefix):
            if step.name in named:
                raise KeyError(f"{step.name} names more than one resource: filter by type")
            named[step.name] = step
    return named


def _replacement(old: RegisteredResource, new: RegisteredResource, changed: list[str]) -> Step:
    if old.protect and new.protect:
        reason = "Pulumi protect"
    elif old.inputs.get("deleteProtection") is True:
        reason = "Hetzner delete protection"
    else:
        reason = ""
    if reason:
        return Step(new.name, new.type, Action.REFUSED, tuple(changed), reason=reason)
    return Step(
        new.name,
        new.type,
        Action.REPLACE,
        tuple(changed),
        delete_first=new.delete_before_replace,
    )


# What a change of each setting does: scenarios per `mailman:` key (more than one where the
# answer depends on the value or on `protect`), each applied to a deployed stack. README.md and
# docs/program.md carry `change_table()`; tests/components/test_plan_model.py keeps them equal.

NO_LISTS = "tests/components/data/no-lists.yaml"
BOB_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINZUtH8+sXkGoj8tFhPk5nzatSyt4YCTquImoE2/suEg bob"


@dataclass(frozen=True)
class Scenario:
    """Settings `before` (deployed) and `after` (the change); `change` is how the table shows it."""

    key: str
    change: str
    before: Mapping[str, Any]
    after: Mapping[str, Any]


class Outcome(enum.Enum):
    NOTHING = "nothing changes"
    HOST = "on the host only"
    IN_PLACE = "in place"
    REPLACE = "replace"
    REFUSED_PROTECTION = "refused by protection"
    REFUSED_PREFLIGHT = "refused by preflight"


HETZNER_AND_KEYS = ("hcloud:", "tls:", "random:")


def outcome(steps: Mapping[str, Step] | None) -> Outcome:
    """The headline of a plan (None: the program refused before planning)."""
    if steps is None:
        return Outcome.REFUSED_PREFLIGHT
    actions = {s.action for s in steps.values()}
    resources = [s for s in steps.values() if s.type.startswith(HETZNER_AND_KEYS)]
    if Action.REFUSED in actions:
        return Outcome.REFUSED_PROTECTION
    if any(s.action is Action.REPLACE for s in resources):
        return Outcome.REPLACE
    if any(s.action is not Action.SAME for s in resources):
        return Outcome.IN_PLACE
    return Outcome.NOTHING if actions == {Action.SAME} else Outcome.HOST


def _short(name: str) -> str:
    return name.removeprefix("mailman-").removeprefix("host-")


LABELS = {
    "hcloud:index/server:Server": "server",
    "hcloud:index/primaryIp:PrimaryIp": "primary IP",
    "hcloud:index/volume:Volume": "volume",
    "hcloud:index/volumeAttachment:VolumeAttachment": "volume attachment",
    "hcloud:index/sshKey:SshKey": "SSH key",
    "hcloud:index/storageBox:StorageBox": "Storage Box",
    "hcloud:index/firewall:Firewall": "firewall",
    "hcloud:index/rdns:Rdns": "rDNS",
    "hcloud:index/zoneRrset:ZoneRrset": "DNS record set",
    "tls:index/privateKey:PrivateKey": "key",
    "random:index/randomPassword:RandomPassword": "password",
}


def _detail(step: Step) -> str:
    if step.action is Action.UPDATE:
        return f" ({', '.join(step.changed)})"
    if step.action is Action.REPLACE and step.delete_first:
        return " (old one deleted first)"
    if step.action is Action.REFUSED:
        return f" ({step.reason})"
    return ""


TIMES = " \N{MULTIPLICATION SIGN}"  # "DNS record set x8", with the multiplication sign


def describe(steps: Mapping[str, Step]) -> str:
    """The Hetzner and key resources a plan touches, e.g. `server: update in place (name)`."""
    groups: dict[tuple[str, str], int] = {}
    for step in steps.values():
        if not step.type.startswith(HETZNER_AND_KEYS) or step.action is Action.SAME:
            continue
        key = (LABELS[step.type], f"{step.action.value}{_detail(step)}")
        groups[key] = groups.get(key, 0) + 1
    parts = [
        f"{label}{f'{TIMES}{count}' if count > 1 else ''}: {what}"
        for (label, what), count in sorted(groups.items())
    ]
    return "; ".join(parts) or "none"


def host_steps(steps: Mapping[str, Step]) -> str:
    """The commands that run on the host (file pushes counted, not named), and the local ones
    that act on it (marked "local")."""
    kinds = {"command:remote:Command": "", "command:local:Command": " (local)"}
    ran = [s for s in steps.values() if s.type in kinds]
    ran = [s for s in ran if s.action in (Action.UPDATE, Action.REPLACE, Action.CREATE)]
    pushes = [s for s in ran if "-file-" in s.name or "-secret-" in s.name]
    named = sorted(_short(s.name) + kinds[s.type] for s in ran if s not in pushes)
    if pushes:
        named.insert(0, f"{len(pushes)} file push{'es' if len(pushes) > 1 else ''}")
    return ", ".join(named) or "none"


def _scenarios() -> tuple[Scenario, ...]:
    deployed: dict[str, Any] = dict(ZONED)  # the fully configured stack
    unprotected = {**deployed, "protect": False}

    def change(key: str, shown: str, value: Any, before: Mapping[str, Any] = deployed) -> Scenario:
        return Scenario(key, shown, before, {**before, key: value})

    return (
        change("hostname", "`lists.example.org` → `mail.example.org`", "mail.example.org"),
        change("adminEmail", "another address", "lists-admin@example.net"),
        change(
            "mailDomains",
            "add `news.example.org`",
            [*deployed["mailDomains"], "news.example.org"],
        ),
        Scenario(
            "dnsZone",
            "`example.org` → unset",
            deployed,
            {k: v for k, v in deployed.items() if k != "dnsZone"},
        ),
        change("serverType", "`cx23` → `cx33` (bigger, same architecture)", "cx33"),
        change("serverType", "`cx23` → `cax11` (other architecture)", "cax11"),
        change(
            "serverType",
            "`cx33` → `cx23` on a server created as `cx33` (smaller disk)",
            "cx23",
            {**deployed, "serverType": "cx33"},
        ),
        change("location", "`nbg1` → `fsn1`, `protect: true`", "fsn1"),
        change("location", "`nbg1` → `fsn1`, `protect: false`", "fsn1", unprotected),
        change(
            "nixosRelease", "`nixos-26.05` → `nixos-26.11` without bumping the pin", "nixos-26.11"
        ),
        change("sshPublicKeys", "add a key", [*deployed["sshPublicKeys"], BOB_KEY]),
        change("sshAllowedIps", "another CIDR", ["192.0.2.0/24"]),
        change("acmeStaging", "`false` → `true`", True),
        change("protect", "`true` → `false`", False),
        change("backups", "`true` → `false`", False),
        change("volumeSize", "`10` → `20`", 20),
        change("backupLocation", "`fsn1` → `hel1`, `protect: true`", "hel1"),
        change("backupLocation", "`fsn1` → `hel1`, `protect: false`", "hel1", unprotected),
        change("backupBoxType", "`bx11` → `bx21`", "bx21"),
        change("backupRetention", "keep 14 daily", {"daily": 14, "weekly": 4, "monthly": 6}),
        change("database", "`postgresql` → `sqlite`", "sqlite"),
        change("lists", "another lists file", NO_LISTS),
        change("adminUser", "`admin` → `root-admin`", "root-admin"),
        change("adminPassword", "another password", "another long passphrase"),
        change("dmarcPolicy", "`quarantine` → `reject`", "reject"),
        change("mailman2Redirects", "`false` → `true`", True),
        change(
            "socialLogins",
            "another client id",
            {"github": {"clientId": "Iv1.xyz", "clientSecret": "gh-client-secret-123"}},
        ),
    )


SCENARIOS = _scenarios()


def evaluate(scenario: Scenario) -> tuple[ProgramRun, ProgramRun]:
    """The deployed stack's evaluation and the changed one's (which may have failed)."""
    before = run_program(scenario.before, secrets=ZONED_SECRETS)
    deployed = FIRST_DEPLOY.with_server(
        str(scenario.before.get("serverType", "cx23")), name=str(scenario.before["hostname"])
    )
    after = run_failing_program(scenario.after, secrets=ZONED_SECRETS, cloud=deployed)
    return before, after


_PLANS: dict[int, dict[str, Step] | None] = {}


def scenario_plan(scenario: Scenario) -> dict[str, Step] | None:
    """The plan of a scenario; None when the program refuses the change before planning."""
    if id(scenario) not in _PLANS:  # scenarios are constants: plan each once per session
        before, after = evaluate(scenario)
        _PLANS[id(scenario)] = None if after.error is not None else plan(before, after)
    return _PLANS[id(scenario)]


def change_table() -> str:
    """The "What a change of each setting does" table (Markdown)."""
    rows = [
        "| setting | change | outcome | Hetzner resources and keys | commands run on the host |",
        "|---|---|---|---|---|",
    ]
    for scenario in SCENARIOS:
        steps = scenario_plan(scenario)
        result = outcome(steps)
        if steps is None:
            touched, on_host = "none: refused before any resource", "none"
        elif result is Outcome.REFUSED_PROTECTION:
            refused = {k: v for k, v in steps.items() if v.action is Action.REFUSED}
            touched, on_host = describe(refused), "none: `pulumi up` stops"
        else:
            touched, on_host = describe(steps), host_steps(steps)
        rows.append(
            f"| `{scenario.key}` | {scenario.change} | {result.value} | {touched} | {on_host} |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(change_table(), end="")  # regenerate the README/docs table by hand
