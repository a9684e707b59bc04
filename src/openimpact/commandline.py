"""What every ``openimpact`` sub-command shares: a database at the latest
schema, and one transaction around the command's work (the same boundary as
a request: commit on success, roll back on error)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from openimpact.config import get_settings
from openimpact.db import Database
from openimpact.migrate import prepare_database

DEFAULT_BASE_URL = "http://127.0.0.1:8000"


def open_database() -> Database:
    url = get_settings().sqlalchemy_url
    prepare_database(url)
    return Database(url, pool_size=2)


def in_transaction(fn: Callable[..., Any], *args: Any) -> Any:
    db = open_database()
    try:
        return db.run_sync(fn, *args, write=True)
    finally:
        db.dispose()


def base_url(given: str | None) -> str:
    """The server's address for links a command prints: ``--base-url``, else
    OPENIMPACT_PUBLIC_URL, else the default local address."""
    return (given or get_settings().public_url or DEFAULT_BASE_URL).rstrip("/")
