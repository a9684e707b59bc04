"""Migrations: the schema they build is the schema the models describe, and
several processes may start on an empty database at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from openimpact.config import driver_url
from openimpact.models import Base
from tests.conftest import (
    _create_postgres_database,
    _drop_postgres_database,
)

_PREPARE = (
    "import sys; from openimpact.migrate import prepare_database; prepare_database(sys.argv[1])"
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    name, url = _create_postgres_database(server)
    try:
        yield driver_url(url)
    finally:
        _drop_postgres_database(server, name)


def test_concurrent_starts_on_an_empty_database(empty_database: str) -> None:
    processes = [
        subprocess.Popen([sys.executable, "-c", _PREPARE, empty_database], stderr=subprocess.PIPE)
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr.decode()
    engine = create_engine(empty_database)
    try:
        with engine.connect() as conn:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).all()
            assert len(versions) == 1
            projects = conn.execute(text("SELECT COUNT(*) FROM projects")).scalar_one()
            assert projects >= 8
        assert "impacts" in inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_migrations_match_the_models(empty_database: str) -> None:
    subprocess.run([sys.executable, "-c", _PREPARE, empty_database], check=True, timeout=120)
    engine = create_engine(empty_database)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert differences == []
