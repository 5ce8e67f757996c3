# nginx in front of mailman-web and Let's Encrypt certificates (nixpkgs 26.05:
# nixos/modules/services/web-servers/nginx/default.nix, vhost-options.nix, location-options.nix;
# nixos/modules/security/acme/default.nix). The mailman module already defines the vhost for
# the hostname (uwsgi for "/", the static files from /var/lib/mailman-web-static); this adds TLS,
# HSTS and the optional Mailman 2 redirects to it.
{ lib, deployment, ... }:
let
  host = deployment.hostname;
  domain = deployment.primaryMailDomain;
  # Mailman 2 URLs name only the list; it is looked up in the first mail domain.
  postorius = "https://${host}/postorius/lists/$1.${domain}";
  hyperkitty = "https://${host}/hyperkitty/list/$1@${domain}";
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

    virtualHosts.${host} = {
      enableACME = true;
      forceSSL = true;
      # HSTS only with certificates browsers trust: a staging stack must stay reachable.
      extraConfig = lib.mkIf (!deployment.acmeStaging) ''
        add_header Strict-Transport-Security "max-age=31536000" always;
      '';
      locations = lib.mkIf deployment.mailman2Redirects {
        "~ ^/(?:mailman/)?(?:pipermail|private)/([a-z0-9._-]+)".return = "301 ${hyperkitty}/";
        "~ ^/(?:mailman/)?admin/([a-z0-9._-]+)".return = "301 ${postorius}/settings/";
        "~ ^/(?:mailman/)?admindb/([a-z0-9._-]+)".return = "301 ${postorius}/held_messages";
        "~ ^/(?:mailman/)?(?:listinfo|options|subscribe|confirm)/([a-z0-9._-]+)".return =
          "301 ${postorius}/";
        "= /mailman/listinfo".return = "301 https://${host}/postorius/lists/";
        "= /mailman/create".return = "301 https://${host}/postorius/lists/new/";
      };
    };
  };

  security.acme = {
    acceptTerms = true;
    defaults = {
      email = deployment.adminEmail;
      # null keeps the module's default (Let's Encrypt production).
      server = lib.mkIf deployment.acmeStaging deployment.acmeServer;
    };
  };
}
