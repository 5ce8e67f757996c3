#!/usr/bin/env bash
# mailman-reconcile [args...] < desired-state.json
#
# Runs mailman_reconcile.py in mailman-web's Python environment with mailman-web's own Django
# settings, as the mailman-web user; the desired-state document (it holds passwords) passes
# through on stdin and never touches argv or a file.
#
# Installed by nixos/reconcile.nix, which sets the three variables below.
set -euo pipefail

python=${MAILMAN_RECONCILE_PYTHON:?MAILMAN_RECONCILE_PYTHON must be mailman-web\'s python}
script=${MAILMAN_RECONCILE_SCRIPT:?MAILMAN_RECONCILE_SCRIPT must be mailman_reconcile.py}
web_user=${MAILMAN_WEB_USER:?MAILMAN_WEB_USER must be the mailman-web user}
mailman=${MAILMAN_RECONCILE_MAILMAN:?MAILMAN_RECONCILE_MAILMAN must be core\'s mailman command}
marker=${MAILMAN_RECONCILE_MARKER:?MAILMAN_RECONCILE_MARKER must be the deferral marker path}

if [[ $(id -u) -ne 0 ]]; then
  echo "mailman-reconcile: run it as root (it switches to $web_user itself)" >&2
  exit 1
fi

# The program defers core's Postfix map regeneration while it creates lists (a marker file
# in core's var_dir, see mailman_deferred_mta.py) and removes the marker before its last
# creation, which regenerates the maps. A marker found here (under the lock below) belongs to a
# run that died or failed before that: regenerate the maps as core's user, then drop the marker.
regenerate_if_deferred() {
  if [[ -e $marker ]]; then
    echo "mailman-reconcile: regenerating the Postfix maps (a reconcile left them deferred)"
    runuser -u "${MAILMAN_RECONCILE_CORE_USER:-mailman}" -- "$mailman" aliases
    rm -f -- "$marker"
  fi
}

# One run at a time: a second one would remove the first one's live marker below (and core on
# SQLite answers concurrent writes with 500s). Held until this script exits.
exec 9>"${MAILMAN_RECONCILE_LOCK:-/run/mailman-reconcile.lock}"
if ! flock -n 9; then
  echo "mailman-reconcile: another run is in progress; run again when it has finished" >&2
  exit 3
fi

# mailman-web's settings create a logs directory in the working directory; this is the one the
# module's own units use.
cd "${MAILMAN_RECONCILE_WORKDIR:-/var/lib/mailman-web}"
regenerate_if_deferred

# The same environment the module's mailman-web command builds (mailman_web.manage.setup):
# settings.py from /etc/mailman3 as the module "settings".
status=0
runuser -u "$web_user" -- env -i \
  PATH="$PATH" \
  LANG=C.UTF-8 \
  HOME="$PWD" \
  MAILMAN_WEB_CONFIG=/etc/mailman3/settings.py \
  DJANGO_SETTINGS_MODULE=settings \
  PYTHONPATH=/etc/mailman3 \
  "$python" "$script" "$@" || status=$?
regenerate_if_deferred

# 10: converged, and the Django Site was renamed (first deploy, or a new hostname). Every running
# web worker caches the Site, and the program (the web user) cannot restart them; root can. The
# units are the mailman module's: uwsgi (Postorius, HyperKitty) and HyperKitty's qcluster.
if ((status == 10)); then
  echo "mailman-reconcile: restarting ${MAILMAN_RECONCILE_WEB_UNITS:=mailman-uwsgi.service hyperkitty.service} (the Site was renamed)"
  # shellcheck disable=SC2086 # a list of unit names
  systemctl restart $MAILMAN_RECONCILE_WEB_UNITS
  exit 0
fi
exit "$status"
