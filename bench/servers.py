"""Servers under test, each a uvicorn process with the same settings, and the
fresh databases they run on."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from openimpact.accounts.service import create_account
from openimpact.config import driver_url
from openimpact.db import Database
from openimpact.migrate import prepare_database

POSTGRES_ADMIN_URL = os.environ.get(
    "OPENIMPACT_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
SERVER_FACTORY = "openimpact.app:create_app"
CEILING_FACTORY = "bench.ceiling:create_app"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    base_url: str
    log_path: Path
    pid: int = 0  # the server's (the supervisor's, with more than one worker)


@contextlib.contextmanager
def serve(factory: str, workers: int, env: dict[str, str], log_dir: Path) -> Iterator[Running]:
    """uvicorn with uvloop and httptools, no access log, ``workers`` processes
    as ``openimpact serve`` runs them (openimpact/serving.py: each worker
    listens on a socket of its own).

    Both the ceiling and the server under test are started by this one
    function, so they differ only in the application.
    """
    port = _free_port()
    log_path = log_dir / f"{factory.split(':')[0].replace('.', '_')}-{workers}w-{port}.log"
    root = Path(__file__).resolve().parent.parent
    cmd = [
        sys.executable, "-m", "openimpact.serving", factory, "--factory",
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "info", "--no-server-header",
    ]  # fmt: skip
    full_env = {**os.environ, **env, "PYTHONPATH": str(root)}
    with open(log_path, "w") as log:
        # A session of its own, so stopping it reaches the supervisor
        # and its workers, and nothing else.
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        base_url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, base_url, log_path, workers)
        yield Running(base_url, log_path, proc.pid)
    finally:
        _stop(proc)


@contextlib.contextmanager
def process(
    cmd: list[str], env: dict[str, str], log_path: Path, ready: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Another process of the bench (the webhook receiver, ``openimpact
    worker``): started in a session of its own like the servers, so stopping
    it reaches it and its children and nothing else; with ``ready``, not
    handed over before its log says so."""
    root = Path(__file__).resolve().parent.parent
    full_env = {**os.environ, **env, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        if ready is not None:
            deadline = time.monotonic() + 60
            while ready not in log_path.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{' '.join(cmd[1:4])} did not start:\n{log_path.read_text()[-3000:]}"
                    )
                time.sleep(0.05)
        yield proc
    finally:
        _stop(proc)


def _wait_ready(proc: subprocess.Popen[bytes], base_url: str, log_path: Path, workers: int) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text()[-3000:]}")
        # Every worker says so once its lifespan (migrations, secrets) is done.
        if log_path.read_text().count("Application startup complete") >= workers:
            try:
                if httpx.get(base_url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after 90 s:\n{log_path.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def postgres_problem() -> str | None:
    try:
        engine = create_engine(driver_url(POSTGRES_ADMIN_URL), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means: no PostgreSQL here
        return f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {type(exc).__name__}"


@dataclass
class FreshDatabase:
    backend: str
    url: str  # as a user sets DATABASE_URL

    @property
    def sqlalchemy_url(self) -> str:
        return driver_url(self.url)

    def server_env(self) -> dict[str, str]:
        return {"DATABASE_URL": self.url, "OPENIMPACT_RATE_LIMIT": "off"}

    def open(self) -> Database:
        return Database(self.sqlalchemy_url, pool_size=2)


@contextlib.contextmanager
def fresh_database(backend: str) -> Iterator[FreshDatabase]:
    """A new, migrated database, removed afterwards."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="openimpact-bench-") as tmp:
            db = FreshDatabase("sqlite", f"sqlite:///{Path(tmp) / 'openimpact.db'}")
            prepare_database(db.sqlalchemy_url)
            yield db
        return
    name = f"openimpact_bench_{secrets.token_hex(4)}"
    admin = create_engine(driver_url(POSTGRES_ADMIN_URL), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        db = FreshDatabase("postgresql", f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
        prepare_database(db.sqlalchemy_url)
        yield db
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def new_account(db: Database, label: str) -> tuple[int, str, str]:
    """(account id, user_id, production key) of a fresh account."""

    def create(session: object) -> tuple[int, str, str]:
        account, keys = create_account(
            session,  # type: ignore[arg-type]
            email=f"{label}-{secrets.token_hex(4)}@bench.example",
            name=f"Bench {label}",
        )
        return account.id, account.user_id, keys["production"].key

    return db.run_sync(create, write=True)
