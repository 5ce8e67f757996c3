"""Back up the Mailman site to its restic repository, or restore it from there.

    mailman_site_backup.py [backup]            # mailman-site-backup: the nightly unit
    mailman_site_backup.py restore [SNAPSHOT]  # mailman-site-restore: default the latest

One program for both directions, so the restore drill in CI (tests/nixos/test_backup_drill.py)
runs exactly what the host runs. Standard library only. Where the repository is and its password
come from restic's own environment (RESTIC_REPOSITORY, RESTIC_PASSWORD_FILE, RESTIC_CACHE_DIR);
what is backed up comes from a JSON file (MAILMAN_SITE_BACKUP_CONFIG, written by
nixos/backup.nix from the deployment document):

    paths        directories saved and restored whole (Mailman's var dir, mailman-web's state
                 with settings_local.json, the ACME account and certificates)
    exclude      restic exclude patterns (lock files and pid files of running daemons)
    dumpDir      where the consistent database dumps are written before each backup
    database     {"kind": "postgresql", "databases": [{"name", "owner"}], "runAs", "host"}
                 or {"kind": "sqlite", "files": [...]}
    keep         {"daily", "weekly", "monthly"}: `restic forget` retention
    stopUnits / startUnits   systemd units stopped before and started after a restore
    statusFile   JSON written after each successful backup (time, snapshot id)
    lockFile     one backup or restore at a time

A backup is one restic snapshot: restic writes the snapshot file last, so a backup killed at any
point leaves the previous snapshots intact; the stale lock it leaves is removed by the next run
(`restic unlock` removes only locks whose process is gone). Dumps are written beside their final
name and renamed, so a killed dump never replaces a good one. Nothing secret is ever printed.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

CONFIG_ENV = "MAILMAN_SITE_BACKUP_CONFIG"
DEFAULT_CONFIG = "/etc/mailman-site/backup.json"
TAG = "mailman-site"
# restic groups snapshots by host for `forget` and picks `latest` per host: one fixed name keeps
# a rebuilt server (or a new stack restoring another stack's backup) in the same series.
HOST_TAG = "mailman-site"


class BackupError(RuntimeError):
    """A step failed; the message says which and what to do."""


@dataclass(frozen=True)
class Config:
    """The JSON configuration, read once."""

    paths: tuple[str, ...]
    exclude: tuple[str, ...]
    dump_dir: Path
    database: dict[str, Any]
    keep: dict[str, int]
    stop_units: tuple[str, ...]
    start_units: tuple[str, ...]
    status_file: Path
    lock_file: Path

    @classmethod
    def load(cls, path: Path) -> Config:
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise BackupError(f"{path}: cannot read the backup configuration ({error})") from None
        try:
            return cls(
                paths=tuple(raw["paths"]),
                exclude=tuple(raw.get("exclude", [])),
                dump_dir=Path(raw["dumpDir"]),
                database=dict(raw["database"]),
                keep={k: int(v) for k, v in raw["keep"].items()},
                stop_units=tuple(raw.get("stopUnits", [])),
                start_units=tuple(raw.get("startUnits", [])),
                status_file=Path(raw["statusFile"]),
                lock_file=Path(raw["lockFile"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BackupError(f"{path}: missing or bad key {error}") from None

    def __post_init__(self) -> None:
        # Checked once here; backup, restore and the excludes then read only these two kinds.
        if self.database.get("kind") not in ("postgresql", "sqlite"):
            raise BackupError(
                f"database.kind: {self.database.get('kind')!r} is not postgresql or sqlite")


def log(message: str) -> None:
    print(f"mailman-site-backup: {message}", flush=True)


def run(cmd: list[str], *, stdout: IO[bytes] | None = None, quiet: bool = False) -> None:
    """Run a tool; on failure raise with its exit status (its own stderr went to the journal)."""
    result = subprocess.run(
        cmd, stdout=stdout, stderr=subprocess.DEVNULL if quiet else None, check=False
    )
    if result.returncode != 0:
        raise BackupError(f"{Path(cmd[0]).name} {cmd[1] if len(cmd) > 1 else ''} failed "
                          f"(exit {result.returncode})")


def restic(*args: str) -> list[str]:
    if not os.environ.get("RESTIC_REPOSITORY") and not os.environ.get("RESTIC_REPOSITORY_FILE"):
        raise BackupError("RESTIC_REPOSITORY is not set (run it through the unit or restic-site)")
    return [shutil.which("restic") or "restic", *args]


@contextlib.contextmanager
def exclusive(lock_file: Path) -> Iterator[None]:
    """One backup or restore at a time on this host."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup or restore holds {lock_file}") from None
        yield


# --- databases -----------------------------------------------------------------------------


