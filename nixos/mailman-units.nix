# The mailman module's systemd units (nixpkgs 26.05 nixos/modules/services/mail/mailman.nix), by
# the state they use. database.nix orders them after PostgreSQL; storage.nix makes them require
# their directory on the data volume, so none of them ever runs against an empty root disk.
# Builtins only.
{
  # /var/lib/mailman: core's queue, lists' data, Postfix maps, the SQLite file (database = sqlite)
  core = [
    "mailman"
    "mailman-settings"
    "mailman-daily"
  ];
  # /var/lib/mailman-web: Django's state, the full-text index, the SQLite file
  web = [
    "mailman-settings"
    "mailman-web-setup"
    "mailman-uwsgi"
    "hyperkitty"
  ]
  ++ map (period: "hyperkitty-${period}") [
    "minutely"
    "quarter_hourly"
    "hourly"
    "daily"
    "weekly"
    "yearly"
  ];
}
