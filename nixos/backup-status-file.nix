# The file the off-site backup program (./mailman_site_backup.py) replaces atomically after each
# successful backup: {"lastSuccess": "<ISO-8601 UTC>", "snapshot": "<restic short id>"}. The
# daily status report (./status-report.nix) reads it to judge the age of the last good backup.
# The one definition of this path: ./backup.nix and ./status-report.nix both import it.
"/var/lib/mailman-site/backup-status.json"
