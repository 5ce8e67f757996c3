#!/usr/bin/env python3
"""Decide from a drift check's two logs whether a stack drifted, and write the issue text.

    .venv/bin/python tools/drift_report.py STACK REFRESH_LOG REFRESH_STATUS \\
        PREVIEW_LOG PREVIEW_STATUS BODY_FILE

The logs are the output of
`pulumi refresh --preview-only --expect-no-changes --diff --suppress-outputs` (the cloud differs
from the state: someone changed a resource outside Pulumi) and
`pulumi preview --expect-no-changes --diff --suppress-outputs` (the program differs from the
state: a change not yet applied, or a refresh would be needed first). Exit status: 0 no drift,
1 drift (BODY_FILE holds the Markdown for the drift issue), 2 a command failed for another reason
(login, passphrase, program error: BODY_FILE holds the failing log's end, not an issue).

`--expect-no-changes` fails with the same status as any error; the message tells them apart
(pulumi/pulumi pkg/cmd/pulumi/operations/refresh.go: "no changes were expected but changes
occurred"; preview.go: "no changes were expected but changes were proposed"; newer CLIs,
backenderr.NoChangesExpectedError: "no changes were expected for <operation> but changes were
proposed"). Stack outputs are not in the logs (`--suppress-outputs`) and secret values are
printed as `[secret]` by the CLI; the report also masks anything shaped like a private key.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from pathlib import Path

DRIFT = re.compile(r"no changes were expected( for \w+)? but changes (were proposed|occurred)")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL
)
# GitHub refuses an issue body over 65536 characters; each log gets a share of it.
LOG_LIMIT = 28000
CLEAN, DRIFTED, FAILED = 0, 1, 2


def classify(log: str, status: int) -> int:
    """CLEAN, DRIFTED or FAILED for one command's output and exit status."""
    if status == 0:
        return CLEAN
    return DRIFTED if DRIFT.search(log) else FAILED


def cleaned(log: str) -> str:
    """The log without colour codes and with private-key blocks masked, cut to `LOG_LIMIT`."""
    text = PRIVATE_KEY.sub("[private key removed]", ANSI.sub("", log)).strip()
    if len(text) > LOG_LIMIT:
        cut = len(text) - LOG_LIMIT
        text = (
            f"[... first {cut} characters cut; the full log is in the workflow run]\n"
            + text[-LOG_LIMIT:]
        )
    return text.replace("```", "'''")


def issue_title(stack: str) -> str:
    return f"Drift on stack {stack}"


def issue_body(stack: str, refresh: tuple[str, int], preview: tuple[str, int]) -> str:
    parts = [
        f"`pulumi refresh --preview-only` and `pulumi preview` found changes on stack `{stack}`.",
        "Outputs are suppressed and secrets show as `[secret]`. Look at the diff, then either",
        "bring the cloud back with `pulumi up`, or accept the cloud's state with",
        f"`pulumi refresh --stack {stack}` and change the program to match.",
    ]
    for name, (log, status) in (
        ("pulumi refresh --preview-only", refresh),
        ("pulumi preview", preview),
    ):
        verdict = {CLEAN: "no changes", DRIFTED: "changes", FAILED: "failed"}[classify(log, status)]
        parts += ["", f"### `{name}`: {verdict}", "", "```diff", cleaned(log), "```"]
    return "\n".join(parts) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 6:
        print(__doc__, file=sys.stderr)
        return FAILED
    stack, refresh_log, refresh_status, preview_log, preview_status, body_file = args
    refresh = (Path(refresh_log).read_text(encoding="utf-8", errors="replace"), int(refresh_status))
    preview = (Path(preview_log).read_text(encoding="utf-8", errors="replace"), int(preview_status))
    verdicts = {classify(*refresh), classify(*preview)}
    if FAILED in verdicts:
        failing = refresh if classify(*refresh) == FAILED else preview
        Path(body_file).write_text(cleaned(failing[0])[-4000:] + "\n", encoding="utf-8")
        return FAILED
    if DRIFTED in verdicts:
        Path(body_file).write_text(issue_body(stack, refresh, preview), encoding="utf-8")
        return DRIFTED
    return CLEAN


if __name__ == "__main__":
    sys.exit(main())
