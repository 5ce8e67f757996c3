#!/usr/bin/env python3
"""Move the nixpkgs pin (components/nixpkgs-pin.json) to the newest revision of its branch.

    python tools/bump_nixpkgs.py                       # newest commit of the pin's branch
    python tools/bump_nixpkgs.py --branch nixos-26.11  # a release upgrade (also set nixosRelease)
    python tools/bump_nixpkgs.py --dry-run             # print what would change, write nothing
    python tools/bump_nixpkgs.py comment --old-versions old.json --new-versions new.json ...

Needs only git and Python (no Nix): the hash is computed here, the way Nix computes it. Steps:

1. `git ls-remote <remote> refs/heads/<branch>`: the branch's newest commit. NixOS's channel
   scripts advance the `nixos-*` branches only to commits Hydra built and tested, so this is the
   channel's revision.
2. GitHub's tarball of that commit is downloaded and unpacked as Nix's fetchTarball does (its
   single top directory is the tree), and the sha256 of the tree's NAR serialisation computed:
   what `builtins.fetchTarball`'s `sha256` checks, what `nix-hash --type sha256` prints and what
   a flake.lock records as `narHash`; written in SRI form (sha256-<base64>). The tests compare
   it with `nix-hash` and let the real fetchTarball of nixos/nixpkgs.nix accept it.
3. The tree's `.version` (nixpkgs' `lib.trivial.release` reads it) must be the branch's release:
   a revision of another release is refused.
4. The pin file is rewritten (unless --dry-run). With --github-output, `changed`, `old_rev`,
   `new_rev`, `branch` are appended there for the workflow.

`comment` renders the pull request text from two package-version documents (the output of
`nix-instantiate --eval --strict --json tools/package-versions.nix --arg nixpkgs <source>` for the
old and the new revision). Exit 0 on success, 2 with one line on stderr otherwise.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from components.nixpkgs_pin import (
    ARCHIVE_URL,
    BRANCH,
    PIN_FILE,
    NixpkgsPin,
    PinError,
    load_pin,
    render_pin,
)

NIXPKGS_REMOTE = "https://github.com/NixOS/nixpkgs"
# Nix's own base32 alphabet (no e, o, u, t): src/libutil/hash.cc `base32Chars`.
NIX_BASE32 = "0123456789abcdfghijklmnpqrsvwxyz"
SHA256_BYTES = 32
HTTP_TIMEOUT_SECONDS = 300
# The packages of ours a bump reports, in the order of the comment's table.
PACKAGES = ("postfix", "nginx", "mailman", "postgresql", "openssl", "openssh", "kernel")


class BumpError(Exception):
    """One line for stderr."""


def nix_base32_to_bytes(text: str, size: int = SHA256_BYTES) -> bytes:
    """Decode Nix's base32 (src/libutil/hash.cc, `parseHash`'s base32 branch): the last character
    carries the lowest 5 bits, bytes are filled little-end first."""
    if len(text) != (size * 8 - 1) // 5 + 1:
        raise BumpError(f"not a Nix base32 sha256: {text!r}")
    out = bytearray(size)
    for n, char in enumerate(reversed(text)):
        digit = NIX_BASE32.find(char)
        if digit < 0:
            raise BumpError(f"not a Nix base32 sha256: {text!r}")
        bit = n * 5
        index, shift = divmod(bit, 8)
        out[index] |= (digit << shift) & 0xFF
        carry = digit >> (8 - shift)
        if index + 1 < size:
            out[index + 1] |= carry
        elif carry:
            raise BumpError(f"not a Nix base32 sha256: {text!r}")
    return bytes(out)


def sri_sha256(nix_base32: str) -> str:
    return "sha256-" + base64.b64encode(nix_base32_to_bytes(nix_base32)).decode()


def _run(argv: Sequence[str]) -> str:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise BumpError(f"{argv[0]} is not installed") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise BumpError(f"{argv[0]} failed: {last}")
    return result.stdout


def newest_revision(remote: str, branch: str) -> str:
    ref = f"refs/heads/{branch}"
    for line in _run(["git", "ls-remote", remote, ref]).splitlines():
        rev, _, name = line.partition("\t")
        if name == ref:
            return rev
    raise BumpError(f"{remote} has no branch {branch}")


class _Sink(Protocol):
    def write(self, data: bytes, /) -> object: ...


def _nar_string(out: _Sink, data: bytes) -> None:
    out.write(struct.pack("<Q", len(data)))
    out.write(data)
    out.write(b"\0" * (-len(data) % 8))


def _nar_node(out: _Sink, path: Path) -> None:
    """Nix's NAR serialisation (src/libutil/archive.cc `dumpPath`): directories with their
    entries sorted by name, regular files with their executable bit (S_IXUSR) and contents,
    symlinks with their target; nothing else (no times, owners, other permissions)."""
    _nar_string(out, b"(")
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        for token in (b"type", b"symlink", b"target"):
            _nar_string(out, token)
        _nar_string(out, os.fsencode(str(path.readlink())))
    elif stat.S_ISREG(mode):
        _nar_string(out, b"type")
        _nar_string(out, b"regular")
        if mode & stat.S_IXUSR:
            _nar_string(out, b"executable")
            _nar_string(out, b"")
        _nar_string(out, b"contents")
        _nar_string(out, path.read_bytes())
    elif stat.S_ISDIR(mode):
        _nar_string(out, b"type")
        _nar_string(out, b"directory")
        for child in sorted(path.iterdir(), key=lambda entry: os.fsencode(entry.name)):
            for token in (b"entry", b"(", b"name"):
                _nar_string(out, token)
            _nar_string(out, os.fsencode(child.name))
            _nar_string(out, b"node")
            _nar_node(out, child)
            _nar_string(out, b")")
    else:
        raise BumpError(f"{path}: not a file, directory or symlink")
    _nar_string(out, b")")


class _Sha256Sink:
    """A write-only stream that hashes what it gets."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()

    def write(self, data: bytes, /) -> int:
        self.digest.update(data)
        return len(data)


