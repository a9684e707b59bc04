"""Group commit under faults: the server killed in the middle of large
batches, and one Idempotency-Key raced across batches and worker processes.

Many concurrent clients make the writer (impacts/writer.py) commit dozens of
impacts per transaction, so each kill -9 falls in the middle of batches: a
batch is either all there or not at all, and every acknowledged impact is
there exactly once (tests/reliability/test_crash_safety.py checks the store).
"""

from __future__ import annotations

import threading
from collections import Counter

import httpx

from tests.conftest import TestDatabase
from tests.live import LiveServer, create_account, server_env
from tests.reliability.test_crash_safety import survive_kills


def test_kill_9_in_the_middle_of_batches(database: TestDatabase) -> None:
    survive_kills(database, clients=48, workers=2 if database.backend == "postgresql" else 1)


def test_one_key_raced_across_workers_makes_one_impact(database: TestDatabase) -> None:
    env = server_env(database.url)
    account = create_account(env, "race@example.com")
    key = account["production_key"]
    server = LiveServer(env, workers=2).start()
    answers: list[httpx.Response] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def client(n: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            start.wait()
            # Every client sends each key once: same key, same body, from
            # connections that the two workers share out between them.
            for order in range(10):
                response = http.post(
                    "/v1/plant_tree",
                    json={"amount": order + 1},
                    headers={"x-api-key": key, "Idempotency-Key": f"order-{order}"},
                )
                with lock:
                    answers.append(response)

    try:
        threads = [threading.Thread(target=client, args=(n,)) for n in range(24)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert all(r.status_code == 200 for r in answers), {r.status_code for r in answers}
        by_key: dict[int, set[str]] = {}
        for r in answers:
            by_key.setdefault(r.json()["tree_planted"], set()).add(r.json()["time_utc"])
        assert all(len(times) == 1 for times in by_key.values()), "a key made two impacts"
        fresh = Counter(
            r.json()["tree_planted"] for r in answers if "idempotent-replayed" not in r.headers
        )
        assert fresh == Counter(range(1, 11)), "each key is acknowledged fresh exactly once"
        with httpx.Client(base_url=server.url, timeout=30) as http:
            records = http.get("/v1/records", headers={"x-api-key": key}).json()["user_records"]
            totals = http.get("/v1/impact", headers={"x-api-key": key}).json()
        assert len(records) == 10
        assert totals["tree_planted"] == sum(range(1, 11))
    finally:
        server.stop()
