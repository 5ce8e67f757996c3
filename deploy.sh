#!/usr/bin/env bash
# Quick start: from a clone to a live Mailman site in one command.
#
#   export HCLOUD_TOKEN=...      # Hetzner Cloud project API token (read & write)
#   ./deploy.sh --hostname lists.example.org --admin-email you@example.org --dns-zone example.org
#
# It checks the settings with the program's own rules (tools/check_settings.py) before anything
# else, logs in to a state backend (the local file backend in ~/.pulumi when none is configured),
# selects or creates the stack (default `staging`: Let's Encrypt staging, no protection, cheap),
# writes its mailman:* settings and the operator's SSH key, stores the Hetzner token as an
# encrypted stack secret, and runs `pulumi up`. Run it again to change a setting and re-apply.
# The example lists in lists.yaml fit every site as they are: they live in the first mail
# domain and belong to the --admin-email address until the file names other owners.
# Secrets never go on a command line: the token is piped to `pulumi config set --secret`, the
# passphrase of a self-managed backend comes from PULUMI_CONFIG_PASSPHRASE(_FILE) or a prompt.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'EOF'
usage: ./deploy.sh --hostname FQDN --admin-email EMAIL [options]

  --hostname FQDN        web and mail host name, e.g. lists.example.org    (mailman:hostname)
  --admin-email EMAIL    site owner, ACME account, superuser e-mail,        (mailman:adminEmail)
                         owner of every list in lists.yaml without `owners:`
  --dns-zone ZONE        Hetzner DNS zone to write records into             (mailman:dnsZone)
                         (without it: no DNS resources; create the records of the
                         dnsRecords output at your DNS provider)
  --mail-domain DOMAIN   a domain lists live in; repeat for several         (mailman:mailDomains)
  --ssh-key FILE.pub     your SSH public key for root; repeat for several   (mailman:sshPublicKeys)
                         (default ~/.ssh/id_ed25519.pub, else a new key ~/.ssh/mailman_ed25519)
  --stack NAME           Pulumi stack (default: staging, Let's Encrypt staging and no
                         protection; use --stack production once staging works)
  --yes                  apply without the interactive confirmation of `pulumi up`
  -h, --help             this help

Environment: HCLOUD_TOKEN (required); PULUMI_BACKEND_URL, PULUMI_ACCESS_TOKEN,
PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE (optional, see README "State backend").
EOF
}

die() {
  echo "deploy.sh: $*" >&2
  exit 2
}

json_list() {
  python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"
}

hostname=""
admin_email=""
dns_zone=""
stack="staging"
mail_domains=()
ssh_keys=()
up_flags=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --hostname) hostname="${2:-}"; shift 2 || die "--hostname needs a value" ;;
    --admin-email) admin_email="${2:-}"; shift 2 || die "--admin-email needs a value" ;;
    --dns-zone) dns_zone="${2:-}"; shift 2 || die "--dns-zone needs a value" ;;
    --mail-domain) mail_domains+=("${2:-}"); shift 2 || die "--mail-domain needs a value" ;;
    --ssh-key) ssh_keys+=("${2:-}"); shift 2 || die "--ssh-key needs a value" ;;
    --stack) stack="${2:-}"; shift 2 || die "--stack needs a value" ;;
    --yes) up_flags+=(--yes); shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ -n "$hostname" ] || die "--hostname is required (the site's FQDN, e.g. lists.example.org)"
[ -n "$admin_email" ] || die "--admin-email is required (e.g. postmaster@example.org)"
[ -n "$stack" ] || die "--stack needs a name, e.g. production"
[ -n "${HCLOUD_TOKEN:-}" ] ||
  die "HCLOUD_TOKEN is not set: export HCLOUD_TOKEN=<Hetzner Cloud API token, read & write>"
command -v pulumi >/dev/null ||
  die "pulumi not found: install the Pulumi CLI (https://www.pulumi.com/docs/install/)"

# The settings check below runs the program's own code, so it needs the program's requirements:
# in the .venv that `pulumi install` uses later (Pulumi.yaml: virtualenv .venv, toolchain pip).
python=.venv/bin/python
if ! "$python" -c 'import pulumi, yaml' >/dev/null 2>&1; then
  command -v python3 >/dev/null || die "python3 not found: install Python 3.11 or newer"
  echo "Installing the program's Python requirements into .venv (once)."
  python3 -m venv .venv || die "python3 -m venv failed (Debian/Ubuntu: apt install python3-venv)"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt ||
    die "pip install -r requirements.txt failed"
fi

# The operator's SSH keys for root: the given ones; else whatever the stack already has (a
# re-run must not drop a colleague's key); else the usual key, or a new one made here.
stack_has_keys() {
  "$python" -c 'import sys, yaml
config = (yaml.safe_load(open(sys.argv[1])) or {}).get("config") or {}
sys.exit(0 if config.get("mailman:sshPublicKeys") else 1)' "Pulumi.$stack.yaml" 2>/dev/null
}
write_keys=1
if [ "${#ssh_keys[@]}" -eq 0 ] && stack_has_keys; then
  write_keys=""
