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
    ./web.nix
    ./hardening.nix
    ./backup.nix
    ./health.nix
    ./reconcile.nix
    ./core-python-modules.nix
    ./deferred-postfix-maps.nix
    ./one-click.nix
  ];

  assertions = [
    {
      # The pin: the document names the release, the channel the host evaluates with must be it.
      assertion = lib.trivial.release == deployment.nixosVersion;
      message = ''
        deployment.json asks for ${deployment.nixosRelease} but this configuration is evaluated
        with nixpkgs ${lib.trivial.release}. Point the root channel at the release:
          nix-channel --add ${deployment.nixpkgsChannelUrl} nixos && nix-channel --update
      '';
    }
  ];
}
