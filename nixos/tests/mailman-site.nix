# NixOS VM test of the list server, in the style of nixpkgs' nixos/tests/mailman.nix:
#
#   nix-build nixos/tests/mailman-site.nix        (needs Nix and KVM; ~10 minutes)
#
# Boots site.nix (everything but the Hetzner machine) with ./deployment.json, then creates a
# domain and a list, delivers one message through Postfix to the list and back out to a
# subscriber (DKIM-signed and ARC-sealed), checks that postmaster@/abuse@ reach adminEmail and
# that rspamd refuses GTUBE from a non-local client during SMTP, fetches Postorius and HyperKitty
# through nginx over HTTPS, reads the MTA-STS policy from its own host, runs the host commands the
# deploy chain relies on, and the daily status report twice (it mails once).
# nixpkgs is the repository's pin (components/nixpkgs-pin.json), fetched by ../nixpkgs.nix exactly
# as the host fetches it, so the test builds what production builds; --arg nixpkgs <path> uses a
# checkout instead.
{
  pin ? builtins.fromJSON (builtins.readFile ../../components/nixpkgs-pin.json),
  deployment ? import ../deployment.nix {
    document = builtins.fromJSON (builtins.readFile ./deployment.json) // {
      nixpkgs = pin;
    };
  },
  nixpkgs ? import ../nixpkgs.nix { inherit deployment; },
  pkgs ? import nixpkgs { }
}:
pkgs.testers.runNixOSTest {
  name = "mailman-site";

  nodes.machine =
    { pkgs, ... }:
    {
      imports = [
        ../site.nix
      ];
      _module.args.deployment = deployment;
      system.stateVersion = "26.05";
      networking.domain = deployment.domain;

      virtualisation.memorySize = 3072;
      virtualisation.diskSize = 4096;

      # What the deploy chain writes before nixos-rebuild: the REST password, the DKIM key and the
      # one-click key, root-only under /var/lib/mailman-site/secrets.
      systemd.services.test-secrets = {
        wantedBy = [ "multi-user.target" ];
        before = [
          "mailman-settings.service"
          "opendkim.service"
          "mailman-site-arc-key.service"
          "mailman-one-click.service"
        ];
        requiredBy = [
          "mailman-settings.service"
          "opendkim.service"
          "mailman-site-arc-key.service"
          "mailman-one-click.service"
        ];
        path = [ pkgs.openssl ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        script = ''
          install -d -m 0700 /var/lib/mailman-site/secrets
          cd /var/lib/mailman-site/secrets || exit 1
          [ -e rest-api-password ] || (umask 077; openssl rand -hex 24 > rest-api-password)
          [ -e dkim-private-key.pem ] || (umask 077; openssl genrsa -out dkim-private-key.pem 2048)
          [ -e one-click-key ] || (umask 077; openssl rand -hex 32 > one-click-key)
        '';
      };

      # A subscriber with a local mailbox in the list domain (mydestination).
      users.users.alice.isNormalUser = true;
      environment.systemPackages = [ pkgs.curl ];
    };

  testScript = ''
    host = "${deployment.hostname}"
    https = f"--resolve {host}:443:127.0.0.1 https://{host}"

    def rest(args: str) -> str:
        password = machine.succeed("cat /var/lib/mailman-site/secrets/rest-api-password").strip()
        return machine.succeed(
            f"curl --fail-with-body -sS -u restadmin:{password} {args}"
        )

    def api_up(_) -> bool:
        status, _ = machine.execute("curl -s http://127.0.0.1:8001/")
        return status == 0

    def delivered(_) -> bool:
        # Mailman prefixes the subject ("[Test] "), so match the words only.
        status, _ = machine.execute("grep -l 'hello from the vm' /var/spool/mail/alice/new/*")
        return status == 0

    machine.wait_for_unit("multi-user.target")
    for unit in ["postgresql.target", "mailman.service", "mailman-uwsgi.service",
                 "postfix.service", "opendkim.service", "rspamd.service", "nginx.service",
                 "mailman-one-click.service"]:
        machine.wait_for_unit(unit)
    with machine.nested("waiting for the Mailman REST API"):
        retry(api_up)

    with subtest("boot: PostgreSQL backs Mailman core and mailman-web, REST and uwsgi on loopback"):
        machine.succeed("grep -q 'postgresql://mailman@/mailman' /etc/mailman.cfg")
        machine.succeed("sudo -u postgres psql -Atc 'select datname from pg_database' | grep -qx mailman-web")
        machine.succeed("ss -Htln 'sport = :8001' | grep -q '127.0.0.1:8001'")
        machine.fail("ss -Htln 'sport = :8001' | grep -v '127.0.0.1:8001'")
        machine.succeed("ss -Htln 'sport = :18507' | grep -q '127.0.0.1:18507'")

    with subtest("create a domain and a list"):
        rest("-d mail_host=example.org http://127.0.0.1:8001/3.1/domains")
        rest("-d fqdn_listname=test@example.org http://127.0.0.1:8001/3.1/lists")
        rest("-d list_id=test.example.org -d subscriber=alice@example.org -d pre_confirmed=True"
             " -d pre_verified=True -d pre_approved=True -d send_welcome_message=False"
             " http://127.0.0.1:8001/3.1/members")
        rest("-X PATCH -d default_member_action=accept"
             " http://127.0.0.1:8001/3.1/lists/test.example.org/config")
        machine.succeed("grep -q test@example.org /var/lib/mailman/data/postfix_lmtp")

    with subtest("deliver a message through Postfix to the list"):
        machine.succeed(
            "printf 'From: alice@example.org\\r\\nTo: test@example.org\\r\\n"
            "Subject: hello from the vm\\r\\n\\r\\nhi\\r\\n' > /tmp/message"
        )
        machine.succeed(
            "curl -sS smtp://127.0.0.1:25 --mail-from alice@example.org"
            " --mail-rcpt test@example.org --upload-file /tmp/message"
        )
        with machine.nested("waiting for the list to deliver to alice"):
            retry(delivered)
        message = machine.succeed("cat $(grep -l 'hello from the vm' /var/spool/mail/alice/new/*)")
        assert "List-Id: <test.example.org>" in message, message
        assert "DKIM-Signature:" in message and "d=example.org" in message and "s=mailman" in message, message
        # Mailman's [ARC] sealed it with the same key (dkim.nix).
        assert "ARC-Seal: i=1;" in message and "ARC-Message-Signature: i=1;" in message, message

    with subtest("postmaster@ and abuse@ reach adminEmail"):
        for address in ["postmaster@example.org", "abuse@example.org", f"abuse@{host}"]:
            target = machine.succeed(f"postmap -q {address} $(postconf -h virtual_alias_maps)")
            assert target.strip() == "${deployment.adminEmail}", (address, target)

    with subtest("the spam gate refuses GTUBE from a non-local client during SMTP"):
        # Mail from 127.0.0.1/::1 is this host's own (not scanned); the VM's eth1 address is not.
        address = machine.succeed("ip -4 -o addr show eth1 | awk '{print $4}' | cut -d/ -f1").strip()
        gtube = "XJS*C4JDBQADN1.NSBN3*2IDNEN*" + "GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
        machine.succeed(
            "printf 'From: bob@example.net\\r\\nTo: test@example.org\\r\\n"
            f"Subject: spam\\r\\n\\r\\n{gtube}\\r\\n' > /tmp/spam"
        )
        result = machine.fail(
            f"curl -v -sS smtp://{address}:25 --mail-from bob@example.net"
            " --mail-rcpt test@example.org --upload-file /tmp/spam 2>&1"
        )
        assert "554" in result, result

    with subtest("Postorius and HyperKitty through nginx"):
        machine.succeed(f"curl --fail -sS -k {https}/postorius/lists/ >/dev/null")
        # The list's own page: Postorius reached Mailman core over REST for it.
        machine.succeed(f"curl --fail -sS -k {https}/postorius/lists/test.example.org/ >/dev/null")
        machine.succeed(f"curl --fail -sS -k {https}/hyperkitty/ >/dev/null")
        machine.succeed(f"curl -sS -o /dev/null -w '%{{http_code}}' --resolve {host}:80:127.0.0.1 http://{host}/ | grep -qx 301")
        location = machine.succeed(f"curl -sS -k -o /dev/null -w '%{{redirect_url}}' {https}/pipermail/test/")
        assert location.strip() == f"https://{host}/hyperkitty/list/test@example.org/", location
        location = machine.succeed(f"curl -sS -k -o /dev/null -w '%{{redirect_url}}' {https}/mailman/listinfo/test")
        assert location.strip() == f"https://{host}/postorius/lists/test.example.org/", location
        # The redirects leave Django's own admin alone.
        machine.succeed(f"curl --fail -sS -k {https}/admin/login/ >/dev/null")

    with subtest("one-click unsubscribe: the post's own link, followed through nginx"):
        import email
        import re
        message = email.message_from_string(
            machine.succeed("cat $(grep -l 'hello from the vm' /var/spool/mail/alice/new/*)")
        )
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click", message
        header = " ".join(message["List-Unsubscribe"].split())
        link = re.fullmatch(
            "<https://" + re.escape(host) + "(/one-click/test[.]example[.]org/[A-Za-z0-9_-]{43})>,"
            " <mailto:test-leave@example.org>",
            header,
        )
        assert link, header
        roster = "http://127.0.0.1:8001/3.1/lists/test.example.org/roster/member"
        page = machine.succeed(f"curl --fail -sS -k {https}{link.group(1)}")
        assert 'method="post"' in page, page
        assert "alice@example.org" in rest(roster), "a GET unsubscribed alice"
        for _ in range(2):  # the second POST finds her gone and answers the same
            machine.succeed(f"curl --fail -sS -k -d List-Unsubscribe=One-Click {https}{link.group(1)}")
        assert "alice@example.org" not in rest(roster)
        machine.succeed("journalctl -u mailman-one-click.service | grep -q 'list=test.example.org member='")
        machine.fail(f"curl --fail -sS -k -d List-Unsubscribe=One-Click {https}{link.group(1)}x")

    with subtest("MTA-STS policy on its own host, HTTPS only"):
        sts = "--resolve mta-sts.example.org:443:127.0.0.1 https://mta-sts.example.org"
        policy = machine.succeed(f"curl --fail -sS -k {sts}/.well-known/mta-sts.txt")
        assert policy == ${builtins.toJSON deployment.mtaSts.policy}, policy
        content_type = machine.succeed(
            f"curl -sS -k -o /dev/null -w '%{{content_type}}' {sts}/.well-known/mta-sts.txt"
        )
        assert content_type.startswith("text/plain"), content_type
        machine.fail(f"curl --fail -sS -k {sts}/")
        machine.succeed(
            "curl -sS -o /dev/null -w '%{http_code}' --resolve mta-sts.example.org:80:127.0.0.1"
            " http://mta-sts.example.org/.well-known/mta-sts.txt | grep -qx 301"
        )

    with subtest("backup and restore with the host's own commands, into a local repository"):
        # The Storage Box is not reachable from the VM: the commands honour RESTIC_REPOSITORY.
        local = "RESTIC_REPOSITORY=/var/lib/vm-test-repository"
        machine.succeed(
            "umask 077; mkdir -p /var/lib/mailman-site/secrets;"
            " echo vm-test-repository-password > /var/lib/mailman-site/secrets/restic-password"
        )
        machine.succeed(f"{local} mailman-site-backup")
        machine.succeed("test -s /var/backup/mailman-site/mailman.pgdump")
        machine.succeed("grep -q lastSuccess /var/lib/mailman-site/backup-status.json")
        rest("-X DELETE http://127.0.0.1:8001/3.1/lists/test.example.org")
        machine.fail("curl --fail -sS -u restadmin:$(cat /var/lib/mailman-site/secrets/rest-api-password)"
                     " http://127.0.0.1:8001/3.1/lists/test.example.org")
        machine.succeed(f"{local} mailman-site-restore")
        with machine.nested("waiting for the Mailman REST API after the restore"):
            retry(api_up)
        rest("http://127.0.0.1:8001/3.1/lists/test.example.org")
        machine.succeed("grep -q test@example.org /var/lib/mailman/data/postfix_lmtp")

    with subtest("host commands"):
        print(machine.succeed("mailman-site-health"))
        report = machine.succeed("mailman-site-health --outbound")
        assert "WARN  outbound" in report, report
        machine.fail("mailman-site-health --bogus")
        machine.succeed("command -v mailman-reconcile")

    with subtest("daily status report: the first run mails adminEmail, an unchanged one does not"):
        machine.succeed("systemctl cat mailman-site-status-report.timer")
        journal = "journalctl -u mailman-site-status-report.service --no-pager"
        machine.succeed("systemctl start mailman-site-status-report.service")
        assert "report mailed to ${deployment.adminEmail}" in machine.succeed(journal)
        machine.succeed("systemctl start mailman-site-status-report.service")
        assert "status unchanged: no mail" in machine.succeed(journal)
        print(machine.succeed("mailman-site-status-report --dry-run"))
  '';
}
