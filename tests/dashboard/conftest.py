"""Fixtures of the dashboard's route tests: cheap Argon2, and one running app
per backend and settings shared by a module's tests (tests/dashboard/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from openimpact.config import Settings
from tests.dashboard.helpers import Apps, cheap_argon2


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


@pytest.fixture(scope="module")
def apps() -> Iterator[Apps]:
    running = Apps()
    yield running
    running.close()


@pytest.fixture
def client(settings: Settings, apps: Apps) -> TestClient:
    """The app of the test's backend and settings, shared within this module."""
    return apps.client(settings)
