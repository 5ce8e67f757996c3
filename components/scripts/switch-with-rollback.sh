#!/usr/bin/env bash
# Activate the configuration in /etc/nixos and prove it healthy, or put the previous generation
# back. Runs on the host as root; the deploy chain sends it over SSH (components/nixos.py).
#
#   switch-with-rollback.sh apply RELEASE [MANAGED_FILE...]
#     Drop files an earlier deploy pushed that are no longer managed, fetch the pinned nixpkgs
#     deployment.json names (a revision of RELEASE, checked by its NAR hash), build with it, then
#     either switch live and run `mailman-site-health` (rolling back to the
#     previous generation if the switch or the check fails), or -- when the kernel, initrd or
#     kernel parameters change -- make the new generation the boot default and schedule a reboot.
#   switch-with-rollback.sh verify
#     After apply: fail unless the running system is the one apply built. After a boot-path apply
#     it runs the health check on the rebooted host and rolls back if it fails.
#
# The build is activated the way nixos-rebuild does it (set the system profile, then
# switch-to-configuration), so the closure that is inspected for a kernel change is exactly the one
# that is activated, and a rollback returns to the exact generation that ran before -- built from
# the nixpkgs revision pinned then, since every generation is a complete closure.
set -euo pipefail

# Paths are overridable so tests can run this script against a fake system in a temp dir.
PROFILE=${MAILMAN_SITE_PROFILE:-/nix/var/nix/profiles/system}
CURRENT_SYSTEM=${MAILMAN_SITE_CURRENT_SYSTEM:-/run/current-system}
BOOTED_SYSTEM=${MAILMAN_SITE_BOOTED_SYSTEM:-/run/booted-system}
ETC_NIXOS=${MAILMAN_SITE_ETC_NIXOS:-/etc/nixos}
STATE_DIR=${MAILMAN_SITE_STATE_DIR:-/var/lib/mailman-site/deploy}
HEALTH_TIMEOUT=${MAILMAN_SITE_HEALTH_TIMEOUT:-300}
HEALTH_INTERVAL=${MAILMAN_SITE_HEALTH_INTERVAL:-10}
REBOOT_DELAY=${MAILMAN_SITE_REBOOT_DELAY:-5}
LOG_LINES=${MAILMAN_SITE_LOG_LINES:-40}
PROGRESS_INTERVAL=${MAILMAN_SITE_PROGRESS_INTERVAL:-60}

MANIFEST=$STATE_DIR/managed-files    # files of nixos/ the last apply pushed
WANTED=$STATE_DIR/wanted-system      # store path of the system the last apply built
PENDING=$STATE_DIR/pending-boot      # present between a boot-path apply and its verify
FAILURE=$STATE_DIR/last-failure      # why the wanted system is not running

say() { printf 'switch: %s\n' "$*"; }
fail() { printf 'switch: FAILED: %s\n' "$*" >&2; }

