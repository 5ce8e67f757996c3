# Everything of the list server except the Hetzner machine itself (./hetzner.nix), so the VM test
# (tests/mailman-site.nix) can boot exactly these modules in QEMU.
{ lib, deployment, ... }:
{
  imports = [
    ./storage.nix
    ./database.nix
    ./mailman.nix
    ./postfix.nix
    ./dkim.nix
    ./spam.nix
    ./web.nix
    ./hardening.nix
    ./backup.nix
    ./health.nix
    ./status-report.nix
    ./reconcile.nix
    ./core-python-modules.nix
    ./deferred-postfix-maps.nix
    ./one-click.nix
  ];

  assertions = [
    {
      # The pin: the document names the release and its exact nixpkgs revision; the nixpkgs
      # this is evaluated with must be that release (a bump to another branch's revision, or a
      # manual nixos-rebuild with the old root channel, stops here).
      assertion = lib.trivial.release == deployment.nixosVersion;
      message = ''
        deployment.json asks for ${deployment.nixosRelease} (nixpkgs ${deployment.nixpkgs.rev}) but
        this configuration is evaluated with nixpkgs ${lib.trivial.release}. Build it with the pin:
          nixos-rebuild switch -I nixpkgs=$(nix-instantiate --eval --json /etc/nixos/nixpkgs.nix | tr -d '"')
      '';
    }
  ];
}