elif [ "${#ssh_keys[@]}" -eq 0 ]; then
  if [ -f "$HOME/.ssh/id_ed25519.pub" ]; then
    ssh_keys=("$HOME/.ssh/id_ed25519.pub")
  else
    new_key="$HOME/.ssh/mailman_ed25519"
    if [ ! -f "$new_key.pub" ]; then
      command -v ssh-keygen >/dev/null || die "ssh-keygen not found: pass --ssh-key FILE.pub"
      mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
      echo "Creating an SSH key for root on the server: $new_key"
      passphrase=(-N "")
      [ -t 0 ] && passphrase=() # ssh-keygen asks for a passphrase on a terminal
      ssh-keygen -q -t ed25519 -C "mailman-$stack" -f "$new_key" "${passphrase[@]}"
    fi
    ssh_keys=("$new_key.pub")
  fi
fi
key_lines=()
for file in "${ssh_keys[@]}"; do
  [ -f "$file" ] || die "--ssh-key $file: no such file (an OpenSSH public key, e.g. ~/.ssh/id_ed25519.pub)"
  key_lines+=("$(head -n 1 "$file")")
done

# Every value is checked with the program's own rules before any stack exists.
check_args=(--stack-file "Pulumi.$stack.yaml" --set hostname "$hostname"
  --set adminEmail "$admin_email")
if [ -n "$dns_zone" ]; then
  check_args+=(--set dnsZone "$dns_zone")
else
  check_args+=(--unset dnsZone)
fi
if [ "${#mail_domains[@]}" -gt 0 ]; then
  check_args+=(--set-json mailDomains "$(json_list "${mail_domains[@]}")")
fi
if [ -n "$write_keys" ]; then
  check_args+=(--set-json sshPublicKeys "$(json_list "${key_lines[@]}")")
fi
message=$("$python" tools/check_settings.py "${check_args[@]}" 2>&1) || die "$message"

# State backend: PULUMI_BACKEND_URL or an earlier `pulumi login` wins; otherwise the
# zero-account default, a local file backend in ~/.pulumi.
if [ -z "${PULUMI_BACKEND_URL:-}" ] && ! pulumi whoami --non-interactive >/dev/null 2>&1; then
  echo "No Pulumi backend configured: using the local file backend (~/.pulumi)."
  pulumi login --local
fi

# Self-managed backends (file, S3) encrypt stack secrets with a passphrase; Pulumi Cloud
# encrypts them itself and needs none.
backend=$(pulumi whoami --verbose --non-interactive | sed -n 's/^Backend URL: *//p')
if [[ "$backend" != https://* ]] &&
  [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  [ -t 0 ] ||
    die "PULUMI_CONFIG_PASSPHRASE is not set: the $backend backend encrypts secrets with it"
  read -r -s -p "Passphrase that encrypts the secrets of stack '$stack': " PULUMI_CONFIG_PASSPHRASE
  echo
  [ -n "$PULUMI_CONFIG_PASSPHRASE" ] || die "the passphrase must not be empty"
  export PULUMI_CONFIG_PASSPHRASE
fi

if ! pulumi stack select "$stack" --non-interactive 2>/dev/null; then
  pulumi stack init "$stack" --non-interactive
fi

config() {
  pulumi config set --stack "$stack" --non-interactive "$@"
}
config mailman:hostname "$hostname"
config mailman:adminEmail "$admin_email"
if [ -n "$dns_zone" ]; then
  config mailman:dnsZone "$dns_zone"
else
  # DNS elsewhere: no zone, whatever the stack file or an earlier run set.
  pulumi config rm --stack "$stack" mailman:dnsZone 2>/dev/null || true
fi
config_list() {
  local key=$1
  shift
  pulumi config rm --stack "$stack" "mailman:$key" 2>/dev/null || true
  local i=0
  for value in "$@"; do
    config --path "mailman:${key}[$i]" "$value"
    i=$((i + 1))
  done
}
if [ "${#mail_domains[@]}" -gt 0 ]; then
  config_list mailDomains "${mail_domains[@]}"
fi
if [ -n "$write_keys" ]; then
  config_list sshPublicKeys "${key_lines[@]}"
fi
# Piped, so the token is in neither argv nor the shell history; stored encrypted.
printf '%s' "$HCLOUD_TOKEN" | config --secret hcloud:token

# Brings .venv up to date with requirements.txt (Pulumi.yaml names it) and fetches the plugins.
pulumi install
pulumi up --stack "$stack" "${up_flags[@]}"

echo
echo "Site: $(pulumi stack output siteUrl --stack "$stack")"
echo "Check it from outside: .venv/bin/python tools/smoke_check.py --stack $stack"
