# The versions of our packages in a nixpkgs source, as this configuration uses them: the site's
# modules (nixos/site.nix) evaluated with the VM test's document and the given pin. The
# `nixpkgs-bump` workflow evaluates it for the old and the new pin and tools/bump_nixpkgs.py
# `comment` puts both into the pull request:
#
#   nix-instantiate --eval --strict --json tools/package-versions.nix --arg nixpkgs <source> \
#     --arg pin "builtins.fromJSON (builtins.readFile ./components/nixpkgs-pin.json)"
#
# Evaluation only: nothing is built.
{
  nixpkgs,
  pin ? builtins.fromJSON (builtins.readFile ../components/nixpkgs-pin.json),
  system ? "x86_64-linux"
}:
let
  deployment = import ../nixos/deployment.nix {
    document = builtins.fromJSON (builtins.readFile ../nixos/tests/deployment.json) // {
      nixosRelease = pin.branch;
      nixpkgs = pin;
    };
  };
  evaluated = import (nixpkgs + "/nixos/lib/eval-config.nix") {
    inherit system;
    modules = [
      ../nixos/site.nix
      {
        _module.args.deployment = deployment;
        system.stateVersion = "26.05";
        networking.domain = deployment.domain;
        boot.loader.grub.enable = false;
        fileSystems."/" = {
          device = "/dev/vda";
          fsType = "ext4";
        };
      }
    ];
  };
  config = evaluated.config;
  pkgs = evaluated.pkgs;
in
{
  postfix = config.services.postfix.package.version or pkgs.postfix.version;
  nginx = config.services.nginx.package.version;
  mailman = pkgs.mailman.version or pkgs.python3Packages.mailman.version;
  postgresql = config.services.postgresql.package.version;
  openssl = pkgs.openssl.version;
  openssh = config.services.openssh.package.version or pkgs.openssh.version;
  kernel = config.boot.kernelPackages.kernel.version;
}
