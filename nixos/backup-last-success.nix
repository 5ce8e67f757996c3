# The file the off-site backup unit writes after each successful backup: one line, the time of
# that success in ISO-8601 UTC (e.g. 2026-12-03T02:17:42Z), replaced atomically. The daily status
# report (./status-report.nix) reads it to judge the age of the last good backup. The one
# definition of this path: both modules import it.
"/var/lib/mailman-backup/last-success"
