"""Rate limits: a burst over the limit gets 429 with Retry-After, one
account's burst leaves every other key unthrottled, and with REDIS_URL
several server processes draw on one budget per key.

Redis is found at ``OPENIMPACT_TEST_REDIS`` (default
``redis://127.0.0.1:6379/15``, a database of its own). Without it the Redis
tests are skipped with the reason, except under CI (``CI=true``), where a
missing Redis is a failure. Every test uses fresh keys, so the counters it
leaves behind (they expire with their window) never meet another test's.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from openimpact.app import create_app
from tests.conftest import IN_CI, TestDatabase
from tests.factories import Api
from tests.live import LiveServer, create_account, server_env

REDIS_URL = os.environ.get("OPENIMPACT_TEST_REDIS", "redis://127.0.0.1:6379/15")
LIMIT = 10
RATE = f"{LIMIT}/hour"  # a window far longer than any test: no reset mid-burst


def _assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["type"] == "rate_limit_error"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 3600


@pytest.fixture
def limited(database: TestDatabase) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings(rate_limit=RATE))) as client:
        yield client


def test_a_burst_over_the_limit_gets_429_and_others_are_not_throttled(
    limited: TestClient,
) -> None:
    api = Api(limited)
    noisy = api.account()
    quiet = api.account()
    loud = api.as_(noisy)
    statuses = []
    for i in range(LIMIT + 5):
        if i % 2:
            statuses.append(loud.get("/v1/whoami"))
        else:
            statuses.append(loud.post("/v1/plant_tree", {"amount": 1}))
    assert [r.status_code for r in statuses[:LIMIT]] == [200] * LIMIT
    for response in statuses[LIMIT:]:
        _assert_throttled(response)

    # Meanwhile every other key keeps its whole budget: another account's,
    # and the noisy account's other environment.
    for caller in (api.as_(quiet), api.as_(quiet, "sandbox"), api.as_(noisy, "sandbox")):
        assert [caller.get("/v1/whoami").status_code for _ in range(LIMIT)] == [200] * LIMIT
        _assert_throttled(caller.get("/v1/whoami"))

    # What was refused was not applied: five POSTs went through, no more.
    with TestClient(
        create_app(limited.app.state.settings.model_copy(update={"rate_limit": "off"}))
    ) as c:
        totals = c.get("/v1/impact", headers=loud.headers()).json()
    assert totals["tree_planted"] == (LIMIT + 1) // 2


@pytest.fixture(scope="module")
def redis_url() -> str:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        problem = f"Redis not reachable at {REDIS_URL}: {type(exc).__name__}"
        if IN_CI:
            pytest.fail(f"CI=true requires Redis: {problem}")
        pytest.skip(problem)
    return REDIS_URL


def test_with_redis_two_servers_share_one_limit(database: TestDatabase, redis_url: str) -> None:
    env = server_env(database.url, OPENIMPACT_RATE_LIMIT=RATE)
    env["REDIS_URL"] = redis_url
    noisy = create_account(env, "noisy@example.com")
    quiet = create_account(env, "quiet@example.com")
    servers = [LiveServer(env), LiveServer(env)]
    try:
        for server in servers:
            server.start()
        clients = [httpx.Client(base_url=s.url, timeout=10) for s in servers]
        answered: Counter[tuple[int, int]] = Counter()
        throttled = []
        for i in range(2 * LIMIT):
            which = i % 2  # alternate: each server sees half the burst
            response = clients[which].get(
                "/v1/whoami", headers={"x-api-key": noisy["production_key"]}
            )
            answered[(which, response.status_code)] += 1
            if response.status_code == 429:
                throttled.append(response)
        # One budget of LIMIT for the key across both processes (each alone
        # would have let all 2 * LIMIT through), and both refuse once it is spent.
        assert answered[(0, 200)] + answered[(1, 200)] == LIMIT
        assert answered[(0, 429)] > 0 and answered[(1, 429)] > 0
        for response in throttled:
            _assert_throttled(response)
        for client in clients:
            ok = client.get("/v1/whoami", headers={"x-api-key": quiet["production_key"]})
            assert ok.status_code == 200
        for client in clients:
            client.close()
    finally:
        for server in servers:
            server.stop()


def test_an_unreachable_redis_does_not_take_the_api_down(
    database: TestDatabase, caplog: pytest.LogCaptureFixture
) -> None:
    # Port 1 on the loopback: connection refused at once.
    settings = database.settings(rate_limit="2/hour", redis_url="redis://127.0.0.1:1/0")
    with TestClient(create_app(settings)) as client:
        account = Api(client).account()
        headers = {"x-api-key": account.production_key}
        with caplog.at_level(logging.WARNING, logger="openimpact.ratelimit"):
            for _ in range(4):
                started = time.monotonic()
                response = client.post("/v1/plant_tree", json={"amount": 1}, headers=headers)
                assert response.status_code == 200, response.text
                # A hang check, not a speed target: the storage timeout is 0.5 s.
                assert time.monotonic() - started < 10
    assert "rate limit storage unavailable" in caplog.text
    assert account.production_key[16:] not in caplog.text
