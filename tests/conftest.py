"""Shared test configuration. Area-specific fixtures live in each tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
