# SSH by key only, a closed firewall, bounded logs and store.
{ lib, deployment, ... }:
let
  # Both families open to all: the plain port rule. Otherwise one nftables rule per family.
  sshFromAnywhere =
    builtins.elem "0.0.0.0/0" deployment.sshAllowedIps && builtins.elem "::/0" deployment.sshAllowedIps;
  v4 = builtins.filter (cidr: !(lib.hasInfix ":" cidr)) deployment.sshAllowedIps;
  v6 = builtins.filter (cidr: lib.hasInfix ":" cidr) deployment.sshAllowedIps;
  nftSet = cidrs: "{ ${lib.concatStringsSep ", " cidrs} }";
in
{
  services.openssh = {
    enable = true;
    # Port 22 is opened below, only for sshAllowedIps.
    openFirewall = false;
    settings = {
      PasswordAuthentication = false;
      KbdInteractiveAuthentication = false;
      PermitRootLogin = "prohibit-password";
      X11Forwarding = false;
    };
  };
  # The deploy key and the operators' keys, from the document; nothing else logs in.
  users.users.root.openssh.authorizedKeys.keys = deployment.sshAuthorizedKeys;

  # Only SMTP, HTTP (ACME challenge and the redirect) and HTTPS are public. Mailman's REST API
  # (127.0.0.1:8001), uwsgi (127.0.0.1:18507), LMTP (127.0.0.1:8024) and PostgreSQL (socket
  # only) listen on loopback and stay unreachable even if a service's bind address changes.
  networking.nftables.enable = true;
  networking.firewall = {
    enable = true;
    allowedTCPPorts = [
      25
      80
      443
    ]
    ++ lib.optional sshFromAnywhere 22;
    allowPing = true;
    extraInputRules = lib.mkIf (!sshFromAnywhere) (
      lib.optionalString (v4 != [ ]) "ip saddr ${nftSet v4} tcp dport 22 accept\n"
      + lib.optionalString (v6 != [ ]) "ip6 saddr ${nftSet v6} tcp dport 22 accept\n"
    );
  };

  nix.gc = {
    automatic = true;
    dates = "weekly";
    # Keeps a month of generations to roll back to.
    options = "--delete-older-than 30d";
  };
  nix.settings.auto-optimise-store = true;

  # 26.05 (nixos/modules/system/boot/systemd/journald.nix) has only extraConfig for these.
  # nixpkgs PR #536538 (26.11) removes it with an evaluation error in favour of
  # services.journald.settings.Journal: move these two keys there with the NixOS upgrade.
  services.journald.extraConfig = ''
    SystemMaxUse=1G
    MaxRetentionSec=3month
  '';
}
