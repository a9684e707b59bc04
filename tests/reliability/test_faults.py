"""Faults of what the server depends on, under traffic: PostgreSQL going
away, Redis dying and coming back, and the worker killed with SIGKILL in the
middle of lifecycle batches and schedule periods.

PostgreSQL's restart is played on the test's own database, so that other
databases of the server carry on: every connection to it is terminated and
new ones are refused for two seconds (what a client of a restarting server
sees), then allowed again.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from openimpact.config import driver_url
from openimpact.db import Database
from openimpact.impacts.batch import NewImpact
from openimpact.impacts.models import Impact
from openimpact.lifecycle.models import ImpactTransition
from openimpact.outbox.models import OutboxMessage
from openimpact.schedules.models import SchedulePeriod
from tests.conftest import TestDatabase
from tests.live import LiveServer, create_account, free_port, server_env
from tests.reliability.test_crash_safety import IMPACTS, Planned, _check_store


def _outage(database_url: str, seconds: float) -> None:
    """Terminate every connection to the database and refuse new ones for
    ``seconds``, as a restart of the server would."""
    url = driver_url(database_url)
    name = url.rsplit("/", 1)[1]
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false'))
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": name},
            )
            time.sleep(seconds)
            conn.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true'))
    finally:
        admin.dispose()


class Traffic:
    """Clients that send every planned POST until it is answered 200; a 503
    (or a dropped connection) is retried with the same Idempotency-Key."""

    def __init__(self, url: str, key: str, plan: list[Planned]) -> None:
        self.url, self.key = url, key
        self.todo = list(plan)
        self.lock = threading.Lock()
        self.statuses: Counter[int] = Counter()
        self.errors: list[str] = []
        self.answered = 0

    def _next(self) -> Planned | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def client(self, deadline: float) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while (planned := self._next()) is not None:
                if time.monotonic() > deadline:
                    self.errors.append("did not finish in time")
                    return
                try:
                    response = http.post(
                        f"/v1/{planned.endpoint}",
                        json=planned.body,
                        headers={"x-api-key": self.key, "Idempotency-Key": planned.key},
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.todo.append(planned)
                    continue
                with self.lock:
                    self.statuses[response.status_code] += 1
                if response.status_code == 503:
                    body = response.json()  # JSON, not a proxy's page
                    if body.get("type") != "unavailable" or "retry-after" not in response.headers:
                        self.errors.append(f"a 503 without its JSON or Retry-After: {body}")
                    time.sleep(0.05)
                    with self.lock:
                        self.todo.append(planned)
                    continue
                if response.status_code != 200:
                    self.errors.append(f"{response.status_code}: {response.text[:200]}")
                    continue
                with self.lock:
                    self.answered += 1
                    if planned.answer is None:
                        planned.answer = response.json()
                    else:
                        planned.replays.append(response.json())


def test_postgresql_going_away_under_load(postgresql_database: TestDatabase) -> None:
    """Requests in flight get a JSON 503 with Retry-After, the server recovers
    by itself, and nothing acknowledged is lost or doubled."""
    env = server_env(postgresql_database.url)
    account = create_account(env, f"outage-{os.getpid()}@example.com")
    key = account["production_key"]
    plan = [
        Planned(f"outage-{i}", "production", endpoint, {"amount": i + 1})
        for i, endpoint in enumerate(list(IMPACTS) * 60)
    ]
    server = LiveServer(env, workers=2).start()
    try:
        traffic = Traffic(server.url, key, plan)
        deadline = time.monotonic() + 120
        clients = [threading.Thread(target=traffic.client, args=(deadline,)) for _ in range(16)]
        for thread in clients:
            thread.start()
        while traffic.answered < len(plan) // 4:
            time.sleep(0.01)
        _outage(postgresql_database.url, 2.0)
        for thread in clients:
            thread.join(timeout=150)
        assert traffic.errors == []
        assert traffic.statuses[503] > 0, "the outage hit no request"
        assert set(traffic.statuses) <= {200, 503}, traffic.statuses
        with httpx.Client(base_url=server.url, timeout=30) as http:
            _check_store(http, key, plan)
    finally:
        server.stop()


# Redis ---------------------------------------------------------------------------------------


@pytest.fixture
def own_redis() -> Iterator[tuple[str, int]]:
    """A Redis of the test's own, on a free port, that the test may kill."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is needed under CI=true")
        pytest.skip("redis-server is not installed")
    port = free_port()
    yield binary, port


