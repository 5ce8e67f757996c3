# Postfix: receives list mail for every mail domain and hands it to Mailman over LMTP, sends
# Mailman's outgoing mail, signs it through the OpenDKIM milter (dkim.nix) and offers STARTTLS
# with the ACME certificate of the hostname. nixpkgs 26.05 nixos/modules/services/mail/postfix.nix:
# everything main.cf is services.postfix.settings.main (sslCert/sslKey/config/relayDomains are gone).
{ config, lib, deployment, ... }:
let
  host = deployment.hostname;
  certDir = config.security.acme.certs.${host}.directory;
  mailmanData = "/var/lib/mailman/data";
  rspamdMilter = "unix:/run/rspamd/rspamd-milter.sock";
  dkimMilter = "unix:/run/opendkim/opendkim.sock";
  # RFC 5321 (postmaster) and RFC 2142 (abuse): these mailboxes of every domain we receive
  # mail for must reach a human. The host keeps no mailboxes, so they go to adminEmail, which
  # settings validation (components/settings.py, _admin_outside) keeps outside these domains.
  # nixpkgs 26.05 postfix.nix: a non-empty `virtual` becomes /etc/postfix/virtual (postmap'd by
  # postfix-setup) and virtual_alias_maps = [ "hash:/etc/postfix/virtual" ].
  humanMailboxes = lib.concatMapStrings (
    domain: "postmaster@${domain} ${deployment.adminEmail}\nabuse@${domain} ${deployment.adminEmail}\n"
  ) (lib.unique (deployment.mailDomains ++ [ host ]));
in
{
  services.postfix = {
    enable = true;
    # postmaster and root without a domain (local bounces, cron) end at adminEmail too.
    postmasterAlias = "root";
    rootAlias = deployment.adminEmail;
    virtual = humanMailboxes;

    settings.main = {
      # The PTR name of both addresses: what remote servers check our HELO against.
      myhostname = host;
      # The mail domains are local (postmaster@/abuse@ reach adminEmail through `virtual`
      # above); list addresses of these domains are found through Mailman's maps below, as in
      # nixpkgs' own mailman test.
      mydestination = [
        "$myhostname"
        "localhost"
      ]
      ++ deployment.mailDomains;
      # The three maps the mailman module asserts; Mailman regenerates them on list changes.
      relay_domains = [ "hash:${mailmanData}/postfix_domains" ];
      transport_maps = [ "hash:${mailmanData}/postfix_lmtp" ];
      local_recipient_maps = [
        "hash:${mailmanData}/postfix_lmtp"
        "proxy:unix:passwd.byname"
        "$alias_maps"
      ];

      # Not an open relay: only this host (Mailman, Django) may send to foreign domains.
      mynetworks = [
        "127.0.0.0/8"
        "[::1]/128"
      ];
      smtpd_relay_restrictions = [
        "permit_mynetworks"
        "reject_unauth_destination"
      ];
      smtpd_helo_required = true;
      disable_vrfy_command = true;

      # Outgoing mail leaves from the addresses whose PTR is the hostname (never from an
      # address the kernel picks), and over IPv4 first: large receivers are strictest with
      # IPv6 senders, and some providers' IPv6 reputation is poor.
      smtp_bind_address = deployment.network.ipv4Address;
      smtp_bind_address6 = deployment.network.ipv6Address;
      smtp_address_preference = "ipv4";

      # STARTTLS with the ACME certificate; key first, then the chain (smtpd_tls_chain_files).
      # Postfix reads the key as root before dropping privileges.
      smtpd_tls_chain_files = [
        "${certDir}/key.pem"
        "${certDir}/fullchain.pem"
      ];
      smtpd_tls_security_level = "may";
      smtpd_tls_protocols = ">=TLSv1.2";
      smtpd_tls_mandatory_protocols = ">=TLSv1.2";
      smtp_tls_security_level = "may";
      smtpd_tls_loglevel = 1;

      # Sane limits against floods; this host's own clients are exempt (mynetworks).
      smtpd_client_connection_count_limit = 20;
      smtpd_client_connection_rate_limit = 60;
      smtpd_client_message_rate_limit = 120;
      smtpd_client_recipient_rate_limit = 300;
      smtpd_recipient_limit = 100;
      # 25 MB: lists set their own, smaller max_message_size in Mailman.
      message_size_limit = 26214400;

      # Mail from the internet: rspamd's spam gate (spam.nix; socket of the nixpkgs module's
      # rspamd_proxy worker), then OpenDKIM (dkim.nix: verifies nothing, signs only this host's
      # own mail). Mail from this host (Mailman's list traffic on 127.0.0.1/::1, Django) is
      # signed, not scanned again: smtpd_milter_maps (Postfix >= 3.2) replaces the milter list
      # per client address. Mail flows on if a milter is down.
      smtpd_milters = [
        rspamdMilter
        dkimMilter
      ];
      smtpd_milter_maps = [ "inline:{ 127.0.0.1=${dkimMilter}, ::1=${dkimMilter} }" ];
      non_smtpd_milters = [ dkimMilter ];
      milter_default_action = "accept";
    };
  };

  # The certificate files must exist before Postfix starts (the acme module puts a self-signed
  # one in place until Let's Encrypt answers), and a renewed certificate must be picked up.
  systemd.services.postfix = {
    wants = [
      "acme-${host}.service"
      "opendkim.service"
    ];
    after = [
      "acme-${host}.service"
      "opendkim.service"
    ];
  };
  security.acme.certs.${host}.reloadServices = [ "postfix.service" ];
}
