# Entry point: nixos-rebuild evaluates /etc/nixos/configuration.nix on the host.
#
# The deploy chain copies every file of nixos/ (except tests/) to /etc/nixos/ and writes the
# deployment document beside it; nixos-infect left hardware-configuration.nix there (boot loader,
# root file system, initrd modules of the installer's layout), and the install script left
# boot-devices.json, with which ./boot-devices.nix replaces its /dev/sda-style device names. Per-deployment values come only
# from deployment.json, through ./deployment.nix, as the module argument `deployment`.
{ ... }:
{
  imports =
    (
      if builtins.pathExists ./hardware-configuration.nix then [ ./hardware-configuration.nix ] else [ ]
    )
    ++ [
      ./boot-devices.nix
      ./hetzner.nix
      ./site.nix
    ];

  _module.args.deployment = import ./deployment.nix { documentPath = ./deployment.json; };

  # Our own, not the installer's old default: state formats (PostgreSQL major version, ...) are
  # chosen for 26.05. Never change it on a live host; it is not the release the host runs.
  system.stateVersion = "26.05";
}
