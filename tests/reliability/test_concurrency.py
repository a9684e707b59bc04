"""Concurrency: many clients on a server with two worker processes, for a
bounded time, mixing impact POSTs (direct and on behalf of customers), cancels,
record and customer walks with small pages, and track.

Checked while it runs: every page walk ends, holds no row twice, is in order,
and holds every impact acknowledged before the walk began; every track and
cancel answers for the impact it names. Checked at the end: every time_utc is
unique, every acknowledged impact is there once, and the totals and the daily
series equal the sum of the records that are not cancelled.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

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
CLIENTS = 10
SECONDS = 60.0 if THOROUGH else 4.0
MAX_OPERATIONS = 100_000 if THOROUGH else 2_000  # per client, a bound besides time
CUSTOMERS = [f"shopper{i}@example.com" for i in range(6)]


@dataclass(frozen=True)
class Made:
    env: str
    time_utc: str
    kind: str
    amount: int
    customer: str | None
    acknowledged_at: float


@dataclass
class Ledger:
    """What the clients were told, in the order they were told it."""

    made: list[Made] = field(default_factory=list)
    cancelled: dict[tuple[str, str], str] = field(default_factory=dict)  # -> cancelled_on
    walks: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def enough(self) -> bool:
        """Enough of every kind of operation for the checks to mean something."""
        with self.lock:
            return (
                len(self.made) > 50
                and bool(self.cancelled)
                and len(self.walks) == 3
                and min(self.walks.values()) > 5
            )

    def snapshot(self, env: str) -> list[Made]:
        with self.lock:
            return [m for m in self.made if m.env == env]


class Client:
    def __init__(
        self, base_url: str, account: dict[str, str], ledger: Ledger, rng: random.Random
    ) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.keys = {"production": account["production_key"], "sandbox": account["sandbox_key"]}
        self.user_id = account["user_id"]
        self.ledger = ledger
        self.rng = rng

    def problem(self, text: str) -> None:
        with self.ledger.lock:
            self.ledger.problems.append(text)

    def call(self, method: str, path: str, env: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, headers={"x-api-key": self.keys[env]}, **kwargs)

    def post(self, env: str) -> None:
        endpoint = self.rng.choice(list(IMPACTS))
        body: dict[str, Any] = {"amount": self.rng.randint(1, 999)}
        if self.rng.random() < 0.4:
            body["customer_email"] = self.rng.choice(CUSTOMERS)
        response = self.call("POST", f"/v1/{endpoint}", env, json=body)
        if response.status_code != 200:
            return self.problem(f"POST {endpoint}: {response.status_code} {response.text}")
        made = response.json()
        with self.ledger.lock:
            self.ledger.made.append(
                Made(
                    env,
                    made["time_utc"],
                    IMPACTS[endpoint],
                    body["amount"],
                    body.get("customer_email"),
                    time.monotonic(),
                )
            )

    def cancel(self, env: str) -> None:
        made = self.ledger.snapshot(env)
        if not made:
            return
        target = self.rng.choice(made)
        response = self.call(
            "POST",
            "/v1/cancel_impact",
            env,
            json={"user_id": self.user_id, "time_utc": target.time_utc},
        )
        body = response.json()
        if response.status_code != 200 or body.get(target.kind) != target.amount:
            return self.problem(f"cancel {target}: {response.status_code} {body}")
        with self.ledger.lock:
            first = self.ledger.cancelled.setdefault((env, target.time_utc), body["cancelled_on"])
        if first != body["cancelled_on"]:
            self.problem(f"cancel {target}: cancelled twice ({first}, {body['cancelled_on']})")

    def track(self, env: str) -> None:
        made = self.ledger.snapshot(env)
        if not made:
            return
        target = self.rng.choice(made)
        response = self.call(
            "GET",
            "/v1/track",
            env,
            params={"user_id": self.user_id, "time_utc": target.time_utc},
        )
        body = response.json()
        if response.status_code != 200 or body.get(target.kind) != target.amount:
            self.problem(f"track {target}: {response.status_code} {body}")

    def walk_records(self, env: str) -> None:
        customers = self.rng.random() < 0.5
        path, name = (
            ("/v1/customer_records", "customer_records")
            if customers
            else ("/v1/records", "user_records")
        )
        params: dict[str, Any] = {
            "limit": self.rng.choice([1, 2, 5, 17, 100]),
            "sort_order": self.rng.choice(["asc", "desc"]),
        }
        kinds = set(RECORD_KEYS)
        if self.rng.random() < 0.3:
            kinds = set(self.rng.sample(RECORD_KEYS, 2))
            params["filter_by"] = sorted(kinds)
        started = time.monotonic()
        expected = {
            m.time_utc
            for m in self.ledger.snapshot(env)
            if (m.customer is not None) == customers and m.kind in kinds
        }
        rows = self._walk(path, name, env, params)
        if rows is None:
            return
        times = [r["time_utc"] for r in rows]
        if len(set(times)) != len(times):
            self.problem(f"walk {path} {params}: a row twice")
        if times != sorted(times, reverse=params["sort_order"] == "desc"):
            self.problem(f"walk {path} {params}: out of order")
        missing = expected - set(times)
        if missing:
            self.problem(
                f"walk {path} {params} from {started:.3f}: {len(missing)} acknowledged missing"
            )
        with self.ledger.lock:
            self.ledger.walks[path] += 1

    def walk_customers(self, env: str) -> None:
        expected = {m.customer for m in self.ledger.snapshot(env) if m.customer}
        params = {
            "limit": self.rng.choice([1, 2, 4]),
            "sort_order": self.rng.choice(["asc", "desc"]),
        }
        rows = self._walk("/v1/customers", "customers", env, params)
        if rows is None:
            return
        ids = [r["customer_id"] for r in rows]
        if len(set(ids)) != len(ids):
            self.problem(f"walk customers {params}: a customer twice")
        if not expected <= {r["customer_email"] for r in rows}:
            self.problem(f"walk customers {params}: an onboarded customer missing")
        with self.ledger.lock:
            self.ledger.walks["/v1/customers"] += 1

    def _walk(self, path: str, name: str, env: str, params: dict[str, Any]) -> list[dict] | None:
        rows: list[dict] = []
        for _ in range(10_000):
            response = self.call("GET", path, env, params=params)
            if response.status_code != 200:
                self.problem(f"walk {path} {params}: {response.status_code} {response.text}")
                return None
            body = response.json()
            rows.extend(body[name])
            if "cursor" not in body:
                return rows
            params = {**params, "cursor": body["cursor"]}
        self.problem(f"walk {path} {params}: never ended")
        return None

    def run(self, deadline: float, latest: float) -> None:
        """Operations until ``deadline``, and past it, while the ledger has
        too few of some kind (a machine busy with other work), until ``latest``."""
        actions = [self.post] * 4 + [
            self.cancel,
            self.track,
            self.walk_records,
            self.walk_records,
            self.walk_customers,
        ]
        try:
            for _ in range(MAX_OPERATIONS):
                now = time.monotonic()
                if now > latest or (now > deadline and self.ledger.enough()):
                    break
                self.rng.choice(actions)(self.rng.choice(["production", "sandbox"]))
        except Exception as exc:  # a transport error is a finding too
            self.problem(f"{type(exc).__name__}: {exc}")
        finally:
            self.http.close()


@pytest.fixture
def server(database: TestDatabase, tmp_path: Path) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    env = server_env(database.url)
    account = create_account(env, "busy@example.com")
    # The server's log is kept: a transport error is explained by it (a worker
    # that died or was restarted by uvicorn's supervisor).
    live = LiveServer(env, workers=2, log=tmp_path / "server.log").start()
    try:
        yield live, account
    finally:
        live.stop()


def _log_tail(live: LiveServer, lines: int = 40) -> str:
    """The server log's last lines, without the access log's."""
    assert live.log is not None
    kept = [
        line
        for line in live.log.read_text(errors="replace").splitlines()
        if ' HTTP/1.1" ' not in line
    ]
    return "\n".join(kept[-lines:])


def _all_rows(http: httpx.Client, key: str) -> tuple[list[dict], list[dict]]:
    def walk(path: str, name: str) -> list[dict]:
        rows: list[dict] = []
        params: dict[str, Any] = {"limit": 1000}
        while True:
            body = http.get(path, params=params, headers={"x-api-key": key}).json()
            rows.extend(body[name])
            if "cursor" not in body:
                return rows
            params["cursor"] = body["cursor"]

    return walk("/v1/records", "user_records"), walk("/v1/customer_records", "customer_records")


def test_many_clients_at_once(server: tuple[LiveServer, dict[str, str]]) -> None:
    live, account = server
    keys = {"production": account["production_key"], "sandbox": account["sandbox_key"]}
    ledger = Ledger()
    seed = random.randrange(2**32)
    deadline = time.monotonic() + SECONDS
    latest = deadline + 60
    threads = [
        threading.Thread(
            target=Client(live.url, account, ledger, random.Random(seed + i)).run,
            args=(deadline, latest),
        )
        for i in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 180)
        assert not thread.is_alive(), "a client hung"
    assert not ledger.problems, (
        f"seed {seed}: {ledger.problems[:5]}\nserver log (access lines left out):\n{_log_tail(live)}"
    )
    assert ledger.enough(), ledger.walks

    with httpx.Client(base_url=live.url, timeout=30) as http:
        for env in ("production", "sandbox"):
            direct, on_behalf = _all_rows(http, keys[env])
            rows = direct + on_behalf
            times = Counter(r["time_utc"] for r in rows)
            assert all(n == 1 for n in times.values()), "two impacts share a time_utc"
            made = [m for m in ledger.made if m.env == env]
            assert len(rows) == len(made)  # nothing lost, nothing extra
            by_time = {r["time_utc"]: r for r in rows}
            for m in made:
                row = by_time[m.time_utc]
                assert row[m.kind] == m.amount
                assert row.get("customer", {}).get("customer_email") == m.customer
                cancelled_on = ledger.cancelled.get((env, m.time_utc))
                assert row.get("cancelled_on") == cancelled_on

            live_rows = [r for r in rows if "cancelled_on" not in r]
            totals = http.get("/v1/impact", headers={"x-api-key": keys[env]}).json()
            for kind in RECORD_KEYS:
                assert totals["user_impact"][kind] == sum(
                    r.get(kind, 0) for r in live_rows if "customer" not in r
                )
                assert totals["customer_impact"][kind] == sum(
                    r.get(kind, 0) for r in live_rows if "customer" in r
                )
                assert totals[kind] == sum(r.get(kind, 0) for r in live_rows)
            per_day: dict[str, Counter[str]] = defaultdict(Counter)
            for r in live_rows:
                for kind in RECORD_KEYS:
                    per_day[r["time_utc"][:10]][kind] += r.get(kind, 0)
            daily = http.get("/v1/impact/daily", headers={"x-api-key": keys[env]}).json()
            series = {d["date"]: d for d in daily["daily_impact"]}
            assert set(series) == {day for day, c in per_day.items() if any(c.values())}
            for day, row in series.items():
                assert all(row[kind] == per_day[day][kind] for kind in RECORD_KEYS), day
