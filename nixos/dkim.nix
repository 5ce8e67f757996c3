# DKIM signing for every mail domain with OpenDKIM (nixpkgs 26.05
# nixos/modules/services/mail/opendkim.nix) as a Postfix milter (postfix.nix).
#
# The key is not generated here: the Pulumi program owns it, publishes the public half in DNS and
# writes the private half root-only to /var/lib/mailman-site/secrets/dkim-private-key.pem, so DNS
# and host always agree and a rebuilt server signs with the same key. A root step (the "+"
# prefix) copies it into OpenDKIM's key directory on every start, never through the Nix store;
# a path unit restarts OpenDKIM when the deploy chain writes a new key.
{ pkgs, lib, deployment, ... }:
let
  selector = deployment.dkimSelector;
  secretKey = "/var/lib/mailman-site/secrets/dkim-private-key.pem";
  keyPath = "/var/lib/opendkim/keys";
  installKey = pkgs.writeShellScript "mailman-site-install-dkim-key" ''
    set -eu
    if [ ! -s ${secretKey} ]; then
      echo "${secretKey} is missing: the deploy chain writes it before nixos-rebuild" >&2
      exit 1
    fi
    install -d -m 0700 -o opendkim -g postfix ${keyPath}
    install -m 0600 -o opendkim -g postfix ${secretKey} ${keyPath}/${selector}.private
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
      OversignHeaders = "From";
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

  systemd.paths.mailman-site-dkim-key = {
    wantedBy = [ "multi-user.target" ];
    pathConfig.PathChanged = secretKey;
  };
  systemd.services.mailman-site-dkim-key = {
    description = "Restart OpenDKIM after the DKIM key changed";
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${pkgs.systemd}/bin/systemctl try-restart opendkim.service";
    };
  };
}
