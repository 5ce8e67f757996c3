# Spam gate in front of Mailman: rspamd (nixpkgs 26.05 nixos/modules/services/mail/rspamd.nix)
# scans every message from the internet during the SMTP dialogue as a Postfix milter
# (postfix.nix lists it). Clear spam is rejected before Postfix accepts it; borderline mail gets
# `X-Spam: Yes` and Mailman's [antispam] check discards it, so it never reaches the moderators'
# held queue. SPF, DKIM and DMARC of incoming mail are checked and written into an
# Authentication-Results header under this host's name, which Mailman's ARC sealing trusts.
#
# rspamd only scans: OpenDKIM (dkim.nix) is the one DKIM signer and Mailman ([ARC], mailman.nix
# side below) the one ARC sealer, both with the one published key.
{ ... }:
let
  # The header rspamd's milter adds on the add_header action (worker-proxy.inc `spam_header`)
  # and the one Mailman's [antispam] header_checks look for: one name for both.
  spamHeader = "X-Spam";
in
{
  services.rspamd = {
    enable = true;
    # The module's Postfix wiring: an rspamd_proxy worker in self-scan milter mode on
    # /run/rspamd/rspamd-milter.sock (mode 0660, group postfix) and Postfix in rspamd's group.
    # Its main.cf addition (smtpd_milters/non_smtpd_milters) is emptied: postfix.nix orders the
    # milters itself, and mail Postfix creates locally is not scanned.
    postfix.enable = true;
    postfix.config = { };
    workers.rspamd_proxy.extraConfig = ''
      spam_header = "${spamHeader}";
    '';
    # The controller (web UI, rspamc learning and stats, port 11334) costs about 70-90 MiB
    # (benchmarks/rspamd_memory.py) and has nothing to learn into without Redis; the proxy
    # scans by itself (self_scan). The module renders `enabled = no;` for it.
    workers.controller.enable = false;

    locals = {
      # Scores: 15 is rspamd's own reject threshold, 6 its add_header threshold (Debian and
      # nixpkgs ship the same actions.conf). Greylisting needs Redis, which this host does not
      # run; without the module the action would only defer legitimate mail.
      "actions.conf".text = ''
        reject = 15;
        add_header = 6;
        greylist = null;
      '';
      # Authentication-Results (SPF, DKIM, DMARC, ARC) on every message from the internet; the
      # ones a message arrives with are removed first (remove = 0: all of them), so a forged
      # header in this host's name never reaches Mailman, which trusts it for ARC. That is
      # rspamd's own default (plugins/milter_headers.lua, 3.4), written out because the ARC
      # seal depends on it. X-Spam-Status shows the score.
      "milter_headers.conf".text = ''
        use = ["authentication-results", "x-spam-status"];
        routines {
          authentication-results {
            remove = 0;
          }
        }
      '';
      # One signer, one sealer (see the top of this file).
      "dkim_signing.conf".text = ''
        enabled = false;
      '';
      "arc.conf".text = ''
        enabled = false;
      '';
    };
  };

  # Mailman 3.3.10 mailman/config/schema.cfg [antispam]: header_checks lines `Header: regexp`
  # (matched case-insensitively); jump_chain is where a match goes (default `hold`, the
  # moderators' queue). The header-match chain runs before member/nonmember moderation
  # (mailman/chains/builtin.py), so tagged mail is discarded even from a member. One line: the
  # module writes settings with lib.generators.toINI, which would not indent a continuation.
  services.mailman.settings.antispam = {
    header_checks = "${spamHeader}: yes";
    jump_chain = "discard";
  };

  systemd.services.postfix = {
    wants = [ "rspamd.service" ];
    after = [ "rspamd.service" ];
  };
}
