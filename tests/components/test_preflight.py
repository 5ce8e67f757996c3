"""Preflight: Hetzner's answers (the provider's data sources, mocked) checked before any resource.

The mocks answer in the shape of terraform-provider-hcloud v1.68.0's data sources
(`tests.harness.Cloud`); a lookup that finds nothing fails the way the provider's
`NotFoundDiagnostic` does.
"""

import socket
import tempfile
from pathlib import Path

import pulumi
import pytest

from components.preflight import check_token_source, label_selector
from tests.components.conftest import BASE
from tests.harness import (
    FIRST_DEPLOY,
    PROJECT,
    Cloud,
    CloudServer,
    run_failing_program,
    run_program,
)

SERVER = "hcloud:index/server:Server"
COMMAND = "command:remote:Command"
LABELS = {"project": PROJECT, "stack": "test"}
ON_CX23 = FIRST_DEPLOY.with_server("cx23")


def _refusal(config, *, cloud=FIRST_DEPLOY, preview=False, ssh_auth_sock=None):
    failed = run_failing_program(
        {**BASE, **config}, cloud=cloud, preview=preview, ssh_auth_sock=ssh_auth_sock
    )
    assert isinstance(failed.error, pulumi.RunError), repr(failed.error)
    message = str(failed.error)
    assert "\n" not in message
    # Refused before anything is touched: not one resource registered.
    assert failed.resources == []
    return message


@pytest.mark.parametrize(
    ("config", "cloud", "start", "detail"),
    [
        (
            {"serverType": "cx99"},
            FIRST_DEPLOY,
            'mailman:serverType: "cx99" is not a server type Hetzner offers',
            'Resource (server type) was not found: name="cx99"',
        ),
        (
            {"serverType": "cx23", "location": "ash"},
            FIRST_DEPLOY,
            'mailman:serverType: "cx23" is not sold in ash',
            "it is sold in: fsn1, hel1, nbg1",
        ),
        (
            {"serverType": "cx11"},
            FIRST_DEPLOY,
            'mailman:serverType: "cx11" is not sold in nbg1',
            "it is sold in: )",
        ),
        (
            {"serverType": "cx22"},
            FIRST_DEPLOY,
            'mailman:serverType: "cx22" is not a current server type in nbg1',
            "deprecated, unavailable after 2026-04-01",
        ),
        (
            {"location": "sin"},
            Cloud(locations=("fsn1", "nbg1", "hel1")),
            'mailman:location: "sin" is not a Hetzner location',
            'Resource (location) was not found: name="sin"',
        ),
        (
            {
                "hostname": "lists.example.net",
                "dnsZone": "example.net",
                "adminEmail": "pm@example.net",
            },
            FIRST_DEPLOY,
            'mailman:dnsZone: "example.net" is not a DNS zone in this Hetzner project',
            'Resource (zone) was not found: name="example.net"',
        ),
        (
            {"serverType": "cax11"},
            ON_CX23,
            'mailman:serverType: "cax11" is not of the running cx23\'s architecture x86',
            "Hetzner cannot change it in place; cax11 is arm",
        ),
        (
            {"serverType": "cx23"},
            FIRST_DEPLOY.with_server("cx33"),
            'mailman:serverType: "cx23" is not a type with at least the running server\'s 80 GB',
            "cx23 has 40 GB; Hetzner cannot shrink a disk",
        ),
        (
            {"volumeSize": 10},
            FIRST_DEPLOY.with_server("cx23", volume_size=20),
            "mailman:volumeSize: 10 is not at least the volume's 20 GB",
            "Hetzner volumes cannot shrink",
        ),
    ],
    ids=[
        "unknown-type",
        "not-sold-in-location",
        "sold-nowhere",
        "deprecated",
        "unknown-location",
        "missing-zone",
        "architecture-change",
        "smaller-disk",
        "smaller-volume",
    ],
)
def test_refusals_are_one_line_naming_the_key_before_any_resource(config, cloud, start, detail):
    message = _refusal(config, cloud=cloud)
    assert message.startswith(start), message
    assert detail in message


def test_an_api_error_is_not_reported_as_a_bad_value():
    unauthorized = Cloud(api_error="unable to authenticate your API token (unauthorized)")
    message = _refusal({}, cloud=unauthorized)
    assert message == (
        'mailman:location: "nbg1" could not be checked with Hetzner: '
        "unable to authenticate your API token (unauthorized) ()"
    )


def test_the_same_refusals_hold_in_preview():
    message = _refusal({"serverType": "cx99"}, preview=True)
    assert message.startswith('mailman:serverType: "cx99"')


def test_preflight_asks_the_providers_data_sources(base_run):
    tokens = [token for token, _ in base_run.invokes]
    for token in (
        "hcloud:index/getLocation:getLocation",
        "hcloud:index/getServerType:getServerType",
        "hcloud:index/getServers:getServers",
        "hcloud:index/getVolumes:getVolumes",
    ):
        assert token in tokens
    servers = dict(base_run.invokes)["hcloud:index/getServers:getServers"]
    assert servers == {"withSelector": "project=mailman,stack=test"}
    assert "hcloud:index/getZone:getZone" not in tokens  # no dnsZone, no lookup


def test_zone_is_looked_up_when_set(zoned_run):
    assert ("hcloud:index/getZone:getZone", {"name": "example.org"}) in zoned_run.invokes


