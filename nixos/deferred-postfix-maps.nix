# Core's MTA class that defers the Postfix map regeneration while the reconcile creates lists
# (./mailman_deferred_mta.py; issue 9: creating N lists costs O(N) instead of O(N^2)).
#
# Imported by ./site.nix. No nixpkgs tree exists where our tests run: the override is evaluated
# against a model of the nixpkgs pieces it relies on (tests/nixos/models/mailman-package-set.nix,
# tests/nixos/test_nixos_deferred_mta_wiring.py) and built for real by the nixos-vm-test
# workflow. A build failure stops the switch before anything on the host changes.
{ pkgs, ... }:
let
  # ./mailman_deferred_mta.py as a Python module of core's interpreter: the env keeps only
  # `requiredPythonModules extraLibs`, i.e. derivations whose pythonModule is that interpreter
  # (pkgs/development/interpreters/python/wrapper.nix, python-packages-base.nix); toPythonModule
  # sets it, a plain runCommand would be dropped without a word.
  deferredMta =
    python:
    python.pkgs.toPythonModule (
      pkgs.runCommand "mailman-deferred-mta" { } ''
        mkdir -p $out/${python.sitePackages}
        cp ${./mailman_deferred_mta.py} $out/${python.sitePackages}/mailman_deferred_mta.py
      ''
    );
in
{
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
