# The nixpkgs this configuration is built with: the pinned revision the deployment document names
# (its `nixpkgs` key, from components/nixpkgs-pin.json in the repository), fetched as GitHub's
# tarball and checked against its NAR hash -- builtins.fetchTarball fails on any other content.
#
# The host's deploy (components/scripts/switch-with-rollback.sh) evaluates this file and hands the
# store path to nixos-rebuild as `-I nixpkgs=...`; the VM test (tests/mailman-site.nix) imports it
# with the same pin. Not a NixOS module: configuration.nix does not import it.
{
  deployment ? import ./deployment.nix { documentPath = ./deployment.json; }
}:
builtins.fetchTarball {
  inherit (deployment.nixpkgs) url sha256;
}
