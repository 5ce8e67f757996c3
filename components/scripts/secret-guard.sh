# shellcheck shell=bash disable=SC2317 # guarded_body is defined by the text before this one
# The tail of every command that handles a secret (components/guard.py, `guarded`): the
# command's body is the function `guarded_body`, defined just before this text, with GUARD_TAG
# and GUARD_REASON set. pulumi-command v1.2.1 puts a failed command's whole stdout and stderr
# into the error it returns, whatever `logging` says (provider/pkg/provider/remote/
# commandOutputs.go line 101, local/commandOutputs.go line 113), and so into the CLI and CI logs; a crashing reconcile (a traceback, Django
# debug output) or a writer that echoes its input would print a secret there. So the body's
# output is held in a root-only directory on tmpfs; on success it is passed on unchanged, on
# failure it goes to the host journal (root-readable: journalctl -t "$GUARD_TAG") and the command
# prints one fixed line.
# tmpfs on the host (/run, root's); a local command run by a user falls back to /tmp.
guard_base=${TMPDIR:-/run}
[ -w "$guard_base" ] || guard_base=/tmp
guard_dir=$(umask 077 && mktemp -d "$guard_base/mailman-site-guard.XXXXXX") || {
  printf '%s: %s (no private temp dir for its output)\n' "$GUARD_TAG" "$GUARD_REASON" >&2
  exit 1
}
trap 'rm -rf "$guard_dir"' EXIT
set +e
(guarded_body) >"$guard_dir/out" 2>"$guard_dir/err"
guard_status=$?
if [ "$guard_status" -eq 0 ]; then
  cat "$guard_dir/out"
  cat "$guard_dir/err" >&2
  exit 0
fi
{
  printf 'exit status %s; stdout:\n' "$guard_status"
  cat "$guard_dir/out"
  printf 'stderr:\n'
  cat "$guard_dir/err"
} >"$guard_dir/details"
if command -v systemd-cat >/dev/null 2>&1; then
  systemd-cat -t "$GUARD_TAG" -p err <"$guard_dir/details"
elif command -v logger >/dev/null 2>&1; then
  logger -t "$GUARD_TAG" -p user.err <"$guard_dir/details"
fi
printf '%s: %s (exit %s); details, as root where it ran: journalctl -t %s\n' \
  "$GUARD_TAG" "$GUARD_REASON" "$guard_status" "$GUARD_TAG" >&2
# A body whose own refusals are written to be shown (a line starting with GUARD_PUBLIC_PREFIX,
# e.g. the reconcile's `mailman-reconcile: lists[...] ...`, never holding a secret) gets its
# first few such lines through, cut short; everything else stays in the journal.
if [ -n "${GUARD_PUBLIC_PREFIX:-}" ]; then
  awk -v prefix="$GUARD_PUBLIC_PREFIX" \
    'index($0, prefix) == 1 { print substr($0, 1, 500); if (++shown == 5) exit }' \
    "$guard_dir/err" >&2
fi
exit "$guard_status"