def _pg(config: Config, tool: str, *args: str) -> list[str]:
    database = config.database
    prefix = ["runuser", "-u", database["runAs"], "--"] if database.get("runAs") else []
    host = ["-h", database["host"]] if database.get("host") else []
    user = ["-U", database["user"]] if database.get("user") else []
    return [*prefix, _pg_tool(database, tool), *host, *user, *args]


def _pg_tool(database: dict[str, Any], tool: str) -> str:
    bin_dir = database.get("binDir")
    return str(Path(bin_dir) / tool) if bin_dir else tool


def _replace_atomically(target: Path, write: Callable[[Path], object]) -> None:
    """Write `target` through a temp file in its directory, renamed only when complete."""
    partial = target.with_name(f".{target.name}.partial")
    write(partial)
    partial.replace(target)


def dump_databases(config: Config) -> None:
    config.dump_dir.mkdir(parents=True, exist_ok=True)
    config.dump_dir.chmod(0o700)
    if config.database["kind"] == "postgresql":
        for entry in config.database["databases"]:
            _dump_postgresql(config, entry["name"])
    else:
        for index, file in enumerate(config.database["files"]):
            _dump_sqlite(Path(file), config.dump_dir / _sqlite_dump_name(index, file))


def _dump_postgresql(config: Config, name: str) -> None:
    # pg_dump reads one snapshot of the database (a consistent dump while Mailman runs); the
    # custom format is compressed and lets pg_restore recreate every object and its owner.
    target = config.dump_dir / f"{name}.pgdump"

    def write(partial: Path) -> None:
        with partial.open("wb") as out:
            run(_pg(config, "pg_dump", "--format=custom", "--dbname", name), stdout=out)

    _replace_atomically(target, write)
    log(f"dumped PostgreSQL database {name}")


def _sqlite_dump_name(index: int, file: str) -> str:
    return f"sqlite-{index}-{Path(file).name}"


def _dump_sqlite(source: Path, target: Path) -> None:
    if not source.exists():
        raise BackupError(f"{source}: the SQLite database does not exist")

    def write(partial: Path) -> None:
        partial.unlink(missing_ok=True)
        # SQLite's online backup API copies a consistent state while writers continue.
        with contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as live, \
                contextlib.closing(sqlite3.connect(partial)) as copy:
            live.backup(copy)
        info = source.stat()
        os.chown(partial, info.st_uid, info.st_gid)
        partial.chmod(info.st_mode & 0o777)

    _replace_atomically(target, write)
    log(f"dumped SQLite database {source}")


def restore_databases(config: Config) -> None:
    kind = config.database["kind"]
    if kind == "postgresql":
        for entry in config.database["databases"]:
            _restore_postgresql(config, entry["name"], entry["owner"])
    else:
        for index, file in enumerate(config.database["files"]):
            _restore_sqlite(config.dump_dir / _sqlite_dump_name(index, file), Path(file))


def _restore_postgresql(config: Config, name: str, owner: str) -> None:
    dump = config.dump_dir / f"{name}.pgdump"
    if not dump.exists():
        raise BackupError(f"{dump}: the snapshot holds no dump of database {name}")
    run(_pg(config, "dropdb", "--if-exists", name))
    run(_pg(config, "createdb", "--owner", owner, name))
    # As the superuser: objects get the owners they had; --single-transaction: all or nothing.
    with dump.open("rb") as stream:
        _pg_restore(config, name, stream)
    log(f"restored PostgreSQL database {name}")


