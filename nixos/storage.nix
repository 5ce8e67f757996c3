# The Hetzner volume holds every piece of state a list server must not lose, so a replaced server
# attached to the same volume comes back with its lists, archives, users and queued mail.
#
# The volume is mounted by its stable /dev/disk/by-id path at /srv/mailman-site, and each state
# directory is a bind mount from it to the path its service expects. A missing volume must never
# let the services start on the empty root disk (they would create a fresh, empty site there):
# the mounts are nofail (SSH and the console stay usable for repair), and every stateful unit
# requires its mounts.
{ pkgs, lib, deployment, ... }:
let
  volume = "/srv/mailman-site";
  mailmanUnits = import ./mailman-units.nix;
  # One certificate for the hostname and one per MTA-STS policy host (web.nix), each with its
  # placeholder and order units (nixpkgs 26.05 nixos/modules/security/acme/default.nix).
  acmeUnits = [
    "acme-setup"
  ]
  ++ lib.concatMap (cert: [
    "acme-${cert}"
    "acme-order-renew-${cert}"
  ]) ([ deployment.hostname ] ++ deployment.mtaSts.hosts);
  # state directory -> the units that read or write it
  stateDirs = {
    "/var/lib/mailman" = mailmanUnits.core;
    "/var/lib/mailman-web" = mailmanUnits.web;
    "/var/lib/postgresql" = lib.optionals deployment.usePostgresql [
      "postgresql"
      "postgresql-setup"
    ];
    "/var/lib/acme" = acmeUnits ++ [
      "nginx"
      "postfix"
    ];
    "/var/lib/opendkim" = [ "opendkim" ];
    "/var/lib/postfix" = [
      "postfix-setup"
      "postfix"
    ];
  };
  volumeDir = path: "${volume}/${lib.removePrefix "/var/lib/" path}";
  createDirs = pkgs.writeShellScript "mailman-site-volume-dirs" ''
    set -eu
    umask 022
    # Only missing directories: owners and modes of existing ones are the services' business.
    mkdir -p ${lib.concatMapStringsSep " " volumeDir (builtins.attrNames stateDirs)}
  '';
  units = lib.unique (lib.concatLists (builtins.attrValues stateDirs));
in
{
  fileSystems = {
    ${volume} = {
      device = deployment.dataVolume.device;
      fsType = deployment.dataVolume.fsType;
      options = [
        "nofail"
        "x-systemd.device-timeout=60s"
      ];
    };
  }
  // lib.mapAttrs (path: _: {
    device = volumeDir path;
    fsType = "none";
    options = [
      "bind"
      "nofail"
      "x-systemd.requires=mailman-site-volume-dirs.service"
    ];
    depends = [ volume ];
  }) stateDirs;

  systemd.services =
    lib.genAttrs units (unit: {
      unitConfig.RequiresMountsFor = builtins.attrNames (
        lib.filterAttrs (_: users: builtins.elem unit users) stateDirs
      );
    })
    // {
      # Creates the bind sources on a fresh volume. It runs before local-fs.target is reached,
      # so it must not take the default dependencies (they order it after sysinit.target).
      mailman-site-volume-dirs = {
        description = "Create the state directories on the data volume";
        unitConfig = {
          DefaultDependencies = false;
          RequiresMountsFor = volume;
        };
        before = [ "local-fs.target" ];
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = createDirs;
        };
      };
    };
}
