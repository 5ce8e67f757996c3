"""One fixed line instead of a secret: the wrapper of every command that handles a secret.

pulumi-command v1.2.1 puts a failed command's whole stdout and stderr into the error it returns,
whatever `logging` says (provider/pkg/provider/remote/commandOutputs.go line 101 and
provider/pkg/provider/local/commandOutputs.go line 113: `fmt.Errorf("%w: running %q:\n%s", err,
cmd, stdouterrbuf.String())`), so into the CLI and CI logs. The command text is in that error too:
it holds no secret (secrets travel on stdin or in the environment). `guarded` runs a command's
body under components/scripts/secret-guard.sh instead.
"""

from __future__ import annotations

from pathlib import Path

SECRET_GUARD = Path(__file__).parent / "scripts" / "secret-guard.sh"
# The journal identifier the details of a failed secret-handling command go to.
GUARD_TAG = "mailman-site-deploy"

__all__ = ["GUARD_TAG", "SECRET_GUARD", "guarded"]


def guarded(body: str, reason: str, public_prefix: str = "") -> str:
    """`body` run so that, on failure, only one fixed line can reach Pulumi's error.

    The body's stdout and stderr are held in a root-only tmpfs directory; on success they are
    passed on, on failure they go to the host journal (`journalctl -t mailman-site-deploy`,
    root-readable) and the command prints `<tag>: <reason> (exit N); details ...` only
    (components/scripts/secret-guard.sh). The body keeps the command's stdin.

    `public_prefix`: the body's stderr lines that start with it are written to be shown (never
    a secret, e.g. the reconcile's one-line refusals): on failure the first few follow the fixed
    line.
    """
    for name, text in (("reason", reason), ("public_prefix", public_prefix)):
        if "\n" in text or "'" in text:
            raise ValueError(f"{name}: one line without single quotes")
    return "\n".join(
        [
            f"GUARD_TAG={GUARD_TAG}",
            f"GUARD_REASON='{reason}'",
            f"GUARD_PUBLIC_PREFIX='{public_prefix}'",
            "guarded_body() {",
            body.rstrip("\n"),
            "}",
            SECRET_GUARD.read_text(encoding="utf-8"),
        ]
    )
