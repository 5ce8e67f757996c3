"""SSH connections to the host, and how long each kind of command keeps dialing.

pulumi-command v1.2.1 retries EVERY failed dial -- refused, timed out, failed handshake (a host
key mismatch included) and failed authentication alike -- until `dial_error_limit` dials have
failed (provider/pkg/provider/remote/connection.go, `dialWithRetry`, lines ~150-187), backing
off between dials up to 5 s. So the limit is the only thing that decides how late an SSH problem
(firewall / `sshAllowedIps`, host key mismatch, wrong deploy key) surfaces. A dial that is
refused or fails its handshake costs about that back-off; one whose packets are dropped costs the
per-dial timeout on top.

Long budgets are given only where a reboot is crossed; everything else gives up within minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

PER_DIAL_TIMEOUT_SECONDS = 10
# pulumi-command's back-off between dials: retry.Until's defaults, 100 ms growing 1.5x per dial up
# to 5 s (pulumi/pulumi sdk/go/common/util/retry/until.go, DefaultDelay/DefaultBackoff/
# DefaultMaxDelay), so after the first ten dials each failed dial waits 5 s.
BACKOFF_CEILING_SECONDS = 5


@dataclass(frozen=True)
class DialBudget:
    """How many failed dials a command accepts before it fails."""

    dial_error_limit: int

    def bounds_minutes(self) -> tuple[float, float]:
        """At least (every dial refused at once) and at most (every dial times out), in minutes."""
        fastest = self.dial_error_limit * BACKOFF_CEILING_SECONDS
        slowest = self.dial_error_limit * (BACKOFF_CEILING_SECONDS + PER_DIAL_TIMEOUT_SECONDS)
        return fastest / 60, slowest / 60


# Every command on a running host: an SSH problem fails the update within minutes
# (~2.5 to ~7.5 minutes; a resized server's boot, ~1 minute to sshd, fits).
RUNNING_HOST = DialBudget(30)
# The first connection to a brand-new Debian server (the install): cloud-init installs the host
# key before sshd first starts, ~1 minute after the server is created (~5 to ~15 minutes).
FIRST_BOOT = DialBudget(60)
# Only across a reboot: `nixos-ready` (the reboot into the installed NixOS) and `switch-verify`
# (a switch that needed a reboot) (~10 to ~30 minutes).
ACROSS_REBOOT = DialBudget(120)
# Releasing the volume of a host that may be gone (often why it is replaced): a few dials.
HOST_MAY_BE_GONE = DialBudget(3)


def with_budget(
    connection: command.remote.ConnectionArgs, budget: DialBudget
) -> command.remote.ConnectionArgs:
    """The same host, user, deploy key and pinned host key, dialing with `budget`."""
    return connect(
        host=connection.host,
        private_key=connection.private_key,
        host_key=connection.host_key,
        budget=budget,
    )


def connect(
    *,
    host: pulumi.Input[str],
    private_key: pulumi.Input[str] | None,
    host_key: pulumi.Input[str] | None,
    budget: DialBudget,
) -> command.remote.ConnectionArgs:
    """root@`host` with the deploy key, accepting only `host_key` (no trust on first use)."""
    return command.remote.ConnectionArgs(
        host=host,
        user="root",
        private_key=private_key,
        host_key=host_key,
        dial_error_limit=budget.dial_error_limit,
        per_dial_timeout=PER_DIAL_TIMEOUT_SECONDS,
    )
