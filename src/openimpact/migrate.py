"""Run Alembic migrations, safely when several processes start at once.

The migrations ship inside the package (``openimpact/migrations``) so that an
installed server can upgrade its own database. Concurrent starters are
serialized: on PostgreSQL with an advisory lock, on SQLite with a lock file
beside the database.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from openimpact.db import make_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_PG_LOCK_ID = 0x0157_1A7C  # arbitrary, constant across releases


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.set_main_option("file_template", "%%(year)d_%%(month).2d_%%(day).2d_%%(rev)s_%%(slug)s")
    return cfg


@contextmanager
def _sqlite_lock(url: str) -> Iterator[None]:
    path = url.split("///", 1)[1] if "///" in url else ""
    if not path or path == ":memory:":
        yield
        return
    lock_path = Path(path + ".migrate.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _postgres_lock(url: str) -> Iterator[None]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_LOCK_ID})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_LOCK_ID})
                conn.commit()
    finally:
        engine.dispose()


def migration_lock(url: str) -> AbstractContextManager[None]:
    return _sqlite_lock(url) if url.startswith("sqlite") else _postgres_lock(url)


def prepare_database(url: str) -> None:
    """Upgrade the schema to head and load the shipped catalogue into an
    empty store; one process at a time."""
    from openimpact.db import Database
    from openimpact.projects.service import seed_if_empty

    with migration_lock(url):
        command.upgrade(alembic_config(url), "head")
        db = Database(url, pool_size=1)
        try:
            db.run_sync(seed_if_empty, write=True)
        finally:
            db.dispose()
