# RFC 8058 one-click unsubscribe (issue 15): a signed per-member link in every list post, and the
# endpoint behind it at https://HOSTNAME/one-click/.
#
# - Core: `[mta] outgoing` is ./mailman_one_click_mta.py (on core's path by
#   ./core-python-modules.nix). Core's master gives its runners almost no environment
#   (mailman/bin/master.py:49-92, :376-379), so the delivery reads /etc/mailman-one-click.json:
#   /etc is core's etc_dir under the module's `fhs` layout (nixos/modules/services/mail/
#   mailman.nix, nixos-26.05: `mailman.layout = "fhs"`, `"paths.fhs".etc_dir = "/etc"`).
# - The key: the stack's secret /var/lib/mailman-site/secrets/one-click-key (root-only, written by
#   the deploy chain, components/nixos.py host_secrets), handed to mailman.service and to the
#   endpoint as a systemd credential: readable by that unit's user only, under
#   /run/credentials/<unit>/, never in the store, argv or the environment.
# - The switches: the reconcile (mailman-web user) writes the lists whose one_click_unsubscribe
#   is false to stateDir/lists.json; core reads it for each post (missing = every list on).
# - The endpoint: ./mailman_one_click.py as its own small service (standard library, no Django):
#   it needs only the key and core's REST API, and a fault in it cannot touch the web UI.
#   nginx rate-limits it, caps the body and keeps its URLs (bearer tokens) out of the access log.
{
  config,
  pkgs,
  deployment,
  ...
}:
let
  cfg = config.services.mailman;
  secrets = "/var/lib/mailman-site/secrets";
  stateDir = "/var/lib/mailman-one-click";
  listen = "127.0.0.1:18508";
  # systemd.exec(5), Credentials: $CREDENTIALS_DIRECTORY is /run/credentials/<unit name>; core's
  # runners do not get the variable (see above), the path is the documented one.
  coreCredentials = "/run/credentials/mailman.service";
in
{
  services.mailman.settings.mta.outgoing = "mailman_one_click_mta.deliver";

  # mailman_one_click.SETTINGS_FILE, read by the delivery; nothing secret in it.
  environment.etc."mailman-one-click.json".text = builtins.toJSON {
    base_url = "https://${deployment.hostname}/one-click";
    key_file = "${coreCredentials}/one-click-key";
    switches_file = "${stateDir}/lists.json";
  };

  # The module runs core as User=mailman (mailman.nix, systemd.services.mailman.serviceConfig).
  systemd.services.mailman.serviceConfig.LoadCredential = [ "one-click-key:${secrets}/one-click-key" ];

  # Written by the reconcile as the web user, read by core (group mailman); not secret.
  systemd.tmpfiles.rules = [ "d ${stateDir} 0755 ${cfg.webUser} mailman - -" ];

  systemd.services.mailman-one-click = {
    description = "RFC 8058 one-click unsubscribe endpoint";
    after = [
      "network.target"
      "mailman.service"
    ];
    wantedBy = [ "multi-user.target" ];
    environment = {
      ONE_CLICK_LISTEN = listen;
      ONE_CLICK_REST_URL = "http://${cfg.settings.webservice.hostname}:${cfg.settings.webservice.port}";
      # Core's default admin_user (mailman/config/schema.cfg [webservice]); the module sets only
      # admin_pass, from restApiPassFile.
      ONE_CLICK_REST_USER = "restadmin";
    };
    serviceConfig = {
      ExecStart = "${pkgs.python3.interpreter} ${./mailman_one_click.py}";
      LoadCredential = [
        "one-click-key:${secrets}/one-click-key"
        "rest-api-password:${secrets}/rest-api-password"
      ];
      DynamicUser = true;
      Restart = "on-failure";
      NoNewPrivileges = true;
      PrivateDevices = true;
      PrivateTmp = true;
      ProtectHome = true;
      ProtectSystem = "strict";
      RestrictAddressFamilies = [
        "AF_INET"
        "AF_INET6"
      ];
      MemoryMax = "128M";
    };
  };

  # 10 requests a minute per client address, bursts of 20: a person clicks once, a mail provider
  # posts once per message; a guesser gets 429s (and a token has 128 bits of MAC to guess).
  services.nginx.appendHttpConfig = ''
    limit_req_zone $binary_remote_addr zone=one_click:1m rate=10r/m;
  '';
  services.nginx.virtualHosts.${deployment.hostname}.locations."/one-click/" = {
    proxyPass = "http://${listen}";
    extraConfig = ''
      limit_req zone=one_click burst=20 nodelay;
      limit_req_status 429;
      client_max_body_size 1k;
      # The path is a bearer token: no access log, and error lines (which quote the request
      # line: rate limiting, upstream errors) only at crit. The service logs its own failures.
      access_log off;
      error_log stderr crit;
      limit_except GET HEAD POST { deny all; }
    '';
  };
}
