"""Settings refuse values that would break a promise of the API."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from openimpact.config import Settings


def test_idempotency_keys_are_kept_at_least_a_day() -> None:
    assert Settings(idempotency_ttl_hours=24).idempotency_ttl_hours == 24
    with pytest.raises(ValidationError, match="idempotency_ttl_hours"):
        Settings(idempotency_ttl_hours=23)


@pytest.mark.parametrize("rate", ["20/second", "1000/minute", "5/hour", "off", "OFF"])
def test_rate_limit_forms(rate: str) -> None:
    assert Settings(rate_limit=rate).rate_limit == rate.lower()


@pytest.mark.parametrize("rate", ["fast", "10", "10/fortnight", "/second"])
def test_bad_rate_limit_is_refused(rate: str) -> None:
    with pytest.raises(ValidationError, match="OPENIMPACT_RATE_LIMIT"):
        Settings(rate_limit=rate)


def test_database_urls_get_the_psycopg_driver() -> None:
    for url in ("postgres://u@h/db", "postgresql://u@h/db"):
        assert Settings(database_url=url).sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert Settings(database_url=None, data_dir="x").sqlalchemy_url.startswith("sqlite:///")


def test_fastapis_opentelemetry_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    import inspect

    from fastapi import FastAPI

    from openimpact.app import create_app

    monkeypatch.setenv("OPENIMPACT_OPENTELEMETRY", "true")
    assert Settings().opentelemetry is True
    off, on = create_app(Settings(opentelemetry=False)), create_app(Settings(opentelemetry=True))
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        assert not any(off._telemetry[part] for part in ("tracing", "metrics", "logs"))  # type: ignore[attr-defined]
        assert all(on._telemetry[part] for part in ("tracing", "metrics", "logs"))  # type: ignore[attr-defined]
    else:  # a FastAPI without it: nothing to turn off, and the app starts all the same
        assert not hasattr(off, "_telemetry") and not hasattr(on, "_telemetry")


def test_a_running_server_collects_garbage_cycles_less_often_and_restores_what_it_found(
    sqlite_database: object,
) -> None:
    import gc

    from fastapi.testclient import TestClient

    from openimpact.app import GC_YOUNG_OBJECTS, create_app

    before = gc.get_threshold()
    with TestClient(create_app(sqlite_database.settings())):  # type: ignore[attr-defined]
        assert gc.get_threshold() == (GC_YOUNG_OBJECTS, *before[1:])
    assert gc.get_threshold() == before
