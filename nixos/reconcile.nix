# `mailman-reconcile` on root's PATH: runs ./mailman_reconcile.py (the reconcile program, its own
# part of the project) with the desired-state document on stdin, in mailman-web's Python
# environment with mailman-web's Django settings, as the mailman-web user.
{ config, pkgs, ... }:
let
  cfg = config.services.mailman;
  # Core's MTA class that defers the Postfix map regeneration while the reconcile creates
  # lists (./mailman_deferred_mta.py), as a Python module of core's interpreter.
  deferredMta =
    python:
    python.pkgs.toPythonModule (
      pkgs.runCommand "mailman-deferred-mta" { } ''
        mkdir -p $out/${python.sitePackages}
        cp ${./mailman_deferred_mta.py} $out/${python.sitePackages}/mailman_deferred_mta.py
      ''
    );
  # The same arguments as the mailman module's own buildEnvs call, hence the same store path:
  # Django, Postorius, HyperKitty, allauth and psycopg2 exactly as uwsgi runs them.
  inherit
    (cfg.packageSet.buildEnvs {
      withHyperkitty = cfg.hyperkitty.enable;
      withLDAP = cfg.ldap.enable;
    })
    mailmanEnv
    webEnv
    ;
  # The program and the list rules it imports (one definition, shared with the Pulumi program),
  # copied -- not linked -- into one directory: Python puts the script's real directory on
  # sys.path, and that must be where the rules are.
  program = pkgs.runCommand "mailman-reconcile-program" { } ''
    mkdir -p $out
    cp ${./mailman_reconcile.py} $out/mailman_reconcile.py
    cp ${./mailman_list_rules.py} $out/mailman_list_rules.py
  '';
  reconcile = pkgs.writeShellApplication {
    name = "mailman-reconcile";
    runtimeInputs = [
      pkgs.coreutils
      pkgs.util-linux
      # systemctl, to restart the web app after a Site rename (exit 10)
      config.systemd.package
    ];
    text = ''
      export MAILMAN_RECONCILE_MAILMAN=${mailmanEnv}/bin/mailman
      export MAILMAN_RECONCILE_MARKER=${cfg.settings."paths.fhs".var_dir}/reconcile-defers-postfix-maps
      export MAILMAN_RECONCILE_PYTHON=${webEnv}/bin/python3
      export MAILMAN_RECONCILE_SCRIPT=${program}/mailman_reconcile.py
      export MAILMAN_WEB_USER=${cfg.webUser}
    ''
    + builtins.readFile ./scripts/mailman-reconcile.sh;
  };
in
{
  environment.systemPackages = [ reconcile ];

  # Core loads its MTA class by the dotted path in `[mta] incoming` (mailman/app/lifecycle.py
  # lines 102 and 124, Mailman 3.3.10). The module's mailmanEnv -- ExecStart of mailman.service,
  # the runners it forks (sys.executable, mailman/bin/master.py:393-401) and the `mailman`
  # command of mailman-tools -- comes from packageSet.buildEnvs (nixos/modules/services/mail/
  # mailman.nix, nixos-26.05); packageSet is extensible (pkgs/servers/mail/mailman/default.nix,
  # lib.makeExtensible), and mailmanEnv is python3.withPackages, i.e. buildEnv.override
  # { extraLibs } (pkgs/development/interpreters/python/with-packages.nix), so one more
  # extraLibs entry puts the class on every core interpreter's path.
  services.mailman.packageSet = pkgs.mailmanPackages.extend (
    final: prev: {
      buildEnvs =
        args:
        let
          envs = prev.buildEnvs args;
        in
        envs
        // {
          mailmanEnv = envs.mailmanEnv.override (old: {
            extraLibs = old.extraLibs ++ [ (deferredMta final.python3) ];
          });
        };
    }
  );
  # The stock class, mailman.mta.postfix.LMTP, with creation/deletion deferring to a running
  # reconcile (nixos/mailman_deferred_mta.py); the module's own mta.configuration stays.
  services.mailman.settings.mta.incoming = "mailman_deferred_mta.DeferredLMTP";
}
