"""Fixtures for the reconcile tests: the real Mailman environment and a running site.

The environment build and the servers live in mailman_fixture.py, shared with
benchmarks/reconcile.py. Without postmap/sassc the Mailman tests skip locally and fail
under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mailman_fixture import MailmanEnv, MailmanSite, MailmanUnavailableError


@pytest.fixture(scope="session")
def mailman_env() -> MailmanEnv:
    try:
        return MailmanEnv.ensure()
    except MailmanUnavailableError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Mailman test environment unavailable on CI: {error}")
        pytest.skip(f"Mailman test environment unavailable: {error}")


@pytest.fixture(scope="module")
def mailman_site(mailman_env: MailmanEnv, tmp_path_factory: pytest.TempPathFactory,
                 ) -> Iterator[MailmanSite]:
    """A freshly started, empty Mailman core + mailman-web, stopped after the module."""
    site = MailmanSite(env=mailman_env, directory=tmp_path_factory.mktemp("mailman-site"))
    try:
        site.start()
        yield site
    finally:
        site.stop()


@pytest.fixture
def configured_site(mailman_env: MailmanEnv, tmp_path: Path) -> MailmanSite:
    """A site whose configuration and web database exist but whose servers never start."""
    site = MailmanSite(env=mailman_env, directory=tmp_path)
    site.write_config()
    return site