def _pg_restore(config: Config, name: str, stream: IO[bytes]) -> None:
    cmd = _pg(config, "pg_restore", "--single-transaction", "--exit-on-error", "--dbname", name)
    result = subprocess.run(cmd, stdin=stream, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_restore of {name} failed (exit {result.returncode})")


def _restore_sqlite(dump: Path, target: Path) -> None:
    if not dump.exists():
        raise BackupError(f"{dump}: the snapshot holds no dump of {target}")
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(dump, target)
    info = dump.stat()
    os.chown(target, info.st_uid, info.st_gid)
    log(f"restored SQLite database {target}")


# --- backup --------------------------------------------------------------------------------


def ensure_repository() -> None:
    """Create the repository on first use; a wrong password fails here, loudly."""
    probe = subprocess.run(restic("cat", "config"), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, check=False)
    if probe.returncode == 0:
        return
    if "wrong password" in probe.stderr or "no key found" in probe.stderr:
        raise BackupError("the repository exists but the password does not open it")
    # restic's words for a location without a repository (local and sftp backends alike;
    # restic >= 0.17 also exits 10 for it); anything else (no network, SSH refused) must not
    # end in an attempt to create one.
    missing = probe.returncode == 10 or "Is there a repository at" in probe.stderr
    if not missing:
        last = (probe.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise BackupError(f"cannot open the repository: {last}")
    log("no repository found: initializing it")
    run(restic("init"))


def backup(config: Config) -> None:
    with exclusive(config.lock_file):
        ensure_repository()
        # A backup killed earlier left its lock; this removes only locks of dead processes.
        run(restic("unlock"), quiet=True)
        dump_databases(config)
        excludes = [f"--exclude={pattern}" for pattern in _backup_excludes(config)]
        snapshot = _backup_snapshot(
            restic("backup", "--json", "--tag", TAG, "--host", HOST_TAG, *excludes,
                   *config.paths, str(config.dump_dir)))
        _forget(config)
        _write_status(config, snapshot)
        log(f"snapshot {snapshot} saved")


def _backup_snapshot(cmd: list[str]) -> str:
    """Run `restic backup --json`; the id of the snapshot its summary line reports."""
    result = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"restic backup failed (exit {result.returncode})")
    for line in reversed(result.stdout.splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            message = json.loads(line)
            if isinstance(message, dict) and message.get("message_type") == "summary":
                return str(message["snapshot_id"])[:8]
    raise BackupError("restic backup reported no snapshot")


def _backup_excludes(config: Config) -> list[str]:
    # The live SQLite files are saved through their dumps; a copy of a file in use is not.
    live = []
    if config.database["kind"] == "sqlite":
        for file in config.database["files"]:
            live += [file, f"{file}-wal", f"{file}-shm", f"{file}-journal"]
    return [*config.exclude, *live]


def _forget(config: Config) -> None:
    keep = [f"--keep-{period}={count}" for period, count in sorted(config.keep.items())
            if count > 0]
    run(restic("forget", "--tag", TAG, "--host", HOST_TAG, *keep, "--prune"))


def _snapshots() -> list[dict[str, Any]]:
    result = subprocess.run(restic("snapshots", "--json", "--tag", TAG, "--host", HOST_TAG),
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BackupError(f"cannot list the snapshots (restic exit {result.returncode})")
    snapshots: list[dict[str, Any]] = json.loads(result.stdout or "[]") or []
    return sorted(snapshots, key=lambda s: str(s["time"]))


def _write_status(config: Config, snapshot: str) -> None:
    status = {"lastSuccess": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "snapshot": snapshot}
    config.status_file.parent.mkdir(parents=True, exist_ok=True)
    _replace_atomically(config.status_file, lambda path: path.write_text(json.dumps(status) + "\n"))


# --- restore -------------------------------------------------------------------------------


def restore(config: Config, snapshot: str) -> None:
    with exclusive(config.lock_file):
        snapshot_id = _resolve(snapshot)
        log(f"restoring snapshot {snapshot_id}: stopping {' '.join(config.stop_units) or '-'}")
        _systemctl("stop", config.stop_units)
        for path in [*config.paths, str(config.dump_dir)]:
            _empty(Path(path))
        # restic restores absolute paths below the target: "/" puts every file back in place.
        includes = [f"--include={path}" for path in [*config.paths, str(config.dump_dir)]]
        run(restic("restore", snapshot_id, "--target", "/", *includes))
        restore_databases(config)
        _systemctl("start", config.start_units)
        log(f"snapshot {snapshot_id} restored")


def _resolve(snapshot: str) -> str:
    """The snapshot's id, checked before anything on the host is touched."""
    snapshots = _snapshots()
    if not snapshots:
        raise BackupError("the repository holds no snapshot of this site: nothing to restore")
    if snapshot == "latest":
        return str(snapshots[-1]["id"])
    for entry in snapshots:
        if str(entry["id"]).startswith(snapshot):
            return str(entry["id"])
    raise BackupError(f"no snapshot {snapshot!r} (list them with: restic-site snapshots)")


def _empty(directory: Path) -> None:
    """Remove a directory's contents, keeping the directory (it may be a mount point)."""
    if not directory.exists():
        directory.mkdir(parents=True)
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _systemctl(verb: str, units: tuple[str, ...]) -> None:
    if units:
        run(["systemctl", verb, *units])


# --- entry point ---------------------------------------------------------------------------


def main(args: list[str]) -> int:
    """`backup` (the default) or `restore [SNAPSHOT]`; 0 on success, 1 with one line if not."""
    try:
        config = Config.load(Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)))
        if args[:1] == ["restore"] and len(args) <= 2:
            restore(config, args[1] if len(args) == 2 else "latest")
        elif args in ([], ["backup"]):
            backup(config)
        else:
            raise BackupError("usage: mailman-site-backup | mailman-site-restore [SNAPSHOT]")
    except BackupError as error:
        print(f"mailman-site-backup: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
