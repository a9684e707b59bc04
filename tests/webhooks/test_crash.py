"""The worker killed with SIGKILL in the middle of deliveries: after a
restart every event arrives at least once, none is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from openimpact.app import create_app
from openimpact.outbox.models import OutboxMessage
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.live import server_env
from tests.webhooks.helpers import endpoint, feed
from tests.webhooks.receiver import Receiver

EVENTS = 150


def _worker(database: TestDatabase) -> subprocess.Popen[bytes]:
    env = server_env(
        database.url,
        OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE="true",
        OPENIMPACT_WEBHOOK_CONCURRENCY="4",
        OPENIMPACT_WEBHOOK_LEASE_SECONDS="1",
        OPENIMPACT_WEBHOOK_TIMEOUT_SECONDS="0.5",
        OPENIMPACT_WEBHOOK_RETRY_SCALE="0.00001",
        OPENIMPACT_WORKER_INTERVAL_SECONDS="0.1",
    )
    return subprocess.Popen(
        [sys.executable, "-m", "openimpact.cli", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


@pytest.mark.slow
def test_a_killed_worker_loses_no_event(database: TestDatabase, rx: Receiver) -> None:
    def slow(_r: object) -> tuple[int, dict[str, str], bytes]:
        time.sleep(0.02)
        return 200, {}, b""

    rx.respond = slow
    with TestClient(create_app(database.settings(webhooks_allow_private=True))) as client:
        api = Api(client)
        me = api.as_(api.account())
        endpoint(me, rx.url)
        for _ in range(EVENTS):
            me.plant(1)
        expected = {e["id"] for e in feed(me, EVENTS)}
        assert len(expected) == EVENTS

        worker = _worker(database)
        try:
            rx.wait_for(EVENTS // 4, timeout=60)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        cut = set(rx.ids())
        assert 0 < len(cut) < EVENTS, "the worker was not killed in the middle"

        def pending() -> int:
            return int(
                api.db.run_sync(
                    lambda s: s.scalar(
                        select(func.count()).where(
                            OutboxMessage.event_id.in_(sorted(expected)),
                            OutboxMessage.delivered_ms.is_(None),
                        )
                    )
                )
            )

        worker = _worker(database)
        try:
            deadline = time.monotonic() + 90
            while set(rx.ids()) < expected or pending():
                assert time.monotonic() < deadline, f"{len(set(rx.ids()))} of {EVENTS} arrived"
                time.sleep(0.1)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        assert set(rx.ids()) == expected and pending() == 0
