#!/usr/bin/env python3
"""Check a stack's `mailman:` settings with the program's own rules, before any stack exists.

    python tools/check_settings.py --stack-file Pulumi.staging.yaml \\
        --set hostname lists.example.org --set-json mailDomains '["example.org"]'

Reads the stack file's `mailman:` values (if the file exists), applies the --set values over
them (as `pulumi config set` would store them: strings as they are, lists as JSON), and runs
`components.settings.read_settings` on the result, the checks `pulumi up` runs. Prints
nothing and exits 0 when every value is valid; otherwise prints the program's one-line message
and exits 2. Encrypted values in the file are left out (they cannot be read here); checks that
need Hetzner's API (does the server type exist?) run at `pulumi preview`/`up`.

deploy.sh runs it before `pulumi stack init`, so a bad value never leaves a half-made stack.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

NAMESPACE = "mailman"


def config_text(value: object) -> str:
    """A YAML stack value as the Pulumi CLI hands it to the program (a string)."""
    if isinstance(value, str):
        return value
    return json.dumps(value)


def stack_file_config(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config = document.get("config") or {}
    return {
        key: config_text(value)
        for key, value in config.items()
        if key.startswith(f"{NAMESPACE}:") and not (isinstance(value, dict) and "secure" in value)
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--stack-file", type=Path, help="Pulumi.<stack>.yaml to start from")
    parser.add_argument(
        "--set", nargs=2, action="append", default=[], metavar=("KEY", "VALUE"), dest="values"
    )
    parser.add_argument(
        "--set-json", nargs=2, action="append", default=[], metavar=("KEY", "JSON"), dest="json"
    )
    parser.add_argument("--unset", action="append", default=[], metavar="KEY")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    config = stack_file_config(args.stack_file) if args.stack_file else {}
    for key in args.unset:
        config.pop(f"{NAMESPACE}:{key}", None)
    for key, value in args.values:
        config[f"{NAMESPACE}:{key}"] = value
    for key, text in args.json:
        config[f"{NAMESPACE}:{key}"] = config_text(json.loads(text))
    # The SDK reads a program's configuration from this variable (pulumi/runtime/config.py).
    os.environ["PULUMI_CONFIG"] = json.dumps(config)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import pulumi  # noqa: PLC0415 - only after PULUMI_CONFIG is set

    from components.settings import read_settings  # noqa: PLC0415

    try:
        read_settings()
    except pulumi.RunError as error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
