"""Real milters started from our Nix files: OpenDKIM (dkim.nix) and rspamd (spam.nix).

Each module is evaluated for real (builtins only, the lib/pkgs functions it uses modelled with
nixpkgs' meaning) and the daemon is Debian's, run with the values the NixOS module would give
it; only sockets, key paths and state directories move into the test's directory.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nixos_support import NIXOS, evaluate_json, require_tool

_DKIM_EXPRESSION = """
let
  deployment = import {nixos}/deployment.nix {{ documentPath = {document}; }};
  lib = {{
    concatStringsSep = builtins.concatStringsSep;
    mkBefore = x: x;
  }};
  pkgs = {{
    writeShellScript = name: text: "/nix/store/${{name}}";
    systemd = "/nix/store/systemd";
  }};
in
(import {nixos}/dkim.nix {{ inherit pkgs lib deployment; }}).services.opendkim
"""


def tool(name: str) -> str:
    """A daemon from /usr/sbin; missing: skip, or fail under CI (.ci/run installs it)."""
    return require_tool(name, sbin=True)


def opendkim_module(nix_instantiate: str, document: Path) -> dict[str, Any]:
    expression = _DKIM_EXPRESSION.format(nixos=NIXOS, document=document)
    value: dict[str, Any] = evaluate_json(nix_instantiate, "--expr", expression)
    return value


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    socket: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_for_socket(daemon: Daemon, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.socket.exists():
            return
        if daemon.process.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{daemon.socket} never appeared:\n{daemon.output()}")


def _stop(daemon: Daemon) -> None:
    daemon.process.terminate()
    try:
        daemon.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()


def start_opendkim(module: dict[str, Any], root: Path, private_key_pem: bytes) -> Iterator[Daemon]:
    """OpenDKIM as nixpkgs 26.05 opendkim.nix starts it: `-f -l -p <socket> -d <domains>
    -k <keyPath>/<selector>.private -s <selector> -x <config from settings>`, as its user with
    the group dkim.nix sets (postfix), so Postfix can use the socket."""
    opendkim = tool("opendkim")
    directory = root / "opendkim"
    directory.mkdir(mode=0o750)
    shutil.chown(directory, "opendkim", module["group"])
    key = directory / f"{module['selector']}.private"
    key.write_bytes(private_key_pem)
    key.chmod(0o600)
    shutil.chown(key, "opendkim", module["group"])
    config = directory / "opendkim.conf"
    settings = {**module["settings"], "Syslog": "no", "LogWhy": "yes"}
    config.write_text("".join(f"{name} {value}\n" for name, value in settings.items()))
    socket = directory / "opendkim.sock"
    log = root / "opendkim.log"
    argv = [opendkim, "-f", "-l", "-p", f"local:{socket}", "-d", module["domains"],
            "-k", str(key), "-s", module["selector"], "-x", str(config),
            "-u", f"opendkim:{module['group']}"]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(process=process, socket=socket, log=log)
    try:
        _wait_for_socket(daemon)
        yield daemon
    finally:
        _stop(daemon)


def rspamd_module(nix_instantiate: str) -> dict[str, Any]:
    """`services.rspamd` and `services.mailman.settings` as spam.nix sets them."""
    value: dict[str, Any] = evaluate_json(
        nix_instantiate, "--expr", f"(import {NIXOS}/spam.nix {{ }}).services"
    )
    return value


# nixpkgs 26.05 rspamd.nix `rspamdConfFile`: the top-level file the module writes, with the
# workers postfix.enable defines (controller; rspamd_proxy on the milter socket, group postfix,
# its extraConfig in override.d/worker-proxy.inc). Here logging goes to a file and the sockets
# into the test's directory.
_RSPAMD_CONF = """\
.include "$CONFDIR/common.conf"

options {{
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
  .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}

logging {{
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  .include "$CONFDIR/logging.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/logging.inc"
  .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/logging.inc"
}}

worker "controller" {{
  type = "controller";
  enabled = {controller};
  bind_socket = "{root}/controller.sock mode=0660";
  .include "$CONFDIR/worker-controller.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/worker-controller.inc"
  .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/worker-controller.inc"
}}

worker "rspamd_proxy" {{
  type = "rspamd_proxy";
  bind_socket = "{root}/rspamd-milter.sock mode=0660 owner={user} group=postfix";
  .include "$CONFDIR/worker-proxy.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/worker-proxy.inc"
  .include(try=false; priority=10) "$LOCAL_CONFDIR/override.d/worker-proxy.inc"
}}
"""

# nixpkgs 26.05 rspamd.nix, `postfix.enable`: the rspamd_proxy worker's extraConfig.
_MODULE_PROXY_CONFIG = """\
upstream "local" {
  default = yes; # Self-scan upstreams are always default
  self_scan = yes; # Enable self-scan
}
"""


def start_rspamd(
    services: dict[str, Any], root: Path, *, test_options: str = ""
) -> Iterator[Daemon]:
    """Debian's rspamd with spam.nix's local.d files and the module's top-level file.

    `test_options` goes into override.d/options.inc (the DNS server of the test).
    """
    rspamd = tool("rspamd")
    user = "_rspamd"
    rspamd_cfg = services["rspamd"]
    for directory in ("local.d", "override.d", "run", "db"):
        (root / directory).mkdir()
    for directory in ("run", "db"):
        shutil.chown(root / directory, user, user)
    for name, file in rspamd_cfg["locals"].items():
        (root / "local.d" / name).write_text(file["text"])
    proxy = _MODULE_PROXY_CONFIG + rspamd_cfg["workers"]["rspamd_proxy"]["extraConfig"]
    (root / "override.d" / "worker-proxy.inc").write_text(proxy)
    (root / "override.d" / "options.inc").write_text(test_options)
    controller = rspamd_cfg["workers"].get("controller", {}).get("enable", True)
    (root / "rspamd.conf").write_text(
        _RSPAMD_CONF.format(root=root, user=user, controller="yes" if controller else "no")
    )
    shutil.chown(root, user, "postfix")
    log = root / "rspamd.log"
    argv = [rspamd, "-f", "-c", str(root / "rspamd.conf"), "-u", user, "-g", user,
            "--var", "CONFDIR=/etc/rspamd", "--var", f"LOCAL_CONFDIR={root}",
            "--var", f"RUNDIR={root / 'run'}", "--var", f"DBDIR={root / 'db'}",
            "--var", f"LOGDIR={root}"]  # fmt: skip
    with (root / "rspamd.out").open("wb") as out:
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    daemon = Daemon(process=process, socket=root / "rspamd-milter.sock", log=log)
    try:
        _wait_for_socket(daemon, timeout=120)
        yield daemon
    finally:
        _stop(daemon)


def resident_kib(main_pid: int) -> dict[str, tuple[int, int]]:
    """(RSS, PSS) in KiB of a process and its children (/proc smaps_rollup), by title."""
    figures: dict[str, tuple[int, int]] = {}
    pids = [main_pid]
    children = Path(f"/proc/{main_pid}/task/{main_pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        values = {line.split(":")[0]: line.split()[1] for line in rollup.splitlines()[1:]}
        figures[f"{pid} {title.strip()[:60]}"] = (int(values["Rss"]), int(values["Pss"]))
    return figures
