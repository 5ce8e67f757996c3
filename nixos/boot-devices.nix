# Stable names for the root file system and the BIOS boot disk.
#
# nixos-infect's hardware-configuration.nix names them the way the installer's Debian saw them
# (`/dev/sda1`, `/dev/sda`). With the data volume attached, the volume can take /dev/sda on a
# later boot (reported on Hetzner in tiiuae/ghaf-infra#199): root would not be found, or GRUB
# installed onto the data volume. Before nixos-infect runs, the install script
# (components/installer.py) records the root file system by UUID and, on BIOS, the boot disk by
# its /dev/disk/by-id link in ./boot-devices.json beside this file; the script also hands this
# module to nixos-infect's first build (NIXOS_IMPORT), and configuration.nix imports it after.
# Without the file (a VM test, a host installed another way) it sets nothing.
{ lib, ... }:
let
  factsFile = ./boot-devices.json;
  facts = if builtins.pathExists factsFile then builtins.fromJSON (builtins.readFile factsFile) else { };
in
{
  fileSystems = lib.mkIf (facts ? rootDevice) { "/".device = lib.mkForce facts.rootDevice; };
  # EFI hosts install GRUB as "nodev" (nixos-infect) and record no grubDevice.
  boot.loader.grub.device = lib.mkIf (facts ? grubDevice) (lib.mkForce facts.grubDevice);
}
