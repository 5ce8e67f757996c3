# nginx in front of mailman-web and Let's Encrypt certificates (nixpkgs 26.05:
# nixos/modules/services/web-servers/nginx/default.nix, vhost-options.nix, location-options.nix;
# nixos/modules/security/acme/default.nix). The mailman module already defines the vhost for
# the hostname (uwsgi for "/", the static files from /var/lib/mailman-web-static); this adds TLS,
# HSTS and the optional Mailman 2 redirects to it, and serves the MTA-STS policy of every mail
# domain from its own host mta-sts.<domain>, each with its own certificate.
{ pkgs, lib, deployment, ... }:
let
  host = deployment.hostname;
  domain = deployment.primaryMailDomain;
  # Mailman 2 URLs name only the list; it is looked up in the first mail domain.
  postorius = "https://${host}/postorius/lists/$1.${domain}";
  hyperkitty = "https://${host}/hyperkitty/list/$1@${domain}";
  # Served as text/plain (RFC 8461 section 3.2), from the store: it holds nothing secret.
  mtaStsPolicy = pkgs.writeText "mta-sts.txt" deployment.mtaSts.policy;
in
{
  services.nginx = {
    enable = true;
    recommendedTlsSettings = true;
    recommendedOptimisation = true;
    recommendedGzipSettings = true;
    recommendedProxySettings = true;
    # Includes uwsgi_params for the module's uwsgiPass location, which passes HTTPS=on to Django.
    recommendedUwsgiSettings = true;

    virtualHosts = lib.mkMerge [
      {
        ${host} = {
          enableACME = true;
          forceSSL = true;
          # HSTS only with certificates browsers trust: a staging stack must stay reachable.
          extraConfig = lib.mkIf (!deployment.acmeStaging) ''
            add_header Strict-Transport-Security "max-age=31536000" always;
          '';
          # Mailman 2's URLs (/mailman/<page>/<list>, archives under /pipermail); anchored on the
          # /mailman/ prefix so Django's own /admin/ and /accounts/ stay untouched.
          locations = lib.mkIf deployment.mailman2Redirects {
            "~ ^/(?:pipermail|mailman/private)/([a-z0-9._-]+)".return = "301 ${hyperkitty}/";
            "~ ^/mailman/admin/([a-z0-9._-]+)".return = "301 ${postorius}/settings/";
            "~ ^/mailman/admindb/([a-z0-9._-]+)".return = "301 ${postorius}/held_messages";
            "~ ^/mailman/(?:listinfo|options|subscribe|confirm|roster)/([a-z0-9._-]+)".return =
              "301 ${postorius}/";
            "= /mailman/listinfo".return = "301 https://${host}/postorius/lists/";
            "= /mailman/create".return = "301 https://${host}/postorius/lists/new/";
          };
        };
      }
      # RFC 8461 3.3: the policy only at this path, only over HTTPS with a certificate valid for
      # mta-sts.<domain>. HTTP-01 for that certificate needs the name's A/AAAA at this host.
      (lib.genAttrs deployment.mtaSts.hosts (_: {
        enableACME = true;
        forceSSL = true;
        locations."= /.well-known/mta-sts.txt" = {
          alias = mtaStsPolicy;
          extraConfig = "default_type text/plain;";
        };
        locations."/".return = "404";
      }))
    ];
  };

  security.acme = {
    acceptTerms = true;
    defaults = {
      email = deployment.adminEmail;
      # Unset keeps the module's default, Let's Encrypt production.
      server = lib.mkIf deployment.acmeStaging deployment.acmeServer;
    };
  };
}
