"""Real milters started from our Nix files: OpenDKIM (dkim.nix) and rspamd (spam.nix).

Each module is evaluated for real (builtins only, the lib/pkgs functions it uses modelled with
nixpkgs' meaning) and the daemon is Debian's, run with the values the NixOS module would give
it; only sockets, key paths and state directories move into the test's directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nixos_support import NIXOS, evaluate_json

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
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if path is None:
        message = f"{name} is not installed (CI installs it through .ci/run)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


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
