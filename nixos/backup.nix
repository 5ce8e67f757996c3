# Nightly encrypted, incremental, off-site backups with restic to the stack's Hetzner Storage Box
# (components/backup.py), and `mailman-site-restore [SNAPSHOT]` to bring a site back from them.
#
# Backup and restore are one program, ./mailman_site_backup.py: the unit below runs it, the
# restore drill in CI runs it against a real Mailman site (tests/reconcile/test_backup_drill.py).
# It dumps both databases consistently (pg_dump; SQLite's online backup API), then saves the
# dumps, Mailman's var dir, mailman-web's state (settings_local.json holds Django's SECRET_KEY and
# the HyperKitty archiver key) and the ACME account and certificates as one restic snapshot.
# The dumps stay on the root disk too, where Hetzner's server backups copy them.
#
# The restic module (nixpkgs nixos/modules/services/backup/restic.nix, nixos-26.05) supplies the
# `restic-site` wrapper for operators (createWrapper, default true: `restic-site snapshots`) and a
# weekly `restic check` unit. Its unit's environment is RESTIC_REPOSITORY/RESTIC_PASSWORD_FILE
# from the `repository`/`passwordFile` options and RESTIC_CACHE_DIR =
# /var/cache/restic-backups-<name>; an assertion wants a repository and a password file set.
# With no paths, command or pruneOpts its unit runs only the check (its ExecStart is
# backup ++ prune ++ check, each only when configured).
{
  config,
  pkgs,
  lib,
  deployment,
  ...
}:
let
  secrets = "/var/lib/mailman-site/secrets";
  # An ssh_config alias: restic's sftp backend runs `ssh <host> -s sftp`, so port, user, key and
  # known hosts come from here for the nightly unit, the check unit and the wrapper alike.
  sshAlias = "mailman-site-backup";
  knownHosts = "/var/lib/mailman-site/backup-known-hosts";
  resticSettings = {
    RESTIC_REPOSITORY = "sftp:${sshAlias}:${deployment.backup.path}";
    RESTIC_PASSWORD_FILE = "${secrets}/restic-password";
    # What the module sets for this backup's units (restic.nix, `environment`): the same cache.
    RESTIC_CACHE_DIR = "/var/cache/restic-backups-site";
  };
  mailmanUnits = import ./mailman-units.nix;
  paths = [
    "/var/lib/mailman"
    "/var/lib/mailman-web"
    "/var/lib/acme"
  ];
  dumpDir = "/var/backup/mailman-site";
  # What the program backs up and restores (see its docstring); no secrets.
  backupConfig = pkgs.writeText "mailman-site-backup.json" (
    builtins.toJSON {
      inherit paths dumpDir;
      # A running core's locks must not be saved (restored, a stale master lock would stop core
      # from starting); the mailman module's layout keeps them and the pid file outside the saved
      # paths (`lock_dir = "/run/mailman/lock"`, `pid_file = "/run/mailman/master.pid"`, nixpkgs
      # nixos/modules/services/mail/mailman.nix, "paths.fhs"), so nothing is excluded here.
      exclude = [ ];
      database =
        if deployment.usePostgresql then
          {
            kind = "postgresql";
            # database.nix: each database is owned by the role of the same name.
            databases = [
              {
                name = "mailman";
                owner = "mailman";
              }
              {
                name = "mailman-web";
                owner = "mailman-web";
              }
            ];
            # Peer authentication over the socket: the postgres superuser dumps and restores.
            runAs = "postgres";
          }
        else
          {
            kind = "sqlite";
            # The SQLite files database.nix leaves to the defaults: core's `$var_dir/data`
            # (Mailman's data_dir) and the mailman module's web database.
            files = [
              "/var/lib/mailman/data/mailman.db"
              "/var/lib/mailman-web/mailman-web.db"
            ];
          };
      keep = deployment.backup.keep;
      stopUnits = map (unit: "${unit}.service") (lib.unique (mailmanUnits.core ++ mailmanUnits.web));
      # Their Requires/After pull in mailman-settings and mailman-web-setup (migrations).
      startUnits = [
        "mailman.service"
        "mailman-uwsgi.service"
        "hyperkitty.service"
      ];
      statusFile = import ./backup-status-file.nix;
      lockFile = "/run/mailman-site-backup.lock";
    }
  );
  runtimeInputs = [
    config.services.restic.backups.site.package
    config.programs.ssh.package
    pkgs.python3
    pkgs.util-linux
    config.systemd.package
  ]
  ++ lib.optional deployment.usePostgresql config.services.postgresql.package;
  # A value already in the environment wins: restoring another stack's repository sets
  # RESTIC_REPOSITORY and RESTIC_PASSWORD_FILE (README, "Restore").
  environment =
    lib.concatStrings (
      lib.mapAttrsToList (name: value: "export ${name}=\"\${${name}:-${value}}\"\n") resticSettings
    )
    + ''
      export MAILMAN_SITE_BACKUP_CONFIG=${backupConfig}
    '';
  # `mailman-site-<verb>`: the backup program's `<verb>` with the repository's settings.
  siteCommand =
    verb:
    pkgs.writeShellApplication {
      name = "mailman-site-${verb}";
      inherit runtimeInputs;
      text = environment + ''
        exec python3 ${./mailman_site_backup.py} ${verb} "$@"
      '';
    };
  backupCommand = siteCommand "backup";
  restoreCommand = siteCommand "restore";
in
{
  programs.ssh.extraConfig = ''
    Host ${sshAlias}
      HostName ${deployment.backup.host}
      Port ${toString deployment.backup.port}
      User ${deployment.backup.user}
      IdentityFile ${secrets}/backup-ssh-key
      IdentitiesOnly yes
      BatchMode yes
      UserKnownHostsFile ${knownHosts}
      # The box's host key is learnt on first contact and pinned from then on.
      StrictHostKeyChecking accept-new
      ServerAliveInterval 60
  '';

  services.restic.backups.site = {
    repository = resticSettings.RESTIC_REPOSITORY;
    passwordFile = resticSettings.RESTIC_PASSWORD_FILE;
    runCheck = true;
    # Reads a twentieth of the pack files each week: every pack is re-read within months.
    checkOpts = [ "--read-data-subset=5%" ];
    timerConfig = {
      OnCalendar = "Sun *-*-* 04:30:00";
      Persistent = true;
    };
  };

  environment.systemPackages = [
    backupCommand
    restoreCommand
  ];

  systemd.services.mailman-site-backup = {
    description = "Back up the Mailman site to the off-site restic repository";
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ] ++ lib.optional deployment.usePostgresql "postgresql.target";
    # Never back up the empty root disk under a missing volume (storage.nix).
    unitConfig.RequiresMountsFor = paths;
    restartIfChanged = false;
    serviceConfig = {
      Type = "oneshot";
      ExecStart = "${backupCommand}/bin/mailman-site-backup";
      CacheDirectory = "restic-backups-site";
      CacheDirectoryMode = "0700";
      PrivateTmp = true;
      Nice = 10;
      IOSchedulingClass = "idle";
    };
  };

  systemd.timers.mailman-site-backup = {
    wantedBy = [ "timers.target" ];
    timerConfig = {
      OnCalendar = "*-*-* 02:15:00";
      RandomizedDelaySec = "30m";
      Persistent = true;
    };
  };
}