def test_the_running_server_is_found_by_the_stack_labels():
    assert label_selector(LABELS) == "project=mailman,stack=test"
    other_stack = Cloud(servers=(CloudServer("lists.example.org", "cx33", 80, {"stack": "x"}),))
    # Another stack's cx33 is not ours: a cx23 is a first deploy here, not a shrink.
    run = run_program({**BASE, "serverType": "cx23"}, cloud=other_stack)
    assert run.one(SERVER).inputs["serverType"] == "cx23"


def test_a_downgrade_back_to_the_kept_disk_is_allowed():
    """keep_disk: a cx23 resized to cx33 still has its 40 GB disk, so cx23 fits again."""
    resized = Cloud(servers=(CloudServer("lists.example.org", "cx33", 40, LABELS),))
    run = run_program({**BASE, "serverType": "cx23"}, cloud=resized)
    assert run.one(SERVER).inputs["serverType"] == "cx23"
    assert run.one(COMMAND, "mailman-host-resize-stop").inputs["triggers"] == ["cx23"]


def test_a_running_deprecated_type_is_kept_with_a_warning(monkeypatch):
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    run = run_program({**BASE, "serverType": "cx22"}, cloud=FIRST_DEPLOY.with_server("cx22"))
    assert run.one(SERVER).inputs["serverType"] == "cx22"
    assert any(w.startswith('mailman:serverType: "cx22" is not a current') for w in warnings)


# SSH_AUTH_SOCK: pulumi-command dials the agent for every remote command when it is set.


@pytest.fixture
def short_dir():
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="agent") as directory:
        yield Path(directory)


def test_a_stale_agent_socket_is_refused(short_dir):
    message = _refusal({}, ssh_auth_sock=str(short_dir / "gone.sock"))
    assert message.startswith(f"SSH_AUTH_SOCK: {short_dir / 'gone.sock'} is not a live ssh-agent")
    assert "unset SSH_AUTH_SOCK or start the agent" in message


def test_a_file_that_is_not_a_socket_is_refused(short_dir):
    path = short_dir / "plain"
    path.write_text("")
    assert "(not a socket)" in _refusal({}, ssh_auth_sock=str(path))


def test_a_socket_nobody_listens_on_is_refused(short_dir):
    path = short_dir / "dead.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))  # bound, never listening: connect is refused
        assert "is not a live ssh-agent socket" in _refusal({}, ssh_auth_sock=str(path))


def test_a_live_agent_socket_passes(short_dir):
    path = short_dir / "agent.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        run = run_program(BASE, ssh_auth_sock=str(path))
    assert run.of_type(SERVER)


def test_a_stale_agent_socket_only_warns_in_preview(short_dir, monkeypatch):
    warnings = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *a, **k: warnings.append(message))
    run = run_program(BASE, preview=True, ssh_auth_sock=str(short_dir / "gone.sock"))
    assert run.of_type(SERVER)
    assert any(w.startswith("SSH_AUTH_SOCK: ") for w in warnings)


def test_a_location_change_is_checked_as_a_new_server_not_as_a_resize():
    """A move replaces server, IPs and volume (deleted first): neither the old server's
    architecture and disk nor the old volume's size constrain the new ones."""
    config = {**BASE, "protect": "false", "location": "fsn1", "serverType": "cax11"}
    run = run_program(config, cloud=FIRST_DEPLOY.with_server("cx33", volume_size=40))
    assert run.one(SERVER).inputs["location"] == "fsn1"
    assert run.one(SERVER).inputs["serverType"] == "cax11"
    names = {c.name for c in run.resources}
    assert "mailman-host-resize-stop" not in names
    assert "mailman-host-resize-power-on" not in names


def test_a_location_change_still_refuses_a_type_not_sold_there():
    failed = run_failing_program(
        {**BASE, "protect": "false", "location": "ash", "serverType": "cx23"}, cloud=ON_CX23
    )
    assert failed.error is not None
    assert str(failed.error).startswith('mailman:serverType: "cx23" is not sold in ash')
    assert failed.resources == []


def test_a_resize_of_a_server_left_off_stops_nothing_and_powers_it_on():
    """An earlier resize failed at ChangeType and left the server off: dialing it to stop
    services would hold the new resize back until the dial budget ran out."""
    run = run_program(
        {**BASE, "serverType": "cx33"}, cloud=FIRST_DEPLOY.with_server("cx23", status="off")
    )
    names = {c.name for c in run.resources}
    assert "mailman-host-resize-stop" not in names
    assert "mailman-host-resize-power-on" in names


@pytest.mark.parametrize(
    ("stack_token", "env_token"),
    [(None, "a" * 64), ("a" * 64, ""), ("a" * 64, "a" * 64), (None, "")],
)
def test_one_token_or_two_equal_ones_pass(stack_token, env_token):
    check_token_source({"HCLOUD_TOKEN": env_token}, stack_token)


def test_a_stack_token_that_would_override_the_environments_is_refused():
    with pytest.raises(pulumi.RunError) as refused:
        check_token_source({"HCLOUD_TOKEN": "r" * 64}, "w" * 64)
    message = str(refused.value)
    assert message.startswith("hcloud:token: the stack's token differs from HCLOUD_TOKEN")
    assert "pulumi config rm hcloud:token" in message
    assert "r" * 10 not in message and "w" * 10 not in message
    assert "\n" not in message