def nar_sha256(path: Path) -> str:
    """The SRI sha256 of `path`'s NAR serialisation: what `nix-hash --type sha256` computes and
    `builtins.fetchTarball` checks."""
    sink = _Sha256Sink()
    _nar_string(sink, b"nix-archive-1")
    _nar_node(sink, path)
    return "sha256-" + base64.b64encode(sink.digest.digest()).decode()


def unpack(url: str, into: Path) -> Path:
    """Download the tarball and unpack it the way Nix's fetchTarball does: a single top-level
    directory (GitHub's `nixpkgs-<rev>/`) is the result itself."""
    archive = into / "source.tar.gz"
    try:
        with (
            urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_SECONDS) as response,  # noqa: S310
            archive.open("wb") as out,
        ):
            shutil.copyfileobj(response, out)
    except (OSError, ValueError) as error:
        raise BumpError(f"could not download {url}: {error}") from None
    tree = into / "unpacked"
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tree, filter="tar")
    except (tarfile.TarError, OSError) as error:
        raise BumpError(f"{url}: not a readable tarball ({error})") from None
    entries = list(tree.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return tree


def prefetch(url: str, workdir: Path) -> tuple[str, Path]:
    """The SRI NAR hash of the unpacked tarball at `url`, and where it was unpacked."""
    source = unpack(url, workdir)
    return nar_sha256(source), source


def bump(
    *, pin_file: Path, branch: str | None, remote: str, fetch_url: str, dry_run: bool
) -> tuple[NixpkgsPin, NixpkgsPin]:
    """(old pin, new pin); the file is rewritten unless `dry_run` or nothing changed."""
    try:
        old = load_pin(pin_file)
    except PinError as error:
        raise BumpError(str(error)) from None
    branch = branch or old.branch
    if not BRANCH.match(branch):
        raise BumpError(f"--branch: {branch!r} is not a NixOS release branch such as nixos-26.05")
    rev = newest_revision(remote, branch)
    if rev == old.rev and branch == old.branch:
        return old, old
    with tempfile.TemporaryDirectory(prefix="nixpkgs-bump-") as workdir:
        sha256, source = prefetch(fetch_url.format(rev=rev), Path(workdir))
        version_file = source / ".version"
        release = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else ""
    new = NixpkgsPin(branch, rev, ARCHIVE_URL.format(rev=rev), sha256)
    if release != new.version:
        raise BumpError(
            f"{rev} of {branch} is nixpkgs release {release or '(no .version)'}, not {new.version}"
        )
    if not dry_run:
        pin_file.write_text(render_pin(new), encoding="utf-8")
    return old, new


def versions_table(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    rows = ["| package | before | after |", "|---|---|---|"]
    for name in PACKAGES:
        before, after = old.get(name, "?"), new.get(name, "?")
        changed = before != after
        mark = "**" if changed else ""
        rows.append(f"| {name} | {before} | {mark}{after}{mark} |")
    return "\n".join(rows) + "\n"


def comment(
    old_pin: NixpkgsPin, new_pin: NixpkgsPin, old: Mapping[str, str], new: Mapping[str, str]
) -> str:
    """The pull request text: the revisions, compare link, and the version table."""
    changed = [name for name in PACKAGES if old.get(name) != new.get(name)]
    compare = f"{NIXPKGS_REMOTE}/compare/{old_pin.rev}...{new_pin.rev}"
    lines = [
        f"nixpkgs `{old_pin.branch}` `{old_pin.rev[:12]}` → `{new_pin.branch}` "
        f"`{new_pin.rev[:12]}` ([compare]({compare}))",
        "",
        f"Changed: {', '.join(changed) if changed else 'none of our packages'}."
        + (" The kernel changes: the switch reboots the host." if "kernel" in changed else ""),
        "",
        versions_table(old, new),
        "After merge, `deploy` applies it to staging, then (approved) to production; a failed "
        "build or health check rolls back to the previous generation.",
    ]
    return "\n".join(lines) + "\n"


def _read_versions(path: Path) -> dict[str, str]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise BumpError(f"{path}: expected a JSON object of package versions")
    return {str(key): str(value) for key, value in data.items()}


def _pin_from(text: str, where: str) -> NixpkgsPin:
    try:
        from components.nixpkgs_pin import parse_pin  # noqa: PLC0415 (only this subcommand)

        return parse_pin(json.loads(text), where)
    except (PinError, json.JSONDecodeError) as error:
        raise BumpError(f"{where}: {error}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    parser.add_argument("--pin", type=Path, default=PIN_FILE, help="the pin file to update")
    parser.add_argument("--branch", help="release branch (default: the pin's)")
    parser.add_argument("--remote", default=NIXPKGS_REMOTE, help="git remote of nixpkgs")
    parser.add_argument(
        "--fetch-url", default=ARCHIVE_URL, help="tarball URL template with {rev} (tests: file://)"
    )
    parser.add_argument("--dry-run", action="store_true", help="write nothing")
    parser.add_argument("--github-output", type=Path, help="append step outputs to this file")
    text = sub.add_parser("comment", help="render the pull request text")
    text.add_argument("--old-pin", type=Path, required=True)
    text.add_argument("--new-pin", type=Path, required=True)
    text.add_argument("--old-versions", type=Path, required=True)
    text.add_argument("--new-versions", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "comment":
            old_pin = _pin_from(args.old_pin.read_text(encoding="utf-8"), str(args.old_pin))
            new_pin = _pin_from(args.new_pin.read_text(encoding="utf-8"), str(args.new_pin))
            sys.stdout.write(
                comment(
                    old_pin,
                    new_pin,
                    _read_versions(args.old_versions),
                    _read_versions(args.new_versions),
                )
            )
            return 0
        old, new = bump(
            pin_file=args.pin,
            branch=args.branch,
            remote=args.remote,
            fetch_url=args.fetch_url,
            dry_run=args.dry_run,
        )
    except (BumpError, OSError) as error:
        print(f"bump_nixpkgs: {error}", file=sys.stderr)
        return 2
    changed = new != old
    if changed:
        verb = "would move" if args.dry_run else "moved"
        print(f"nixpkgs pin {verb}: {old.branch} {old.rev} -> {new.branch} {new.rev}")
    else:
        print(f"nixpkgs pin is current: {old.branch} {old.rev}")
    if args.github_output:
        with args.github_output.open("a", encoding="utf-8") as out:
            out.write(f"changed={'true' if changed else 'false'}\n")
            out.write(f"old_rev={old.rev}\nnew_rev={new.rev}\nbranch={new.branch}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
