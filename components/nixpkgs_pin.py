"""The exact nixpkgs every build uses: one revision of a release branch and its content hash.

`PIN_FILE` (components/nixpkgs-pin.json) is the one definition. The program copies it verbatim
into the deployment document (key `nixpkgs`), so a bump is a changed line in `pulumi preview
--diff` and re-runs the switch; the host builds with exactly that tarball
(nixos/nixpkgs.nix, through components/scripts/switch-with-rollback.sh), and the VM test and any
local evaluation read the same file (nixos/tests/mailman-site.nix). tools/bump_nixpkgs.py writes
it; nobody needs Nix to deploy it.

`sha256` is the NAR hash (SRI form) of the unpacked tarball: what `builtins.fetchTarball` checks
(its `sha256` argument) and what a flake.lock records as `narHash` for a github input.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PIN_FILE = Path(__file__).with_name("nixpkgs-pin.json")
ARCHIVE_URL = "https://github.com/NixOS/nixpkgs/archive/{rev}.tar.gz"
BRANCH = re.compile(r"^nixos-[0-9]{2}\.(05|11)$")
REV = re.compile(r"^[0-9a-f]{40}$")
# SRI: "sha256-" and the base64 of 32 bytes (43 characters and one '=').
SRI_SHA256 = re.compile(r"^sha256-[A-Za-z0-9+/]{43}=$")
KEYS = ("branch", "rev", "url", "sha256")


class PinError(ValueError):
    """One line naming the pin file, the field and the expected form."""


@dataclass(frozen=True)
class NixpkgsPin:
    branch: str
    """The release branch the revision was taken from, e.g. nixos-26.05 (= `nixosRelease`)."""
    rev: str
    """The nixpkgs commit, 40 hex digits."""
    url: str
    """GitHub's tarball of that commit."""
    sha256: str
    """NAR hash of the unpacked tarball, SRI form."""

    @property
    def version(self) -> str:
        """The NixOS version of the branch, e.g. 26.05 (nixpkgs' lib.trivial.release)."""
        return self.branch.removeprefix("nixos-")

    def as_document(self) -> dict[str, str]:
        """The `nixpkgs` value of the deployment document."""
        return {key: getattr(self, key) for key in KEYS}


def parse_pin(data: object, where: str) -> NixpkgsPin:
    """Check a decoded pin; `where` names its file in the error line."""

    def bad(field: str, expected: str) -> PinError:
        return PinError(f"{where}: {field}: expected {expected}")

    if not isinstance(data, dict):
        raise bad("the file", "a JSON object with branch, rev, url, sha256")
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise bad(unknown[0], f"no such key (known: {', '.join(KEYS)})")
    for key in KEYS:
        if not isinstance(data.get(key), str):
            raise bad(key, "a string (the key is required)")
    if not BRANCH.match(data["branch"]):
        raise bad("branch", "a NixOS release branch such as nixos-26.05")
    if not REV.match(data["rev"]):
        raise bad("rev", "a full nixpkgs commit id (40 lower-case hex digits)")
    if data["url"] != ARCHIVE_URL.format(rev=data["rev"]):
        raise bad("url", ARCHIVE_URL.format(rev=data["rev"]))
    if not SRI_SHA256.match(data["sha256"]):
        raise bad("sha256", "the NAR hash of the unpacked tarball as sha256-<base64> (SRI)")
    return NixpkgsPin(**{key: data[key] for key in KEYS})


def load_pin(path: Path | None = None) -> NixpkgsPin:
    """The committed pin (PIN_FILE unless `path`), checked; PinError on a bad file."""
    path = path or PIN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise PinError(f"{path.name}: expected readable JSON ({error})") from None
    return parse_pin(data, path.name)


def render_pin(pin: NixpkgsPin) -> str:
    """The pin file's text: stable key order, one value per line."""
    return json.dumps(pin.as_document(), indent=2) + "\n"
