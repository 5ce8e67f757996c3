# Nightly PostgreSQL dumps onto the root disk. Hetzner's automatic backups copy the server's disk,
# not its volumes: the dumps put the lists, members and archives' database in those backups too,
# and guard against a bad migration or an operator's mistake on the live database.
{ lib, deployment, ... }:
{
  services.postgresqlBackup = lib.mkIf deployment.usePostgresql {
    enable = true;
    databases = [
      "mailman"
      "mailman-web"
    ];
    location = "/var/backup/postgresql";
    startAt = "*-*-* 02:15:00";
    compression = "zstd";
  };
}
