# Database for Mailman core and mailman-web. PostgreSQL on the host by default: Mailman's runners
# write concurrently and SQLite is only the fallback for small or throwaway stacks. The mailman
# module does not wire PostgreSQL itself, so both sides are set here, with peer authentication
# over the Unix socket (the system user is the database role; no password exists anywhere).
# With database = "sqlite" nothing is set and the module's defaults apply: SQLite files in
# /var/lib/mailman and /var/lib/mailman-web, both on the data volume (storage.nix).
{ lib, deployment, ... }:
let
  # The module's default web user; database and role carry the same name (ensureDBOwnership).
  webUser = "mailman-web";
in
{
  config = lib.mkIf deployment.usePostgresql {
    services.postgresql = {
      enable = true;
      ensureDatabases = [
        "mailman"
        webUser
      ];
      ensureUsers = [
        {
          name = "mailman";
          ensureDBOwnership = true;
        }
        {
          name = webUser;
          ensureDBOwnership = true;
        }
      ];
    };

    services.mailman.settings.database = {
      class = "mailman.database.postgresql.PostgreSQLDatabase";
      url = "postgresql://mailman@/mailman?host=/run/postgresql";
    };

    services.mailman.webSettings.DATABASES.default = {
      ENGINE = "django.db.backends.postgresql";
      NAME = webUser;
      USER = webUser;
      # A directory as HOST means the Unix socket, hence peer authentication.
      HOST = "/run/postgresql";
    };

    # The module orders mailman, mailman-settings and mailman-uwsgi after postgresql.target
    # already; the units below also use the database (migrations, the HyperKitty task queue).
    systemd.services = lib.genAttrs [
      "mailman-web-setup"
      "hyperkitty"
      "hyperkitty-minutely"
      "hyperkitty-quarter_hourly"
      "hyperkitty-hourly"
      "hyperkitty-daily"
      "hyperkitty-weekly"
      "hyperkitty-yearly"
    ] (_: {
      after = [ "postgresql.target" ];
      requires = [ "postgresql.target" ];
    });
  };
}
