"""The smoke check against a healthy local deployment, and against each way it can break."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys

import pytest

from tests.tools.conftest import (
    HOSTNAME,
    IPV4,
    IPV6,
    Mail,
    World,
    make_certificate,
    reverse_name,
    server_context,
    start_https,
    start_smtp,
)
from tools import smoke_check
from tools.smoke_check import Probe, Result, Site, make_resolver, run_checks


def probe_for(world: World, **overrides: object) -> Probe:
    settings: dict[str, object] = {
        "resolver": make_resolver("127.0.0.1", world.dns_port, timeout=5.0),
        "connect_to": "127.0.0.1",
        "https_port": world.https_port,
        "smtp_port": world.smtp_port,
        "ca_file": str(world.ca_file),
        "timeout": 5.0,
    }
    settings.update(overrides)
    return Probe(**settings)  # type: ignore[arg-type]


def check(world: World, **overrides: object) -> list[Result]:
    return run_checks(Site.from_outputs(world.outputs), probe_for(world, **overrides))


def statuses(results: list[Result]) -> dict[tuple[str, str], str]:
    return {(r.check, r.target): r.status for r in results}


def failed(results: list[Result]) -> list[tuple[str, str]]:
    return [(r.check, r.target) for r in results if r.status == "FAIL"]


def cli_args(world: World) -> list[str]:
    return [
        "--nameserver", "127.0.0.1", "--dns-port", str(world.dns_port),
        "--connect-to", "127.0.0.1",
        "--https-port", str(world.https_port), "--smtp-port", str(world.smtp_port),
        "--ca-file", str(world.ca_file), "--timeout", "5",
    ]  # fmt: skip


def test_a_healthy_site_passes_every_check(world: World) -> None:
    results = check(world)

    assert failed(results) == []
    assert statuses(results) == {
        ("HTTPS Postorius", f"https://{HOSTNAME}/postorius/lists/"): "PASS",
        ("HTTPS HyperKitty", f"https://{HOSTNAME}/hyperkitty/"): "PASS",
        ("certificate name", f"{HOSTNAME}:{world.https_port}"): "PASS",
        ("DNS A", HOSTNAME): "PASS",
        ("DNS AAAA", HOSTNAME): "PASS",
        ("DNS MX", "example.org"): "PASS",
        ("DNS MX", HOSTNAME): "PASS",
        ("PTR ipv4", IPV4): "PASS",
        ("PTR ipv6", IPV6): "PASS",
        ("SMTP banner", f"{HOSTNAME}:{world.smtp_port}"): "PASS",
        ("SMTP STARTTLS", f"{HOSTNAME}:{world.smtp_port}"): "PASS",
    }


def test_cli_prints_a_table_and_exits_zero_when_all_pass(world, capsys, tmp_path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(world.outputs))

    code = smoke_check.main(["--outputs", str(outputs), *cli_args(world)])

    table = capsys.readouterr().out
    assert code == 0
    assert table.splitlines()[0].split() == ["CHECK", "TARGET", "RESULT", "DETAIL"]
    assert "11 passed, 0 failed, 0 skipped" in table


def test_cli_exits_non_zero_when_a_check_fails(world, capsys, tmp_path) -> None:
    world.zone.records[("example.org", "MX")] = ["10 mail.elsewhere.example."]
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps(world.outputs))

    code = smoke_check.main(["--outputs", str(outputs), *cli_args(world)])

    assert code == 1
    assert "10 passed, 1 failed, 0 skipped" in capsys.readouterr().out


def test_cli_reads_outputs_from_pulumi_stack_output(world, capsys, tmp_path, monkeypatch) -> None:
    # A fake `pulumi` that only answers `stack output --json --stack review` and logs its argv.
    log = tmp_path / "pulumi-argv"
    fake = tmp_path / "bin" / "pulumi"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'w').write(' '.join(sys.argv[1:]))\n"
        "assert sys.argv[1:] == ['stack', 'output', '--json', '--stack', 'review'], sys.argv\n"
        f"print({json.dumps(json.dumps(world.outputs))})\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")

    code = smoke_check.main(["--stack", "review", *cli_args(world)])

    assert code == 0, capsys.readouterr().out
    assert log.read_text() == "stack output --json --stack review"


def test_cli_reports_unreadable_outputs_in_one_line(capsys, tmp_path) -> None:
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"siteUrl": "http://lists.example.org/"}))

    code = smoke_check.main(["--outputs", str(outputs)])

    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "smoke check: cannot read stack outputs: "
        "stack output siteUrl is missing or not an https:// URL"
    ]


def test_skipped_groups_are_reported_as_skip_not_pass(world) -> None:
    results = check(world, skip=frozenset({"smtp"}))

    assert [r for r in results if r.check.startswith("SMTP")] == []
    assert ("smtp checks", HOSTNAME) in {(r.check, r.target) for r in results if r.status == "SKIP"}


def test_postorius_page_with_an_error_status_fails(world) -> None:
    world.pages.routes["/postorius/lists/"] = (502, "Bad Gateway")

    results = check(world)

    assert failed(results) == [("HTTPS Postorius", f"https://{HOSTNAME}/postorius/lists/")]
    assert "HTTP 502" in results[0].detail


def test_hyperkitty_page_that_is_not_hyperkitty_fails(world) -> None:
    world.pages.routes["/hyperkitty/"] = (200, "<h1>Welcome to nginx!</h1>")

    results = check(world)

    assert failed(results) == [("HTTPS HyperKitty", f"https://{HOSTNAME}/hyperkitty/")]


def test_redirects_are_followed_to_the_page(world) -> None:
    world.outputs["postoriusUrl"] = f"https://{HOSTNAME}/"

    assert failed(check(world)) == []


def test_certificate_for_another_name_fails_https_name_and_starttls(world, tmp_path) -> None:
    # Serve a trusted certificate for the wrong name: only the name checks may fail.
    cert, key = make_certificate(tmp_path, "other", ["other.example.org"])
    https, https_port = start_https(world.pages, server_context(cert, key))
    smtp, smtp_port = start_smtp(Mail(), server_context(cert, key))
    try:
        results = check(world, https_port=https_port, smtp_port=smtp_port, ca_file=str(cert))
    finally:
        https.shutdown()
        smtp.shutdown()

    assert failed(results) == [
        ("certificate name", f"{HOSTNAME}:{https_port}"),
        ("SMTP STARTTLS", f"{HOSTNAME}:{smtp_port}"),
    ]
    assert "other.example.org" in next(r.detail for r in results if r.check == "certificate name")


def test_untrusted_certificate_fails(world, tmp_path) -> None:
    stranger, _ = make_certificate(tmp_path, "stranger", [HOSTNAME])

    results = check(world, ca_file=str(stranger))

    assert {c for c, _ in failed(results)} == {
        "HTTPS Postorius",
        "HTTPS HyperKitty",
        "certificate name",
        "SMTP STARTTLS",
    }
    assert "CERTIFICATE_VERIFY_FAILED" in next(
        r.detail for r in results if r.check == "certificate name"
    )


def test_https_not_listening_fails(world) -> None:
    results = check(world, https_port=1)

    assert {c for c, _ in failed(results)} == {
        "HTTPS Postorius",
        "HTTPS HyperKitty",
        "certificate name",
    }


def test_a_record_with_another_address_fails(world) -> None:
    world.zone.records[(HOSTNAME, "A")] = ["198.51.100.7"]

    assert failed(check(world)) == [("DNS A", HOSTNAME)]


def test_missing_aaaa_record_fails(world) -> None:
    del world.zone.records[(HOSTNAME, "AAAA")]

    assert failed(check(world)) == [("DNS AAAA", HOSTNAME)]


def test_mx_pointing_elsewhere_fails(world) -> None:
    world.zone.records[("example.org", "MX")] = ["10 mx.mailprovider.example."]

    results = check(world)

    assert failed(results) == [("DNS MX", "example.org")]
    detail = next(r.detail for r in results if r.target == "example.org")
    assert detail == f"mx.mailprovider.example (want {HOSTNAME})"


def test_missing_mx_fails(world) -> None:
    del world.zone.records[(HOSTNAME, "MX")]

    results = check(world)

    assert failed(results) == [("DNS MX", HOSTNAME)]
    assert next(r.detail for r in results if r.target == HOSTNAME and r.check == "DNS MX") == (
        "no such name (NXDOMAIN)"
    )


def test_a_dns_server_that_does_not_answer_fails_every_dns_check_in_time(world) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resolver = make_resolver("127.0.0.1", silent.getsockname()[1], timeout=0.3)
        results = check(world, resolver=resolver, skip=frozenset({"https", "smtp"}))
    finally:
        silent.close()

    dns_rows = [r for r in results if r.status != "SKIP"]
    assert len(dns_rows) == 6
    assert {(r.status, r.detail) for r in dns_rows} == {("FAIL", "DNS timed out")}


def test_ipv4_ptr_with_the_provider_default_name_fails(world) -> None:
    provider_default = "static.10.113.0.203.clients.your-server.de."
    world.zone.records[(reverse_name(IPV4), "PTR")] = [provider_default]

    assert failed(check(world)) == [("PTR ipv4", IPV4)]


def test_missing_ipv6_ptr_fails(world) -> None:
    del world.zone.records[(reverse_name(IPV6), "PTR")]

    assert failed(check(world)) == [("PTR ipv6", IPV6)]


def test_smtp_banner_with_another_hostname_fails(world) -> None:
    world.mail.banner = "220 localhost ESMTP Postfix"

    assert failed(check(world)) == [("SMTP banner", f"{HOSTNAME}:{world.smtp_port}")]


def test_smtp_refusing_service_fails(world) -> None:
    world.mail.banner = "554 5.7.1 go away"

    results = check(world)

    assert ("SMTP banner", f"{HOSTNAME}:{world.smtp_port}") in failed(results)


def test_smtp_port_closed_fails_banner_and_starttls(world) -> None:
    results = check(world, smtp_port=1)

    assert failed(results) == [
        ("SMTP banner", f"{HOSTNAME}:1"),
        ("SMTP STARTTLS", f"{HOSTNAME}:1"),
    ]


def test_smtp_without_starttls_fails(world) -> None:
    world.mail.offer_starttls = False

    results = check(world)

    assert failed(results) == [("SMTP STARTTLS", f"{HOSTNAME}:{world.smtp_port}")]
    assert "not offered" in next(r.detail for r in results if r.check == "SMTP STARTTLS")


@pytest.mark.parametrize(
    ("names", "hostname", "expected"),
    [
        (["lists.example.org"], "lists.example.org", True),
        (["LISTS.example.org."], "lists.example.org", True),
        (["*.example.org"], "lists.example.org", True),
        (["*.example.org"], "a.lists.example.org", False),
        (["*.example.org"], "example.org", False),
        (["example.org"], "lists.example.org", False),
        ([], "lists.example.org", False),
    ],
)
def test_certificate_name_matching(names, hostname, expected) -> None:
    assert smoke_check.cert_names_match(hostname, names) is expected


def test_common_name_counts_only_without_dns_alt_names() -> None:
    cn_only = {"subject": ((("commonName", "lists.example.org"),),)}
    with_san = {**cn_only, "subjectAltName": (("DNS", "other.example.org"),)}

    assert smoke_check.cert_names(cn_only) == ["lists.example.org"]
    assert smoke_check.cert_names(with_san) == ["other.example.org"]


def test_mail_domains_default_to_the_hostname() -> None:
    site = Site.from_outputs({"siteUrl": "https://lists.example.org/"})

    assert site.hostname == "lists.example.org"
    assert site.mail_domains == ("lists.example.org",)
    assert site.postorius_url == "https://lists.example.org/postorius/"
