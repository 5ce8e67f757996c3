# A model of the nixpkgs machinery nixos/deferred-postfix-maps.nix relies on, written for this
# project from the nixpkgs sources (nixos-26.05 era; no nixpkgs tree exists on our CI machines).
# Each piece keeps the behaviour the override depends on and nothing else:
#
# - makeExtensible / extends: lib/fixed-points.nix -- `extend f` re-ties the fixed point with
#   `final` (the finished set) and `prev` (the set before f).
# - makeOverridable: lib/customisation.nix -- the result gains `override`; given a function, it
#   is called with the ORIGINAL arguments and its attributes replace them.
# - python.withPackages f = buildEnv.override { extraLibs = f python.pkgs; }
#   (pkgs/development/interpreters/python/with-packages.nix); buildEnv is
#   `callPackage ./wrapper.nix` (passthrufun.nix), so it and its results are overridable.
# - wrapper.nix: the env's paths are `requiredPythonModules extraLibs`, and requiredPythonModules
#   (python-packages-base.nix) KEEPS ONLY derivations with `pythonModule == python`: anything
#   not made a module with toPythonModule is silently left out of the environment.
# - toPythonModule (python-packages-base.nix): overrideAttrs that adds passthru.pythonModule.
# - mailmanPackages (pkgs/servers/mail/mailman/default.nix): makeExtensible set whose
#   buildEnvs { withHyperkitty, withLDAP } returns { mailmanEnv; webEnv; }, both
#   `self.python3.withPackages`; python3 is the set's own interpreter (python.nix).
# - runCommand: a derivation whose build script is kept so the test can read it.
let
  fix = f: let x = f x; in x;
  extends = overlay: rattrs: final: let prev = rattrs final; in prev // overlay final prev;
  makeExtensible = rattrs: fix (final: rattrs final // { extend = f: makeExtensible (extends f rattrs); });

  makeOverridable =
    f: origArgs:
    f origArgs
    // {
      override =
        newArgs: makeOverridable f (origArgs // (if builtins.isFunction newArgs then newArgs origArgs else newArgs));
    };

  derivation' =
    attrs:
    attrs
    // {
      type = "derivation";
      outPath = "/nix/store/00000000000000000000000000000000-${attrs.name}";
    };

  # overrideAttrs as stdenv.mkDerivation gives it: the function sees the old attributes.
  mkDerivation =
    attrs: derivation' attrs // { overrideAttrs = f: mkDerivation (attrs // f attrs); }
    // (attrs.passthru or { });

  python3 =
    let
      python = derivation' {
        name = "python3-3.13";
        sitePackages = "lib/python3.13/site-packages";
        executable = "python3.13";
      };
      hasPythonModule = drv: drv ? pythonModule && drv.pythonModule == python;
      requiredPythonModules = drvs: [ python ] ++ builtins.filter hasPythonModule drvs;
      toPythonModule =
        drv: drv.overrideAttrs (old: { passthru = (old.passthru or { }) // { pythonModule = python; }; });
      module = name: toPythonModule (mkDerivation { inherit name; });
      pkgs = {
        inherit toPythonModule;
        psycopg2 = module "python3.13-psycopg2";
        python-ldap = module "python3.13-python-ldap";
        django-auth-ldap = module "python3.13-django-auth-ldap";
      };
      wrapper =
        { extraLibs ? [ ] }:
        derivation' {
          name = "python3-3.13-env";
          inherit extraLibs;
          paths = requiredPythonModules extraLibs;
        };
      buildEnv = makeOverridable wrapper { };
    in
    python
    // {
      inherit pkgs buildEnv;
      withPackages = f: buildEnv.override { extraLibs = f pkgs; };
    };

  mailmanPackages = makeExtensible (
    self:
    let
      module = name: python3.pkgs.toPythonModule (mkDerivation { inherit name; });
    in
    {
      inherit python3;
      mailman = module "python3.13-mailman-3.3.10";
      mailman-hyperkitty = module "python3.13-mailman-hyperkitty-1.2.1";
      web = module "python3.13-mailman-web-0.0.9";
      buildEnvs =
        {
          withHyperkitty ? false,
          withLDAP ? false,
        }:
        {
          mailmanEnv = self.python3.withPackages (
            ps:
            [
              self.mailman
              ps.psycopg2
            ]
            ++ (if withHyperkitty then [ self.mailman-hyperkitty ] else [ ])
            ++ (if withLDAP then [ ps.python-ldap ps.django-auth-ldap ] else [ ])
          );
          webEnv = self.python3.withPackages (ps: [
            self.web
            ps.psycopg2
          ]);
        };
    }
  );
in
{
  inherit mailmanPackages;
  runCommand = name: env: script: mkDerivation (env // { inherit name script; });
}
