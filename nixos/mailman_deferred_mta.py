"""Mailman core's Postfix MTA hook, with the map regeneration deferred during a bulk reconcile.

Core loads the class named by `[mta] incoming` (mailman/config/schema.cfg, default
`mailman.mta.postfix.LMTP`) by its dotted path and calls its `create`/`delete` after every
list creation and removal (mailman/app/lifecycle.py:102 and :124, Mailman 3.3.10). The stock
`LMTP.create` regenerates the whole Postfix maps (mailman/mta/postfix.py:92-98), looking up
the domain of every existing list: creating N lists costs O(N^2).

`DeferredLMTP` is that class, except that `create`/`delete` skip the regeneration while the
reconcile program (nixos/mailman_reconcile.py) has a *live* marker in core's var_dir: a file
holding the process id of the running reconcile. The reconcile removes the marker before its
last list creation or deletion, so that one regenerates the maps for all lists.

Crash safety: a marker whose process is gone (the reconcile was killed) or is another program
(its pid reused) is ignored, so core is back to the stock behaviour at once. The marker itself
is stale; the host's mailman-reconcile wrapper regenerates the maps (`mailman aliases`) when it
finds one, and the next reconcile removes it. `regenerate` (used by `mailman aliases` and
`mailman start`, mailman/commands/cli_aliases.py:40, cli_control.py:109) is never deferred.

Installed into core's Python environment by nixos/deferred-postfix-maps.nix; written for
Mailman 3.3.10, whose `IMailTransportAgentLifecycle` (mailman/interfaces/mta.py) is
create/delete/regenerate.
"""

from pathlib import Path

from mailman.config import config
from mailman.mta.postfix import LMTP

# The file name in core's var_dir. The reconcile program runs in mailman-web's environment,
# not core's, so it cannot import this module: it repeats the name, and a test checks both.
MARKER = "reconcile-defers-postfix-maps"
# The reconcile's file name, part of its process's command line (python .../mailman_reconcile.py).
RECONCILE_PROGRAM = "mailman_reconcile.py"


def marker_path() -> Path:
    return Path(config.VAR_DIR) / MARKER


def deferring() -> bool:
    """True while a live reconcile has asked core to defer the map regeneration."""
    try:
        pid = int(marker_path().read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False  # none, unreadable or half-written: regenerate, the safe side
    if pid <= 0:
        return False
    # The process must still be the reconcile: a killed run's pid can be reused by anything.
    # /proc/PID/cmdline is world-readable (no hidepid on our hosts), whoever runs the process.
    try:
        command_line = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False  # the reconcile is gone (killed): stock behaviour
    except OSError:
        return True  # exists, but unreadable here: keep deferring, the reconcile regenerates
    return RECONCILE_PROGRAM.encode() in command_line


class DeferredLMTP(LMTP):  # type: ignore[misc]
    """`mailman.mta.postfix.LMTP` whose create/delete defer to a running bulk reconcile."""

    def create(self, mlist: object) -> None:
        if not deferring():
            self.regenerate()

    delete = create
