"""Fixtures: every test that takes ``backend`` runs on SQLite and on PostgreSQL.

Each test session creates its own fresh databases (an SQLite file in a temp
folder, a PostgreSQL database with a random name), builds them with the real
migrations, and drops them at the end. Tests stay isolated by creating their
own accounts: all API data is scoped to an account and environment.

PostgreSQL is found at ``OPENIMPACT_TEST_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``). Without one, PostgreSQL
tests are skipped with the reason, except under CI (``CI=true``), where a
missing PostgreSQL is a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from openimpact.app import create_app
from openimpact.config import Settings, driver_url
from openimpact.db import Database
from openimpact.migrate import prepare_database
from tests.factories import Api

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENIMPACT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
BACKENDS = ["sqlite", "postgresql"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--thorough",
        action="store_true",
        help="tests/reliability: fuzz and stress far longer (same as OPENIMPACT_FUZZ_THOROUGH=1)",
    )


def pytest_configure(config: pytest.Config) -> None:
    # Before collection: the fuzz tests size themselves when they are built.
    if config.getoption("--thorough"):
        os.environ["OPENIMPACT_FUZZ_THOROUGH"] = "1"


def _postgres_problem() -> str | None:
    try:
        engine = create_engine(driver_url(POSTGRES_ADMIN_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"


@pytest.fixture(scope="session")
def postgres_server() -> str:
    problem = _postgres_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires PostgreSQL: {problem}")
        pytest.skip(problem)
    return POSTGRES_ADMIN_URL


def _create_postgres_database(admin_url: str) -> tuple[str, str]:
    name = f"openimpact_test_{secrets.token_hex(4)}"
    engine = create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    base = admin_url.rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def _drop_postgres_database(admin_url: str, name: str) -> None:
    engine = create_engine(driver_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@dataclass
class TestDatabase:
    __test__ = False  # a fixture value, not a test class

    backend: str
    url: str  # as a user would set DATABASE_URL

    def settings(self, **overrides: object) -> Settings:
        # No in-process worker: tests drive it explicitly (tests/test_worker.py),
        # so nothing changes rows behind a test's back.
        values: dict[str, object] = {
            "database_url": self.url,
            "rate_limit": "off",
            "background_worker": False,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> TestDatabase:
    path = tmp_path_factory.mktemp("sqlite") / "openimpact.db"
    url = f"sqlite:///{path}"
    prepare_database(url)
    return TestDatabase("sqlite", url)


@pytest.fixture(scope="session")
def postgresql_database(postgres_server: str) -> Iterator[TestDatabase]:
    name, url = _create_postgres_database(postgres_server)
    try:
        prepare_database(driver_url(url))
        yield TestDatabase("postgresql", url)
    finally:
        _drop_postgres_database(postgres_server, name)


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest) -> TestDatabase:
    """The test runs once per backend."""
    return request.getfixturevalue(f"{request.param}_database")


@pytest.fixture(params=BACKENDS)
def own_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A fresh database of the test's own, once per backend, removed after:
    for tests that count what the database read, so that no other test's
    rows are counted, or that need a database no ANALYZE has seen."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'own.db'}"
        prepare_database(url)
        database = Database(url)
        yield database
        database.dispose()
        return
    server = request.getfixturevalue("postgres_server")
    name, raw = _create_postgres_database(server)
    try:
        prepare_database(driver_url(raw))
        database = Database(driver_url(raw))
        yield database
        database.dispose()
    finally:
        _drop_postgres_database(server, name)


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    return database.settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


@pytest.fixture
def tmp_data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