generation_link() { readlink "$PROFILE"; }
generation_number() { local link=$1; link=${link##*/}; link=${link#*-}; printf '%s\n' "${link%-link}"; }

# Units whose failure does not make a configuration bad. A certificate order fails while the
# name's DNS does not point at this host yet (a stack without dnsZone before its records exist, a
# mta-sts.<domain> record created later, DNS still propagating); nginx and Postfix keep serving
# the self-signed placeholder, the order is retried by its daily timer, and mailman-site-health
# reports the untrusted certificate as a warning. switch-to-configuration still exits 4 for it.
TOLERATED_FAILURES=("acme-order-renew-*.service")

failed_units() {
  systemctl list-units --failed --no-legend --plain --type=service 2>/dev/null | awk '{print $1}'
}

# After switch-to-configuration exited 4 ("units failed"): succeed, with a warning per unit, when
# every failed unit is tolerated; fail when any other unit failed (or none is listed).
only_tolerated_failures() {
  local unit pattern units tolerated
  units=$(failed_units) || return 1
  [ -n "$units" ] || return 1
  for unit in $units; do
    tolerated=""
    for pattern in "${TOLERATED_FAILURES[@]}"; do
      # shellcheck disable=SC2053 # the pattern is a glob on purpose
      [[ $unit == $pattern ]] && tolerated=1
    done
    [ -n "$tolerated" ] || return 1
  done
  for unit in $units; do
    say "WARN: $unit failed: the certificate is not issued yet (does DNS for its name point" \
      "at this host?); the self-signed placeholder serves meanwhile. Retry on the host:" \
      "systemctl start $unit; journalctl -u $unit"
  done
}

# The tail of everything that explains a failure: the build/activation output and the journal of
# each failed unit. Goes to stderr so it ends up in the error Pulumi prints.
show_logs() {
  local log=$1 unit units
  {
    if [ -s "$log" ]; then
      printf -- '--- last %s lines of %s\n' "$LOG_LINES" "$2"
      tail -n "$LOG_LINES" "$log"
    fi
    units=$(systemctl list-units --failed --no-legend --plain --type=service 2>/dev/null \
      | awk '{print $1}') || units=""
    for unit in $units; do
      printf -- '--- journalctl -u %s (last %s lines)\n' "$unit" "$LOG_LINES"
      journalctl -u "$unit" -n "$LOG_LINES" --no-pager 2>&1 || true
    done
  } >&2
}

health_check() {
  local log=$1 deadline
  deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
  hash -r  # the new generation may bring a new mailman-site-health
  until mailman-site-health >"$log" 2>&1; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      cat "$log"
      return 1
    fi
    sleep "$HEALTH_INTERVAL"
  done
  cat "$log"
}

# Removing a module from nixos/ must remove it from /etc/nixos too; only files this script was
# told about before are ever removed, so nixos-infect's hardware-configuration.nix stays.
prune_files() {
  local path
  for path in "$@"; do
    case "/$path/" in
      */../*|*/./*|//*) fail "refusing managed file path '$path'"; exit 2 ;;
    esac
  done
  if [ -f "$MANIFEST" ]; then
    while IFS= read -r path; do
      [ -n "$path" ] || continue
      if ! printf '%s\n' "$@" | grep -Fxq -- "$path"; then
        say "removing $ETC_NIXOS/$path (no longer in nixos/)"
        rm -f -- "${ETC_NIXOS:?}/$path"
      fi
    done <"$MANIFEST"
  fi
  printf '%s\n' "$@" >"$MANIFEST.new"
  mv -f "$MANIFEST.new" "$MANIFEST"
}

# The pinned nixpkgs: nixos/nixpkgs.nix fetches the tarball deployment.json names and
# builtins.fetchTarball checks its NAR hash (a tarball with other content is an error, nothing is
# built). Prints its store path. The root channel is not used: the host builds exactly the pin,
# whatever `nix-channel --update` would bring; `-I nixpkgs=PATH` puts it first on the search path
# nixos-rebuild evaluates `<nixpkgs/nixos>` from (nixpkgs pkgs/by-name/ni/nixos-rebuild-ng,
# nixos-rebuild.8.scd: `--include`, `-I`, passed on to Nix).
pinned_nixpkgs() {
  local path
  path=$(nix-instantiate --eval --json "$ETC_NIXOS/nixpkgs.nix") || return 1
  path=${path#\"}
  path=${path%\"}
  [ -d "$path" ] || return 1
  printf '%s\n' "$path"
}

# A new kernel, initrd, kernel modules or kernel parameters only take effect after a reboot.
needs_reboot() {
  local new=$1 booted part
  [ -e "$BOOTED_SYSTEM" ] || return 1
  booted=$(readlink -f "$BOOTED_SYSTEM")
  for part in kernel initrd kernel-modules; do
    if [ "$(readlink -f "$new/$part")" != "$(readlink -f "$booted/$part")" ]; then
      say "$part changes: a reboot is needed"
      return 0
    fi
  done
  if ! cmp -s "$new/kernel-params" "$booted/kernel-params"; then
    say "kernel parameters change: a reboot is needed"
    return 0
  fi
  return 1
}

# Run SYSTEM's switch-to-configuration ACTION (switch|boot) the way nixos-rebuild does: as a
# transient unit, so that a dropped SSH session (sshd or the network restarting during the switch)
# cannot kill the activation halfway; same unit name, so it never interleaves with a manual
# nixos-rebuild. Output and exit status come back through --pipe.
activate() {
  local system=$1 action=$2
  systemd-run -E LOCALE_ARCHIVE -E NIXOS_INSTALL_BOOTLOADER --collect --no-ask-password --pipe \
    --quiet --service-type=exec --unit=nixos-rebuild-switch-to-configuration \
    "$system/bin/switch-to-configuration" "$action"
}

# Make generation GEN the profile's current one again and activate it with ACTION (switch|boot).
restore_generation() {
  local gen=$1 action=$2
  say "rolling back to generation $gen ($action)"
  nix-env --profile "$PROFILE" --switch-generation "$gen"
  local status=0
  activate "$(readlink -f "$PROFILE")" "$action" || status=$?
  [ "$status" -eq 0 ] || { [ "$status" -eq 4 ] && only_tolerated_failures; }
}

apply() {
  local release=$1 prev_link prev_gen new nixpkgs log status
  shift
  mkdir -p "$STATE_DIR"
  chmod 0700 "$STATE_DIR"
  log=$WORKDIR/output.log

  prune_files "$@"
  prev_link=$(generation_link)
  prev_gen=$(generation_number "$prev_link")
  if ! nixpkgs=$(pinned_nixpkgs 2>"$log"); then
    fail "could not fetch the pinned nixpkgs ($release) or its NAR hash does not match;" \
      "nothing was built, generation $prev_gen keeps running"
    show_logs "$log" "nix-instantiate $ETC_NIXOS/nixpkgs.nix"
    exit 1
  fi
  say "building $ETC_NIXOS/configuration.nix ($release, nixpkgs $nixpkgs);" \
    "running generation $prev_gen"
  if ! (cd "$WORKDIR" && nixos-rebuild build -I "nixpkgs=$nixpkgs") >"$log" 2>&1; then
    fail "nixos-rebuild build failed; nothing was activated, generation $prev_gen keeps running"
    show_logs "$log" "nixos-rebuild build"
    exit 1
  fi
  new=$(readlink -f "$WORKDIR/result")
  printf '%s\n' "$new" >"$WANTED"
  rm -f "$FAILURE" "$PENDING"

  if [ "$new" = "$(readlink -f "$CURRENT_SYSTEM")" ]; then
    say "the build is the running system ($new); nothing to activate"
  elif needs_reboot "$new"; then
    nix-env --profile "$PROFILE" --set "$new"
    if ! activate "$new" boot >"$log" 2>&1; then
      fail "switch-to-configuration boot failed; restoring generation $prev_gen as boot default"
      restore_generation "$prev_gen" boot >>"$log" 2>&1 || true
      show_logs "$log" "switch-to-configuration boot"
      exit 1
    fi
    # Reboot after this session has returned its exit status, and refuse new SSH sessions until
    # then (sshd's KillMode=process keeps this one), so the `verify` that follows connects only
    # to the rebooted host -- through the connection's dial retries.
    if ! systemd-run --unit=mailman-site-reboot --on-active="${REBOOT_DELAY}s" \
        systemctl reboot >"$log" 2>&1; then
      fail "could not schedule the reboot; restoring generation $prev_gen as boot default"
      restore_generation "$prev_gen" boot >>"$log" 2>&1 || true
      show_logs "$log" "systemd-run"
      exit 1
    fi
    printf '%s\n' "$prev_gen" >"$PENDING"
    systemctl stop sshd.service sshd.socket >/dev/null 2>&1 || true
    say "new generation is the boot default; rebooting in ${REBOOT_DELAY}s"
    return 0
  else
    nix-env --profile "$PROFILE" --set "$new"
    # Only failures of this activation count: a unit that failed before (say a certificate
    # order) would otherwise fail every later switch.
    systemctl reset-failed >/dev/null 2>&1 || true
    status=0
    activate "$new" switch >"$log" 2>&1 || status=$?
    if [ "$status" -ne 0 ] && ! { [ "$status" -eq 4 ] && only_tolerated_failures; }; then
      fail "switch-to-configuration switch failed"
      show_logs "$log" "switch-to-configuration switch"
      rollback_live "$prev_gen" "the switch failed"
      exit 1
    fi
    cat "$log"
  fi

  if ! health_check "$log"; then
    fail "mailman-site-health failed after the switch"
    show_logs "$log" "mailman-site-health"
    rollback_live "$prev_gen" "mailman-site-health failed"
    exit 1
  fi
  say "generation $(generation_number "$(generation_link)") is active and healthy"
}

rollback_live() {
  local gen=$1 reason=$2
  if restore_generation "$gen" switch >&2; then
    fail "$reason; rolled back, generation $gen is serving again"
  else
    fail "$reason; rollback to generation $gen ALSO failed -- log in and run" \
      "'nix-env -p $PROFILE --switch-generation $gen && $PROFILE/bin/switch-to-configuration switch'"
  fi
  printf '%s; rolled back to generation %s\n' "$reason" "$gen" >"$FAILURE"
}

verify() {
  local wanted current prev_gen log
  if [ ! -f "$WANTED" ]; then
    fail "no deploy recorded in $WANTED; run apply first"
    exit 1
  fi
  wanted=$(cat "$WANTED")
  current=$(readlink -f "$CURRENT_SYSTEM")

  if [ ! -f "$PENDING" ]; then
    if [ "$current" != "$wanted" ]; then
      fail "the host runs $current, not the deployed $wanted" \
        "($(cat "$FAILURE" 2>/dev/null || echo 'changed outside the deploy'))"
      exit 1
    fi
    say "running the deployed system $wanted"
    return 0
  fi

  # The second field of older versions of this script (a channel to restore) is ignored.
  read -r prev_gen _ <"$PENDING"
  rm -f "$PENDING"
  log=$WORKDIR/health.log
  if [ "$(readlink -f "$BOOTED_SYSTEM")" != "$wanted" ]; then
    fail "the host booted $(readlink -f "$BOOTED_SYSTEM"), not the new generation $wanted;" \
      "check the boot log in the Hetzner console"
    restore_generation "$prev_gen" boot >&2 || true
    printf 'the new generation did not boot\n' >"$FAILURE"
    show_logs /dev/null ""
    exit 1
  fi
  if ! health_check "$log"; then
    fail "mailman-site-health failed after the reboot"
    show_logs "$log" "mailman-site-health"
    rollback_live "$prev_gen" "mailman-site-health failed after the reboot"
    fail "generation $prev_gen runs on the new kernel until the next reboot"
    exit 1
  fi
  say "rebooted into $wanted; healthy"
}

# A line every PROGRESS_INTERVAL seconds while this runs. Build and health output go to log
# files, so the deploy's SSH session would otherwise be silent for the whole first build (many
# minutes), and NATs between Pulumi and the host forget silent TCP flows (Azure's, in front of
# GitHub's hosted runners, after 4 minutes): the session would hang instead of reporting.
# sleep gets no stdout, so nothing holds the session open once the ticker is killed.
start_ticker() {
  local started=$SECONDS
  while sleep "$PROGRESS_INTERVAL" >/dev/null 2>&1; do
    say "still working ($((SECONDS - started)) s)"
  done &
  TICKER=$!
}

WORKDIR=$(mktemp -d)
TICKER=""
trap 'if [ -n "$TICKER" ]; then kill "$TICKER" 2>/dev/null || true; fi; rm -rf "$WORKDIR"' EXIT

case "${1:-}" in
  apply)
    [ $# -ge 2 ] || { fail "usage: $0 apply RELEASE [MANAGED_FILE...]"; exit 2; }
    shift
    start_ticker
    apply "$@"
    ;;
  verify)
    start_ticker
    verify
    ;;
  *) fail "usage: $0 apply RELEASE [MANAGED_FILE...] | verify"; exit 2 ;;
esac
