# Our Python modules on Mailman core's interpreter path: the MTA class that defers Postfix map
# regeneration (./mailman_deferred_mta.py, ./deferred-postfix-maps.nix) and the one-click
# unsubscribe delivery with its link signer (./mailman_one_click_mta.py, ./mailman_one_click.py,
# ./one-click.nix). Core loads them by the dotted paths in `[mta] incoming` and `[mta] outgoing`.
#
# Imported by ./site.nix. No nixpkgs tree exists where our tests run: the override is evaluated
# against a model of the nixpkgs pieces it relies on (tests/nixos/models/mailman-package-set.nix,
# tests/nixos/test_nixos_deferred_mta_wiring.py) and built for real by the nixos-vm-test
# workflow. A build failure stops the switch before anything on the host changes.
{ pkgs, ... }:
let
  modules = [
    ./mailman_deferred_mta.py
    ./mailman_one_click.py
    ./mailman_one_click_mta.py
  ];
  # The modules as one Python module package of core's interpreter: the env keeps only
  # `requiredPythonModules extraLibs`, i.e. derivations whose pythonModule is that interpreter
  # (pkgs/development/interpreters/python/wrapper.nix, python-packages-base.nix); toPythonModule
  # sets it, a plain runCommand would be dropped without a word.
  siteModules =
    python:
    python.pkgs.toPythonModule (
      pkgs.runCommand "mailman-site-core-modules" { } (
        ''
          mkdir -p $out/${python.sitePackages}
        ''
        + builtins.concatStringsSep "" (
          map (
            module: "cp ${module} $out/${python.sitePackages}/${baseNameOf (toString module)}\n"
          ) modules
        )
      )
    );
in
{
  # The module's mailmanEnv -- ExecStart of mailman.service, the runners it forks (sys.executable,
  # mailman/bin/master.py:393-401) and the `mailman` command of mailman-tools -- comes from
  # packageSet.buildEnvs (nixos/modules/services/mail/mailman.nix, nixos-26.05); packageSet is
  # extensible (pkgs/servers/mail/mailman/default.nix, lib.makeExtensible), and mailmanEnv is
  # python3.withPackages, i.e. buildEnv.override { extraLibs }
  # (pkgs/development/interpreters/python/with-packages.nix), so one more extraLibs entry puts
  # the modules on every core interpreter's path.
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
            extraLibs = old.extraLibs ++ [ (siteModules final.python3) ];
          });
        };
    }
  );
}
