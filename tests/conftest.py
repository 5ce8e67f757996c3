"""Shared test configuration. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from components import nixpkgs_pin

REPO = Path(__file__).resolve().parents[1]
# Mailman core started without -C writes a var/ (SQLite database, logs) into its working
# directory; a test that does so from the checkout would leave it there to be committed.
STRAY_OUTPUT = ("var",)


@pytest.fixture(scope="session", autouse=True)
def _tests_leave_no_files_in_the_checkout() -> Iterator[None]:
    before = {name for name in STRAY_OUTPUT if (REPO / name).exists()}
    yield
    created = [name for name in STRAY_OUTPUT if (REPO / name).exists() and name not in before]
    if created:
        pytest.fail(f"the test run created {', '.join(created)} in the checkout ({REPO})")


@pytest.fixture
def pin_nixpkgs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Replace components/nixpkgs-pin.json for one test: `pin_nixpkgs(branch, rev)`."""
    def pin(branch: str = "nixos-26.05", rev: str = "1" * 40) -> nixpkgs_pin.NixpkgsPin:
        new = nixpkgs_pin.NixpkgsPin(
            branch=branch,
            rev=rev,
            url=nixpkgs_pin.ARCHIVE_URL.format(rev=rev),
            sha256="sha256-" + "A" * 43 + "=",
        )
        path = tmp_path / "nixpkgs-pin.json"
        path.write_text(nixpkgs_pin.render_pin(new), encoding="utf-8")
        monkeypatch.setattr(nixpkgs_pin, "PIN_FILE", path)
        return new

    return pin
