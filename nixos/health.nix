# `mailman-site-health [--outbound]` on root's PATH: the deploy chain runs it after every switch
# and rolls back when it fails (docs/contracts.md section 4). The script is
# scripts/mailman-site-health.sh, shellchecked in CI and again by writeShellApplication.
{ pkgs, lib, deployment, ... }:
let
  health = pkgs.writeShellApplication {
    name = "mailman-site-health";
    runtimeInputs = [
      pkgs.bash
      pkgs.coreutils
      pkgs.curl
      pkgs.gawk
    ];
    text = ''
      export MAILMAN_SITE_HOSTNAME=${lib.escapeShellArg deployment.hostname}
    ''
    + builtins.readFile ./scripts/mailman-site-health.sh;
  };
in
{
  environment.systemPackages = [ health ];
}
