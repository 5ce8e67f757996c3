# `mailman-reconcile` on root's PATH: runs ./mailman_reconcile.py (the reconcile program, its own
# part of the project) with the desired-state document on stdin, in mailman-web's Python
# environment with mailman-web's Django settings, as the mailman-web user.
{ config, pkgs, ... }:
let
  cfg = config.services.mailman;
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
  # The program, the list rules and the one-click names it imports (one definition each, shared
  # with the Pulumi program and with core), copied -- not linked -- into one directory: Python
  # puts the script's real directory on sys.path, and that must be where the modules are.
  program = pkgs.runCommand "mailman-reconcile-program" { } ''
    mkdir -p $out
    cp ${./mailman_reconcile.py} $out/mailman_reconcile.py
    cp ${./mailman_list_rules.py} $out/mailman_list_rules.py
    cp ${./mailman_one_click.py} $out/mailman_one_click.py
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
}
