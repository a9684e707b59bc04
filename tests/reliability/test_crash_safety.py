"""Crash safety: kill -9 the server in the middle of concurrent POSTs, several
times, restart it, retry every request that got no answer, and check that
nothing acknowledged was lost or doubled.

Every POST carries an Idempotency-Key, as a checkout or order webhook would.
A request that got no answer may or may not have been committed before the
kill; its retry, with the same key and body, must then either make the impact
or replay the stored answer, never both. What is checked at the end:

- every acknowledged impact is there exactly once, with its amount and time;
- every key made exactly one impact (so no retry made a second one), and a
  replay after a restart answers exactly what was first acknowledged;
- the totals and the daily series equal the sum of the records.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import httpx

from openimpact.kit import RECORD_KEYS
from tests.conftest import TestDatabase
from tests.live import LiveServer, create_account, server_env
from tests.reliability import THOROUGH

IMPACTS = {
    "plant_tree": "tree_planted",
    "clean_ocean": "waste_removed",
    "capture_carbon": "carbon_captured",
    "restore_coral": "coral_restored",
    "donate_money": "money_donated",
}
REQUESTS = 2000 if THOROUGH else 240
CLIENTS = 8
KILLS = 12 if THOROUGH else 4
CUSTOMERS = [f"customer{i}@example.com" for i in range(5)]


@dataclass
class Planned:
    key: str  # its Idempotency-Key
    env: str
    endpoint: str
    body: dict[str, Any]
    answer: dict[str, Any] | None = None  # the first acknowledged answer
    attempts: int = 0
    replays: list[dict[str, Any]] = field(default_factory=list)


def _plan(rng: random.Random) -> list[Planned]:
    plan = []
    for i in range(REQUESTS):
        endpoint = rng.choice(list(IMPACTS))
        body: dict[str, Any] = {"amount": rng.randint(1, 10_000)}
        if rng.random() < 0.4:
            body["customer_email"] = rng.choice(CUSTOMERS)
        if rng.random() < 0.3:
            body["metadata"] = {"order": f"#{i}"}
        env = "production" if rng.random() < 0.6 else "sandbox"
        plan.append(Planned(f"order-{i}-{rng.getrandbits(32):08x}", env, endpoint, body))
    return plan


class Round:
    """One life of the server: CLIENTS threads send what is still unanswered
    until everything is answered or the server is killed under them."""

    def __init__(
        self,
        server: LiveServer,
        keys: dict[str, str],
        todo: list[Planned],
        kill: tuple[int, float] | None,
        clients: int = CLIENTS,
    ) -> None:
        self.server = server
        self.clients = clients
        self.keys = keys
        self.todo = list(todo)
        self.unanswered: list[Planned] = []
        self.errors: list[str] = []
        self.recovered = 0
        self.answered = 0
        # kill -9 once this many answers came back, after that many seconds:
        # always in the middle of the traffic, at a moment nobody chose.
        self.kill = kill
        self.killer: threading.Timer | None = None
        self.lock = threading.Lock()

    def _next(self) -> Planned | None:
        with self.lock:
            return self.todo.pop() if self.todo else None

    def _client(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=10) as http:
            while (planned := self._next()) is not None:
                planned.attempts += 1
                try:
                    response = http.post(
                        f"/v1/{planned.endpoint}",
                        json=planned.body,
                        headers={
                            "x-api-key": self.keys[planned.env],
                            "Idempotency-Key": planned.key,
                        },
                    )
                except httpx.TransportError:
                    with self.lock:
                        self.unanswered.append(planned)
                    continue
                if response.status_code != 200:
                    self.errors.append(f"{planned.key}: {response.status_code} {response.text}")
                    continue
                answer = response.json()
                replayed = response.headers.get("idempotent-replayed") == "true"
                with self.lock:
                    self.answered += 1
                    if self.kill and self.answered == self.kill[0]:
                        self.killer = threading.Timer(self.kill[1], self.server.kill)
                        self.killer.start()
                    if planned.answer is None:
                        planned.answer = answer
                        # Committed in an earlier life whose answer was lost.
                        self.recovered += replayed
                    else:
                        planned.replays.append(answer)
                        if not replayed:
                            self.errors.append(f"{planned.key}: acknowledged twice, not replayed")

    def run(self) -> None:
        threads = [threading.Thread(target=self._client) for _ in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive(), "a client hung"
        if self.killer:
            self.killer.join()
        # Sent nothing yet when the server died: still to do.
        self.unanswered.extend(self.todo)


def _walk(http: httpx.Client, key: str, path: str, name: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    for _ in range(100):
        body = http.get(path, params=params, headers={"x-api-key": key}).json()
        rows.extend(body[name])
        if "cursor" not in body:
            return rows
        params["cursor"] = body["cursor"]
    raise AssertionError("pagination did not end")


def _check_store(http: httpx.Client, key: str, planned: list[Planned]) -> None:
    direct = _walk(http, key, "/v1/records", "user_records")
    on_behalf = _walk(http, key, "/v1/customer_records", "customer_records")
    records = direct + on_behalf
    times = Counter(r["time_utc"] for r in records)
    assert all(n == 1 for n in times.values()), "a time_utc names two impacts"
    # One impact per key: as many records as keys, each answer among them.
    assert len(records) == len(planned), (len(records), len(planned))
    by_time = {r["time_utc"]: r for r in records}
    for p in planned:
        assert p.answer is not None
        record = by_time.get(p.answer["time_utc"])
        assert record is not None, f"acknowledged impact {p.key} is lost"
        kind = IMPACTS[p.endpoint]
        assert record[kind] == p.body["amount"] == p.answer[kind]
        assert record.get("metadata") == p.body.get("metadata")
        customer = record.get("customer", {}).get("customer_email")
        assert customer == p.body.get("customer_email")
        for replay in p.replays:
            assert replay == p.answer

    totals = http.get("/v1/impact", headers={"x-api-key": key}).json()
    for part, rows in (("user_impact", direct), ("customer_impact", on_behalf)):
        for kind in RECORD_KEYS:
            assert totals[part][kind] == sum(r.get(kind, 0) for r in rows), (part, kind)
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    for r in records:
        for kind in RECORD_KEYS:
            per_day[r["time_utc"][:10]][kind] += r.get(kind, 0)
    daily = http.get("/v1/impact/daily", headers={"x-api-key": key}).json()["daily_impact"]
    assert {d["date"] for d in daily} == set(per_day)
    for day in daily:
        for kind in RECORD_KEYS:
            assert day[kind] == per_day[day["date"]][kind], (day["date"], kind)


def test_acknowledged_impacts_survive_kill_9(database: TestDatabase) -> None:
    survive_kills(database)


def survive_kills(database: TestDatabase, *, clients: int = CLIENTS, workers: int = 1) -> None:
    """Kill the server KILLS times under ``clients`` concurrent clients, then
    check the store (see the module's docstring)."""
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    env = server_env(database.url)
    account = create_account(env, f"crash-{seed}@example.com")
    keys = {"production": account["production_key"], "sandbox": account["sandbox_key"]}
    plan = _plan(rng)
    todo = list(plan)
    rng.shuffle(todo)
    kills_that_hit = 0
    replays_checked = 0
    recovered = 0  # kills that fell between a commit and its answer: up to chance
    checked = False

    for _life in range(3 * KILLS + 1):
        server = LiveServer(env, workers=workers).start()
        try:
            # Acknowledged before a kill: a retry still replays the same answer.
            done = [p for p in plan if p.answer is not None]
            resend = rng.sample(done, min(10, len(done)))
            replays_checked += len(resend)
            todo.extend(resend)
            last = kills_that_hit == KILLS
            kill = None if last else (rng.randint(1, max(1, len(todo) // 2)), rng.uniform(0, 0.02))
            round_ = Round(server, keys, todo, kill, clients)
            round_.run()
            assert not round_.errors, f"seed {seed}: {round_.errors[:5]}"
            recovered += round_.recovered
            todo = round_.unanswered
            # A kill that came after the last answer interrupted nothing: the
            # next life tries again.
            kills_that_hit += bool(round_.unanswered)
            if last:
                assert not todo, f"seed {seed}: still unanswered with no kill"
                with httpx.Client(base_url=server.url, timeout=30) as http:
                    for env_name, key in keys.items():
                        _check_store(http, key, [p for p in plan if p.env == env_name])
                checked = True
                break
        finally:
            server.kill()

    assert checked, f"seed {seed}: only {kills_that_hit} of {KILLS} kills interrupted requests"
    assert replays_checked > 0
    assert sum(p.attempts for p in plan) > REQUESTS
