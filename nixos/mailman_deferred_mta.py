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

Crash safety: a marker whose process is gone (the reconcile was killed) is ignored, so core
is back to the stock behaviour at once; the marker itself is stale, and whoever finds it
regenerates the maps (`mailman aliases`, run by the host's mailman-reconcile wrapper before
and after the program). `regenerate` (used by `mailman aliases` and `mailman start`,
mailman/commands/cli_aliases.py:40, cli_control.py:109) is never deferred.

Installed into core's Python environment by nixos/reconcile.nix; written for Mailman 3.3.10,
whose `IMailTransportAgentLifecycle` (mailman/interfaces/mta.py) is create/delete/regenerate.
"""

import os
from pathlib import Path

from mailman.config import config
from mailman.mta.postfix import LMTP

# The file name in core's var_dir. The reconcile program runs in mailman-web's environment,
# not core's, so it cannot import this module: it repeats the name, and a test checks both.
MARKER = "reconcile-defers-postfix-maps"


def marker_path() -> Path:
    return Path(config.VAR_DIR) / MARKER


def deferring() -> bool:
    """True while a live reconcile has asked core to defer the map regeneration."""
    try:
        pid = int(marker_path().read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return False  # none, unreadable or half-written: regenerate, the safe side
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False  # the reconcile is gone (killed): stock behaviour
    except PermissionError:
        return True  # alive, as another user (the reconcile runs as the web user)
    return pid > 0


class DeferredLMTP(LMTP):  # type: ignore[misc]
    """`mailman.mta.postfix.LMTP` whose create/delete defer to a running bulk reconcile."""

    def create(self, mlist: object) -> None:
        if not deferring():
            self.regenerate()

    delete = create
