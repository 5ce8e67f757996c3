# Mailman 3 core, Postorius and HyperKitty through the NixOS module (nixpkgs 26.05:
# nixos/modules/services/mail/mailman.nix). serve.enable makes the module run mailman-web under
# uwsgi (HTTP on 127.0.0.1:18507 for HyperKitty's archiver API, a socket for nginx) and write the
# nginx vhost for every webHosts entry; web.nix adds TLS to that vhost.
{ lib, deployment, ... }:
let
  origin = "https://${deployment.hostname}";
in
{
  services.mailman = {
    enable = true;
    serve.enable = true;
    hyperkitty.enable = true;
    # Mailman core posts every archived message here. The module's default names "localhost",
    # which resolves to ::1 first while its uwsgi HTTP socket listens on 127.0.0.1:18507 only,
    # so each post would start with a refused connection; say the address uwsgi binds.
    hyperkitty.baseUrl = "http://127.0.0.1:18507/archives/";
    siteOwner = deployment.adminEmail;
    webHosts = [ deployment.hostname ];
    # A stable REST password the deploy chain writes (root-only, never in the store): the
    # reconcile and the health check log in with it, and it survives a rebuilt server.
    restApiPassFile = "/var/lib/mailman-site/secrets/rest-api-password";

    # The REST API on loopback only, spelled out rather than left to "localhost" resolution;
    # the health check and Postorius use exactly this address.
    settings.webservice = {
      hostname = "127.0.0.1";
      port = "8001";
    };

    # DATABASES lives in database.nix; the module's defaults already send Django's mail through
    # the local Postfix as siteOwner (DEFAULT_FROM_EMAIL/SERVER_EMAIL).
    webSettings = {
      # The site is served only over HTTPS by nginx (uwsgi_params pass HTTPS=on to Django).
      CSRF_TRUSTED_ORIGINS = [ origin ];
      MAILMAN_REST_API_URL = "http://127.0.0.1:8001";
      SESSION_COOKIE_SECURE = true;
      CSRF_COOKIE_SECURE = true;
      # allauth builds its callback URLs (social logins, e-mail confirmation) with it.
      ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https";
    };
  };

  # django-allauth providers cannot be added through webSettings (JSON replaces INSTALLED_APPS);
  # the settings.py text is of type lines, so this is appended after the module's own text.
  # Client ids and secrets are SocialApp rows written by mailman-reconcile, never in the store.
  environment.etc."mailman3/settings.py".text = lib.mkIf (deployment.socialLoginApps != [ ]) (
    lib.mkAfter ''
      INSTALLED_APPS = [
          *INSTALLED_APPS,
          ${lib.concatMapStringsSep "\n    " (app: ''"${app}",'') deployment.socialLoginApps}
      ]
    ''
  );

  # Fixed ids: the data volume outlives the server, and a rebuilt server must own the files it
  # finds there. The module creates these accounts without ids (dynamic allocation could differ).
  users.users.mailman.uid = 900;
  users.users.mailman-web.uid = 901;
  users.groups.mailman.gid = 900;
}
