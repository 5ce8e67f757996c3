"""nixos/mailman_site_backup.py with the real restic and SQLite, without Mailman.

The whole-site drill on PostgreSQL is tests/reconcile/test_backup_drill.py; these are the
program's own rules: SQLite dumped consistently and put back with its owner and mode, the live
files kept out of the snapshot, retention applied, one run at a time, and every refusal one line
before anything is touched.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from nixos_support import NIXOS, require_tool

PROGRAM = NIXOS / "mailman_site_backup.py"


@pytest.fixture(scope="module")
def restic() -> str:
    return require_tool("restic")


class Site:
    """Two state directories with an SQLite database each, a dump dir and a local repository."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.core = root / "var-lib-mailman"
        self.web = root / "var-lib-mailman-web"
        for directory in (self.core / "data", self.web):
            directory.mkdir(parents=True)
        self.core_db = self.core / "data" / "mailman.db"
        self.web_db = self.web / "mailman-web.db"
        (self.web / "settings_local.json").write_text('{"SECRET_KEY": "k"}\n')
        (self.core / "locks").mkdir()
        (self.core / "locks" / "master.lck").write_text("stale\n")
        for path in (self.core_db, self.web_db):
            with sqlite3.connect(path) as db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE posts (id INTEGER PRIMARY KEY, body TEXT)")
                db.executemany("INSERT INTO posts (body) VALUES (?)", [("one",), ("two",)])
        self.web_db.chmod(0o640)
        self.password = root / "password"
        self.password.write_text("repository-password\n")
        self.config_file = root / "backup.json"
        self.write_config()

    def write_config(self, **changes: Any) -> None:
        config = {
            "paths": [str(self.core), str(self.web)],
            "exclude": [str(self.core / "locks")],
            "dumpDir": str(self.root / "dumps"),
            "database": {"kind": "sqlite", "files": [str(self.core_db), str(self.web_db)]},
            "keep": {"daily": 7, "weekly": 4, "monthly": 6},
            "stopUnits": [],
            "startUnits": [],
            "statusFile": str(self.root / "status.json"),
            "lockFile": str(self.root / "backup.lock"),
            **changes,
        }
        self.config_file.write_text(json.dumps(config))

    def env(self) -> dict[str, str]:
        return {**os.environ, "RESTIC_REPOSITORY": str(self.root / "repository"),
                "RESTIC_PASSWORD_FILE": str(self.password),
                "RESTIC_CACHE_DIR": str(self.root / "cache"),
                "MAILMAN_SITE_BACKUP_CONFIG": str(self.config_file)}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(PROGRAM), *args], env=self.env(),
                              capture_output=True, text=True, timeout=120, check=False)

    def restic(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["restic", *args], env=self.env(), capture_output=True, text=True,
                              timeout=60, check=False)

    def snapshots(self) -> list[dict[str, Any]]:
        done = self.restic("snapshots", "--json")
        assert done.returncode == 0, done.stderr
        result: list[dict[str, Any]] = json.loads(done.stdout)
        return result


def rows(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT body FROM posts ORDER BY id")]


@pytest.fixture
def site(tmp_path: Path, restic: str) -> Site:
    return Site(tmp_path)


def test_first_backup_initializes_the_repository_and_records_the_snapshot(site):
    done = site.run()
    assert done.returncode == 0, done.stderr
    [snapshot] = site.snapshots()
    assert snapshot["tags"] == ["mailman-site"]
    assert snapshot["hostname"] == "mailman-site"
    status = json.loads((site.root / "status.json").read_text())
    assert snapshot["id"].startswith(status["snapshot"])


def test_live_sqlite_files_and_lock_files_stay_out_dumps_go_in(site):
    assert site.run().returncode == 0
    listed = site.restic("ls", "latest").stdout.splitlines()
    assert str(site.web / "settings_local.json") in listed
    assert str(site.core_db) not in listed
    assert str(site.core_db) + "-wal" not in listed
    assert str(site.core / "locks" / "master.lck") not in listed
    dumps = [line for line in listed if line.startswith(str(site.root / "dumps") + "/")]
    assert len(dumps) == 2


def test_restore_puts_the_databases_back_with_owner_and_mode(site):
    with sqlite3.connect(site.web_db) as db:  # committed, still only in the WAL
        db.execute("INSERT INTO posts (body) VALUES ('three')")
    assert site.run().returncode == 0
    with sqlite3.connect(site.web_db) as db:
        db.execute("DELETE FROM posts")
    (site.web / "settings_local.json").unlink()
    (site.web / "stray").write_text("made after the backup\n")

    done = site.run("restore")

    assert done.returncode == 0, done.stderr
    assert not Path(str(site.web_db) + "-wal").exists()
    assert rows(site.web_db) == ["one", "two", "three"]
    assert rows(site.core_db) == ["one", "two"]
    assert oct(site.web_db.stat().st_mode & 0o777) == oct(0o640)
    assert (site.web / "settings_local.json").read_text() == '{"SECRET_KEY": "k"}\n'
    assert not (site.web / "stray").exists()


def test_retention_keeps_one_snapshot_per_day(site):
    site.write_config(keep={"daily": 1, "weekly": 0, "monthly": 0})
    for _ in range(3):
        assert site.run().returncode == 0
    assert len(site.snapshots()) == 1


def test_a_second_run_is_refused_while_one_holds_the_lock(site):
    with (site.root / "backup.lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = site.run()
    assert done.returncode == 1
    lock = site.root / "backup.lock"
    assert done.stderr == f"mailman-site-backup: another backup or restore holds {lock}\n"


def test_restore_without_any_snapshot_fails_before_touching_anything(site):
    assert site.restic("init").returncode == 0
    before = rows(site.web_db)
    done = site.run("restore")
    assert done.returncode == 1
    assert "holds no snapshot of this site: nothing to restore" in done.stderr
    assert rows(site.web_db) == before


def test_a_wrong_repository_password_is_named(site):
    assert site.run().returncode == 0
    site.password.write_text("another password\n")
    done = site.run()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "mailman-site-backup: the repository exists but the password does not open it")


def test_missing_database_file_is_one_line(site):
    site.core_db.unlink()
    done = site.run()
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"mailman-site-backup: {site.core_db}: the SQLite database does not exist")


@pytest.mark.parametrize("command", [(), ("restore",)])
def test_an_unknown_database_kind_is_refused_before_anything_runs(site, command):
    site.write_config(database={"kind": "mysql"})
    done = site.run(*command)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mailman-site-backup: database.kind: 'mysql' is not postgresql or sqlite"]
    assert not (site.root / "repository").exists()  # nothing created, nothing dumped
    assert not (site.root / "dumps").exists()


@pytest.mark.parametrize("args", [["restore", "a", "b"], ["frobnicate"]])
def test_bad_usage_is_one_line(site, args):
    done = site.run(*args)
    assert done.returncode == 1
    assert done.stderr == (
        "mailman-site-backup: usage: mailman-site-backup | mailman-site-restore [SNAPSHOT]\n")


def test_bad_configuration_names_the_file(site):
    site.config_file.write_text('{"paths": []}')
    done = site.run()
    assert done.returncode == 1
    assert done.stderr.startswith(f"mailman-site-backup: {site.config_file}: missing or bad key")


def test_an_unreachable_repository_is_not_initialized_but_named(site):
    env_repository = "sftp:backup-host.invalid:repository"
    done = subprocess.run([sys.executable, str(PROGRAM)],
                          env={**site.env(), "RESTIC_REPOSITORY": env_repository,
                               "PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mailman-site-backup: cannot open the repository: "), last
    assert "initializing" not in done.stdout