def _start_redis(binary: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def test_redis_dying_and_coming_back(database: TestDatabase, own_redis: tuple[str, int]) -> None:
    """The documented policy (docs/reliability.md, Rate limits): with the
    shared counter gone, requests go through unlimited, answered within the
    Redis timeout and never a 500; once Redis is back the limit holds again."""
    binary, port = own_redis
    redis = _start_redis(binary, port)
    env = server_env(database.url, OPENIMPACT_RATE_LIMIT="20/minute")
    env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    account = create_account(env, f"redis-{os.getpid()}-{port}@example.com")
    headers = {"x-api-key": account["production_key"]}
    server = LiveServer(env, workers=1).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            limited = [http.get("/v1/impact", headers=headers).status_code for _ in range(25)]
            assert limited.count(200) == 20 and limited.count(429) == 5

            redis.kill()
            redis.wait()
            for _ in range(30):
                started = time.monotonic()
                response = http.get("/v1/impact", headers=headers)
                assert response.status_code == 200, response.text  # not limited, not a 500
                assert time.monotonic() - started < 2.0
            assert (
                http.post("/v1/plant_tree", json={"amount": 1}, headers=headers).status_code == 200
            )

            redis = _start_redis(binary, port)
            deadline = time.monotonic() + 15
            while http.get("/v1/impact", headers=headers).status_code != 429:
                assert time.monotonic() < deadline, "the limit did not come back with Redis"
    finally:
        server.stop()
        redis.kill()
        redis.wait()


# The worker killed in the middle of its work ---------------------------------------------


def _cli(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "openimpact.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen[bytes], ready: object, timeout: float = 60) -> bool:
    """SIGKILL ``process`` once ``ready()``; False when it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        if ready():  # type: ignore[operator]
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.005)
    raise AssertionError("the process neither finished nor reached the point to kill it")


def _count(db: Database, stmt: object) -> int:
    return int(db.run_sync(lambda s: s.scalar(stmt)))


def test_a_lifecycle_batch_killed_halfway_resumes_once(database: TestDatabase) -> None:
    """Chunks committed before the kill stay; the batch run again moves the
    rest; each impact gets one transition and one event, none twice."""
    from openimpact.auth import Caller
    from openimpact.impacts.service import record_impact

    env = server_env(database.url)
    account = create_account(env, f"batch-{os.getpid()}@example.com")
    db = Database(driver_url(database.url))
    try:
        from openimpact.accounts.models import Account

        pk = db.run_sync(
            lambda s: s.scalar(select(Account.id).where(Account.user_id == account["user_id"]))
        )
        caller = Caller(pk, account["user_id"], "", "", "production", "")
        total = 3000
        for _ in range(total // 500):
            db.run_sync(
                lambda s: [
                    record_impact(s, caller, NewImpact("tree_planted", 1, *[None] * 5))
                    for _ in range(500)
                ],
                write=True,
            )
        ids = select(Impact.id).where(Impact.account_id == pk)
        moved = (
            select(func.count())
            .select_from(ImpactTransition)
            .where(
                ImpactTransition.impact_id.in_(ids),
                ImpactTransition.to_stage == "donation_received",
            )
        )
        events = (
            select(func.count())
            .select_from(OutboxMessage)
            .where(
                OutboxMessage.account_id == pk,
                OutboxMessage.event_type == "impact.donation_received",
            )
        )
        args = (
            "lifecycle",
            "receive",
            "--user-id",
            account["user_id"],
            "--all",
            "--chunk-size",
            "100",
        )
        batch = _cli(env, *args)
        killed = _kill_when(batch, lambda: _count(db, moved) >= total // 3)
        assert killed, "the batch finished before it could be killed"
        halfway = _count(db, moved)
        assert 0 < halfway < total
        assert _count(db, events) == halfway  # each committed chunk wrote its events
        again = _cli(env, *args)
        assert again.wait(timeout=120) == 0
        assert _count(db, moved) == total
        assert _count(db, events) == total
        per_impact = db.run_sync(
            lambda s: s.execute(
                select(ImpactTransition.impact_id, func.count())
                .where(ImpactTransition.impact_id.in_(ids))
                .group_by(ImpactTransition.impact_id)
                .having(func.count() > 1)
            ).all()
        )
        assert per_impact == []
    finally:
        db.dispose()


def test_a_schedule_run_killed_halfway_makes_each_period_once(database: TestDatabase) -> None:
    env = server_env(database.url)
    account = create_account(env, f"periods-{os.getpid()}@example.com")
    key = account["production_key"]
    server = LiveServer(env).start()
    db = Database(driver_url(database.url))
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            made = [
                http.post(
                    "/v1/schedules",
                    json={
                        "impact_type": "tree_planted",
                        "amount": n + 1,
                        "day_of_month": 1,
                        "starts_on": "2027-01-01",
                    },
                    headers={"x-api-key": key},
                ).json()["id"]
                for n in range(120)
            ]
        server.stop()
        from openimpact.schedules.models import Schedule

        pks = select(Schedule.id).where(Schedule.schedule_id.in_(made))
        periods = (
            select(func.count())
            .select_from(SchedulePeriod)
            .where(SchedulePeriod.schedule_pk.in_(pks))
        )
        args = ("schedules", "run", "--as-of", "2027-03-05", "--user-id", account["user_id"])
        run = _cli(env, *args)
        killed = _kill_when(run, lambda: _count(db, periods) >= 60)
        assert killed, "the run finished before it could be killed"
        assert _count(db, periods) < 3 * len(made)
        assert _cli(env, *args).wait(timeout=120) == 0
        # Three months (January to March) for each schedule: each exactly once.
        assert _count(db, periods) == 3 * len(made)
        impacts = select(func.count()).select_from(Impact).where(Impact.schedule_id.in_(made))
        assert _count(db, impacts) == 3 * len(made)
    finally:
        server.stop()
        db.dispose()
