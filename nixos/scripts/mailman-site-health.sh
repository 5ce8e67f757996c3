#!/usr/bin/env bash
# mailman-site-health [--outbound]
#
# Exits 0 only if every part of the list server answers: Postfix (220 banner on port 25), Mailman
# core's REST API (with the site's credentials), the mailman-web uwsgi app, and nginx serving
# Postorius and HyperKitty over HTTPS for the hostname. One line per check.
# --outbound also tries an outbound SMTP connection and warns (exit status unchanged) when the
# provider blocks port 25.
#
# Installed by nixos/health.nix, which sets MAILMAN_SITE_HOSTNAME. The other variables exist so
# the tests can point the checks at stand-in servers; on the host the defaults apply.
set -euo pipefail

hostname=${MAILMAN_SITE_HOSTNAME:?MAILMAN_SITE_HOSTNAME must name the site, e.g. lists.example.org}
smtp_port=${MAILMAN_SITE_SMTP_PORT:-25}
rest_url=${MAILMAN_SITE_REST_URL:-http://127.0.0.1:8001/3.1/system/versions}
uwsgi_url=${MAILMAN_SITE_UWSGI_URL:-http://127.0.0.1:18507/postorius/lists/}
https_port=${MAILMAN_SITE_HTTPS_PORT:-443}
mailman_cfg=${MAILMAN_SITE_MAILMAN_CFG:-/etc/mailman.cfg}
outbound_host=${MAILMAN_SITE_OUTBOUND_HOST:-gmail-smtp-in.l.google.com}
timeout_s=${MAILMAN_SITE_TIMEOUT:-10}

outbound=false
for arg in "$@"; do
  case "$arg" in
    --outbound) outbound=true ;;
    -h | --help)
      echo "usage: mailman-site-health [--outbound]"
      exit 0
      ;;
    *)
      echo "mailman-site-health: unknown argument '$arg' (expected: --outbound)" >&2
      exit 2
      ;;
  esac
done

failures=0
ok() { printf 'ok    %-11s %s\n' "$1" "$2"; }
fail() {
  printf 'FAIL  %-11s %s\n' "$1" "$2"
  failures=$((failures + 1))
}
warn() { printf 'WARN  %-11s %s\n' "$1" "$2"; }

# First line a server sends on host:port (carriage return stripped), or nothing (connection
# refused or timed out). /dev/tcp is bash's own, so the connection runs in a child bash that
# timeout can stop; its script is single-quoted on purpose (it expands there, not here).
smtp_banner() {
  local line
  # shellcheck disable=SC2016
  line=$(timeout "$timeout_s" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    IFS= read -r line <&3 || exit 1
    printf "QUIT\r\n" >&3
    printf "%s" "$line"
  ' _ "$1" "$2" 2>/dev/null) || true
  printf '%s' "${line%$'\r'}"
}

# HTTP status of a URL (000 when nothing answered); extra curl arguments follow the URL.
http_status() {
  local url=$1
  shift
  curl --silent --output /dev/null --write-out '%{http_code}' --max-time "$timeout_s" "$@" "$url" ||
    true
}

check_smtp() {
  local banner
  banner=$(smtp_banner 127.0.0.1 "$smtp_port")
  if [[ $banner == 220* ]]; then
    ok smtp "port $smtp_port: $banner"
  else
    fail smtp "no 220 banner on 127.0.0.1:$smtp_port${banner:+ (got: $banner)}"
  fi
}

# Mailman core's REST credentials, as Postorius reads them: [webservice] of mailman.cfg.
rest_credentials() {
  awk -F ':[ \t]*' '
    /^\[/ { section = $0; next }
    section == "[webservice]" && $1 == "admin_user" { user = $2 }
    section == "[webservice]" && $1 == "admin_pass" { pass = $2 }
    END { if (pass != "") printf "%s:%s", (user == "" ? "restadmin" : user), pass }
  ' "$mailman_cfg"
}

check_rest() {
  local credentials status
  if ! credentials=$(rest_credentials 2>/dev/null) || [[ -z $credentials ]]; then
    fail rest "no REST credentials in $mailman_cfg (run as root)"
    return
  fi
  # The password goes to curl on stdin, never on the command line.
  status=$(printf 'user = "%s"\n' "$credentials" | http_status "$rest_url" --config -)
  if [[ $status == 200 ]]; then
    ok rest "$rest_url answered 200"
  else
    fail rest "$rest_url answered ${status/#000/nothing}"
  fi
}

check_uwsgi() {
  local status
  status=$(http_status "$uwsgi_url" --header "Host: $hostname")
  if [[ $status == 200 ]]; then
    ok uwsgi "$uwsgi_url answered 200"
  else
    fail uwsgi "$uwsgi_url answered ${status/#000/nothing}"
  fi
}

check_https() {
  local name=$1 path=$2 url status
  url="https://$hostname:$https_port$path"
  # Through this host's nginx whatever DNS says; the certificate is judged separately below,
  # because right after the first deploy it is still the self-signed placeholder.
  status=$(http_status "$url" --insecure --location --max-redirs 3 \
    --resolve "$hostname:$https_port:127.0.0.1")
  if [[ $status == 200 ]]; then
    ok "$name" "$url answered 200"
  else
    fail "$name" "$url answered ${status/#000/nothing}"
  fi
}

check_certificate() {
  local url="https://$hostname:$https_port/"
  if curl --silent --output /dev/null --max-time "$timeout_s" \
    --resolve "$hostname:$https_port:127.0.0.1" "$url"; then
    ok certificate "trusted certificate for $hostname"
  else
    warn certificate "certificate for $hostname is not trusted yet (ACME pending, or staging)"
  fi
}

check_outbound() {
  local banner
  banner=$(smtp_banner "$outbound_host" 25)
  if [[ $banner == 220* ]]; then
    ok outbound "$outbound_host:25 answered: $banner"
  else
    warn outbound "no answer from $outbound_host:25: outbound SMTP looks blocked."
    warn outbound "Hetzner Cloud blocks ports 25 and 465 on new projects; once the first invoice is"
    warn outbound "paid, request the unblock: Hetzner Console > Support > Limit request 'Sending mails'."
  fi
}

check_smtp
check_rest
check_uwsgi
check_https postorius /postorius/lists/
check_https hyperkitty /hyperkitty/
check_certificate
if $outbound; then
  check_outbound
fi

if ((failures > 0)); then
  echo "mailman-site-health: $failures check(s) failed" >&2
  exit 1
fi
