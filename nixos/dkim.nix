# DKIM signing for every mail domain with OpenDKIM (nixpkgs 26.05
# nixos/modules/services/mail/opendkim.nix) as a Postfix milter (postfix.nix).
#
# The key is not generated here: the Pulumi program owns it, publishes the public half in DNS and
# writes the private half root-only to /var/lib/mailman-site/secrets/dkim-private-key.pem, so DNS
# and host always agree and a rebuilt server signs with the same key. A root step (the "+"
# prefix) copies it into OpenDKIM's key directory on every start, never through the Nix store;
# a path unit restarts OpenDKIM when the deploy chain writes a new key.
#
# The same key and selector ARC-seal list traffic: Mailman's own [ARC] (schema.cfg of Mailman
# 3.3.10), not rspamd's arc module. Mailman seals in delivery after decorating the message
# (mailman/mta/bulk.py, deliver.py: ARCSigningMixin), the only point where the seal covers
# what subscribers receive, and its ARC-Authentication-Results carry the results rspamd
# recorded when the post arrived (the trusted Authentication-Results of this hostname).
# rspamd would seal the outgoing copy as a new message from localhost, attesting nothing about
# the author. The key is already published at <selector>._domainkey.<every mail domain>.
{ pkgs, lib, deployment, ... }:
let
  selector = deployment.dkimSelector;
  secretKey = "/var/lib/mailman-site/secrets/dkim-private-key.pem";
  keyPath = "/var/lib/opendkim/keys";
  # Mailman core reads it when it loads its configuration, as user mailman, and exits when it
  # cannot (mailman/config/config.py, _update_arc_parameters).
  arcKeyDirectory = "/var/lib/mailman/arc";
  arcKey = "${arcKeyDirectory}/${selector}.private";
  installKey = pkgs.writeShellScript "mailman-site-install-dkim-key" ''
    set -eu
    if [ ! -s ${secretKey} ]; then
      echo "${secretKey} is missing: the deploy chain writes it before nixos-rebuild" >&2
      exit 1
    fi
    install -d -m 0700 -o opendkim -g postfix ${keyPath}
    install -m 0600 -o opendkim -g postfix ${secretKey} ${keyPath}/${selector}.private
  '';
  installArcKey = pkgs.writeShellScript "mailman-site-install-arc-key" ''
    set -eu
    install -d -m 0700 -o mailman -g mailman ${arcKeyDirectory}
    install -m 0600 -o mailman -g mailman ${secretKey} ${arcKey}
  '';
in
{
  services.opendkim = {
    enable = true;
    inherit selector keyPath;
    domains = "csl:${lib.concatStringsSep "," deployment.mailDomains}";
    # Postfix daemons drop supplementary groups, so the socket's group must be postfix itself.
    group = "postfix";
    settings = {
      Canonicalization = "relaxed/simple";
      # Socket rw for the group (the module's systemd UMask is 0077).
      UMask = "0007";
      # The signing domain comes from Sender: when a message has one (a list's own address),
      # else from From:; only the mail domains (-d) are signed.
      SenderHeaders = "Sender,From";
      # RFC 8058 section 4: the signature must cover List-Unsubscribe and List-Unsubscribe-Post
      # (one-click unsubscribe, ./one-click.nix). OpenDKIM 2.11's default SignHeaders (RFC 6376
      # 5.4) predates RFC 8058 and lacks List-Unsubscribe-Post; "*,+name" adds to the default
      # (opendkim.conf(5), OmitHeaders). Oversigned: in h= once more than present, so none can
      # be added after signing; a name oversigned but not signed makes invalid signatures
      # (opendkim.conf(5), OversignHeaders), which tests/nixos/test_nixos_dkim_signing.py shows.
      SignHeaders = "*,+List-Unsubscribe,+List-Unsubscribe-Post";
      OversignHeaders = "From,List-Unsubscribe,List-Unsubscribe-Post";
      # Mailman submits to Postfix on `localhost`, which resolves to ::1 first; OpenDKIM's
      # default InternalHosts is 127.0.0.1 alone (opendkim.conf(5)), so list mail from ::1
      # left unsigned. Both loopback addresses are this host's own clients.
      InternalHosts = "csl:127.0.0.1,::1";
      # Sign only: rspamd (spam.nix) verifies incoming mail and writes the one
      # Authentication-Results header Mailman's ARC sealing trusts.
      Mode = "s";
    };
  };

  systemd.services.opendkim.serviceConfig.ExecStartPre = lib.mkBefore [ "+${installKey}" ];

  # Mailman 3.3.10 mailman/config/schema.cfg [ARC]. dkim/dmarc = no: rspamd (spam.nix) checks
  # them at SMTP time and Mailman takes its Authentication-Results (authserv_id is trusted
  # by itself, config.py appends it to trusted_authserv_ids); Mailman still verifies an
  # incoming ARC chain. d= is the first mail domain, whose record carries this key.
  services.mailman.settings.ARC = {
    enabled = "yes";
    authserv_id = deployment.hostname;
    trusted_authserv_ids = deployment.hostname;
    dkim = "no";
    dmarc = "no";
    privkey = arcKey;
    inherit selector;
    domain = deployment.primaryMailDomain;
  };

  # The ARC key in place before anything loads Mailman's configuration (core, its CLI in
  # mailman-reconcile, mailman-daily); the secrets file is root-only, never in the store.
  systemd.services.mailman-site-arc-key = {
    description = "Install the ARC sealing key for Mailman";
    requiredBy = [ "mailman.service" ];
    before = [ "mailman.service" ];
    unitConfig.RequiresMountsFor = [ arcKeyDirectory ];
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
      ExecStart = installArcKey;
    };
  };

  systemd.paths.mailman-site-dkim-key = {
    wantedBy = [ "multi-user.target" ];
    pathConfig.PathChanged = secretKey;
  };
  systemd.services.mailman-site-dkim-key = {
    description = "Restart OpenDKIM and Mailman after the DKIM key changed";
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${pkgs.systemd}/bin/systemctl try-restart opendkim.service mailman-site-arc-key.service mailman.service";
    };
  };
}
