#!/usr/bin/env bash
# The one command that runs every check of this project: lint, type check and all tests.
# It installs the pinned Python dependencies into .venv itself. System tools the tests need
# (nix-instantiate, shellcheck, postfix, rspamd, restic, ...) are installed by .ci/run on CI;
# locally, missing ones make their tests skip -- except under CI=true, where they fail.
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.requirements-stamp
want=$(cat requirements.txt requirements-dev.txt | sha256sum)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
  printf '%s' "$want" > "$stamp"
fi

echo "== ruff"
.venv/bin/ruff check .
echo "== mypy (strict)"
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/pytest "$@"
