"""``python -m bench soak``: mixed traffic for a long while, then the checks.

On PostgreSQL with two server workers and a separate ``openimpact worker``
(or on SQLite with one), for ``--seconds`` (600 by default): impact POSTs with
Idempotency-Keys, a share of them retried; cancels; reads (records, totals,
track); dashboard pages of a signed-in owner; the public profile, widget,
badge and profile JSON; operator lifecycle batches every few seconds; and
webhook deliveries of everything to a local receiver. Then it waits for the
worker to deliver what is left and reports:

- every answer by status: no 5xx is allowed;
- the memory (RSS) of each process at the end of the warm-up and at the end;
- the invariants: totals equal the records, every acknowledged impact is
  there exactly once with its amount, a retry replays its first answer, and
  every event of the feed reached the receiver (and nothing else did).

It exits 1 when a check fails; ``tests/reliability/test_soak.py`` runs a
30-second version in CI (60 seconds with ``--thorough``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import secrets
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from sqlalchemy import func, select

from bench.servers import SERVER_FACTORY, fresh_database, postgres_problem, process, serve
from openimpact.accounts.service import create_account
from openimpact.kit import RECORD_KEYS
from openimpact.outbox.models import OutboxMessage
from openimpact.public.service import update_profile
from openimpact.users import service as users

ADMIN_TOKEN = "soak-operator-" + secrets.token_hex(8)
PASSWORD = "a long soak passphrase"
IMPACTS = {
    "plant_tree": "tree_planted",
    "clean_ocean": "waste_removed",
    "capture_carbon": "carbon_captured",
    "restore_coral": "coral_restored",
    "donate_money": "money_donated",
}
RESULTS = Path(__file__).parent / "results" / "soak"


# The webhook receiver -------------------------------------------------------------------------


class Receiver:
    """An aiohttp server on its own thread that counts webhook-ids."""

    def __init__(self) -> None:
        self.ids: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        with self.lock:
            self.ids[request.headers.get("webhook-id", "")] += 1
        return web.Response(text="ok")

    def start(self) -> Receiver:
        threading.Thread(target=self._run, daemon=True).start()
        self._ready.wait(10)
        return self

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, access_log=None)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        loop.run_forever()

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)


# Traffic ----------------------------------------------------------------------------------------


@dataclass
class Sent:
    key: str
    endpoint: str
    body: dict[str, Any]
    answer: dict[str, Any] | None = None
    cancelled: bool = False


@dataclass
class Soak:
    base_url: str
    api_key: str
    slug: str
    owner_email: str
    deadline: float
    statuses: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    sent: list[Sent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    batches: int = 0

    def _count(self, kind: str, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[f"{kind} {response.status_code}"] += 1
            if response.status_code >= 500:
                self.errors.append(f"{kind}: {response.status_code} {response.text[:200]}")

    def writer(self, seed: int) -> None:
        rng = random.Random(seed)
        headers = {"x-api-key": self.api_key}
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            while time.monotonic() < self.deadline:
                endpoint = rng.choice(list(IMPACTS))
                body: dict[str, Any] = {"amount": rng.randint(1, 50)}
                if rng.random() < 0.3:
                    body["customer_email"] = f"c{rng.randint(1, 50)}@soak.example"
                if rng.random() < 0.2:
                    body["metadata"] = {"order": str(rng.getrandbits(32))}
                sent = Sent(f"soak-{seed}-{rng.getrandbits(48):012x}", endpoint, body)
                answer = self._post(http, sent, headers)
                if answer is None:
                    continue
                with self.lock:
                    self.sent.append(sent)
                if rng.random() < 0.1:  # a client that did not hear the answer
                    again = self._post(http, sent, headers)
                    if again is not None and again != sent.answer:
                        self.errors.append(f"retry of {sent.key} answered differently")
                if rng.random() < 0.03:
                    response = http.post(
                        "/v1/cancel_impact",
                        json={"user_id": answer["user_id"], "time_utc": answer["time_utc"]},
                        headers=headers,
                    )
                    self._count("cancel", response)
                    if response.status_code == 200:
                        sent.cancelled = True

    def _post(
        self, http: httpx.Client, sent: Sent, headers: dict[str, str]
    ) -> dict[str, Any] | None:
        for _ in range(20):
            try:
                response = http.post(
                    f"/v1/{sent.endpoint}",
                    json=sent.body,
                    headers={**headers, "Idempotency-Key": sent.key},
                )
            except httpx.TransportError:
                continue
            self._count("post", response)
            if response.status_code == 200:
                if sent.answer is None:
                    sent.answer = response.json()
                return response.json()  # type: ignore[no-any-return]
            if response.status_code != 503:
                self.errors.append(f"post {response.status_code}: {response.text[:200]}")
                return None
            time.sleep(0.1)
        return None

    def reader(self, seed: int) -> None:
        rng = random.Random(seed)
        headers = {"x-api-key": self.api_key}
        with httpx.Client(base_url=self.base_url, timeout=30) as http:
            while time.monotonic() < self.deadline:
                choice = rng.random()
                if choice < 0.3:
                    response = http.get("/v1/records", params={"limit": 50}, headers=headers)
                elif choice < 0.5:
                    response = http.get("/v1/impact", headers=headers)
                elif choice < 0.7:
                    with self.lock:
                        done = [s.answer for s in self.sent[-200:] if s.answer]
                    if not done:
                        continue
                    answer = rng.choice(done)
                    response = http.get(
                        "/v1/track",
                        params={"user_id": answer["user_id"], "time_utc": answer["time_utc"]},
                        headers=headers,
                    )
                elif choice < 0.85:
                    response = http.get("/v1/events", params={"limit": 100}, headers=headers)
                else:
                    path = rng.choice(
                        [
                            f"/impact/{self.slug}",
                            f"/widget/{self.slug}/counter",
                            f"/badge/{self.slug}/tree_planted.svg",
                            f"/public/v1/profiles/{self.slug}",
                        ]
                    )
                    response = http.get(path)
                self._count("read", response)

    def dashboard(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30, follow_redirects=False) as http:
            page = http.get("/dashboard/login")
            token = re.search(r'name="csrf_token" value="([^"]*)"', page.text)
            assert token is not None, "no sign-in form"
            signed = http.post(
                "/dashboard/login",
                data={
                    "csrf_token": token.group(1),
                    "email": self.owner_email,
                    "password": PASSWORD,
                },
            )
            if signed.status_code != 303:
                self.errors.append(f"dashboard sign-in: {signed.status_code}")
                return
            pages = [
                "/dashboard",
                "/dashboard/impacts",
                "/dashboard/customers",
                "/dashboard/webhooks",
            ]
            while time.monotonic() < self.deadline:
                for path in pages:
                    self._count("dashboard", http.get(path))
                time.sleep(0.2)

    def operator(self) -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        with httpx.Client(base_url=self.base_url, timeout=120) as http:
            while time.monotonic() < self.deadline:
                time.sleep(5)
                for action in ("receive", "transfer", "complete"):
                    response = http.post(
                        f"/admin/v1/lifecycle/{action}",
                        json={"selection": {"env": "production", "all": True}, "dry_run": False},
                        headers=headers,
                    )
                    self._count("batch", response)
                with self.lock:
                    self.batches += 1


# Checks ---------------------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    try:
        found = [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    workers = []
    for child in found:
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmdline:
            workers.append(child)
    return workers or [pid]


def walk(
    http: httpx.Client, path: str, name: str, key: str, limit: int = 1000
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    while True:
        body = http.get(path, params=params, headers={"x-api-key": key}).json()
        rows.extend(body[name])
        if "cursor" not in body:
            return rows
        params["cursor"] = body["cursor"]


def check_store(http: httpx.Client, soak: Soak) -> dict[str, bool]:
    key = soak.api_key
    records = walk(http, "/v1/records", "user_records", key) + walk(
        http, "/v1/customer_records", "customer_records", key
    )
    by_time = Counter(r["time_utc"] for r in records)
    acknowledged = [s for s in soak.sent if s.answer is not None]
    times = {s.answer["time_utc"] for s in acknowledged if s.answer}
    live = [r for r in records if "cancelled_on" not in r]
    totals = http.get("/v1/impact", headers={"x-api-key": key}).json()
    summed = {k: sum(r.get(k, 0) for r in live) for k in RECORD_KEYS}
    reported = {k: totals["user_impact"][k] + totals["customer_impact"][k] for k in RECORD_KEYS}
    record_by_time = {r["time_utc"]: r for r in records}
    amounts = all(
        record_by_time.get(s.answer["time_utc"], {}).get(IMPACTS[s.endpoint]) == s.body["amount"]
        for s in acknowledged
        if s.answer
    )
    return {
        "every time_utc names one impact": all(n == 1 for n in by_time.values()),
        "every acknowledged impact is stored, once, with its amount": times == set(by_time)
        and len(times) == len(acknowledged)
        and amounts,
        "totals equal the records (cancelled ones left out)": summed == reported,
    }


def drain(
    db_url: str, receiver: Receiver, http: httpx.Client, key: str, limit: float
) -> dict[str, bool]:
    """Wait until the worker delivered every event; compare with the feed."""
    from openimpact.config import driver_url
    from openimpact.db import Database

    db = Database(driver_url(db_url), pool_size=1)
    try:
        deadline = time.monotonic() + limit
        pending = -1
        while time.monotonic() < deadline:
            pending = db.run_sync(
                lambda s: s.scalar(
                    select(func.count()).where(
                        OutboxMessage.kind == "event", OutboxMessage.delivered_ms.is_(None)
                    )
                )
            )
            if pending == 0:
                break
            time.sleep(0.5)
    finally:
        db.dispose()
    with receiver.lock:
        got = set(receiver.ids)
    # On PostgreSQL the feed shows an event once every transaction that was
    # open when it was written has ended, anywhere on the server
    # (docs/webhooks.md): another database's open transaction holds it back.
    settle = time.monotonic() + 30
    while True:
        feed = {e["id"] for e in walk(http, "/v1/events", "events", key, 100)}
        if feed == got or time.monotonic() > settle:
            break
        time.sleep(0.5)
    return {
        "every event was handed to the endpoint (none pending)": pending == 0,
        "the receiver got every event of the feed, and nothing else": feed == got,
    }


# Main -------------------------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=600, help="traffic duration (default 600)")
    p.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--workers", type=int, help="server workers (2 on PostgreSQL, 1 on SQLite)")
    p.add_argument("--writers", type=int, default=8, help="POSTing clients")
    p.add_argument("--readers", type=int, default=4, help="reading clients")
    p.add_argument("--out", type=Path, default=RESULTS, help="where latest.md goes")
    return p.parse_args(argv)


def _seed(db: Any, receiver_url: str) -> tuple[str, str, str]:
    """An account with a published profile, an owner who can sign in, a
    webhook endpoint to the receiver: (production key, slug, owner email)."""
    from openimpact.auth import Caller
    from openimpact.webhooks.guard import check_url
    from openimpact.webhooks.schemas import EndpointCreate
    from openimpact.webhooks.service import CheckedUrl, create_endpoint

    def run(session: Any) -> tuple[str, str, str]:
        account, keys = create_account(
            session, email=f"soak-{secrets.token_hex(3)}@soak.example", name="Soak Shop"
        )
        slug = f"soak-{secrets.token_hex(3)}"
        update_profile(session, account.id, slug=slug, name="Soak Shop", enabled=True)
        owner = f"owner-{secrets.token_hex(3)}@soak.example"
        users.add_user(session, account, owner, "owner", PASSWORD)
        caller = Caller(account.id, account.user_id, account.email, account.name, "production", "")
        url = CheckedUrl(check_url(receiver_url, allow_private=True))
        create_endpoint(session, caller, EndpointCreate(url=receiver_url), url)
        return keys["production"].key, slug, owner

    return db.run_sync(run, write=True)  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    args = _parse(list(argv if argv is not None else sys.argv[2:]))
    if args.backend == "postgresql" and (problem := postgres_problem()):
        print(problem, file=sys.stderr)
        return 2
    workers = args.workers or (2 if args.backend == "postgresql" else 1)
    warmup = min(30.0, args.seconds / 10)
    receiver = Receiver().start()
    log_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"openimpact-soak-{os.getpid()}"
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    try:
        with fresh_database(args.backend) as fresh:
            db = fresh.open()
            try:
                api_key, slug, owner = _seed(db, f"http://127.0.0.1:{receiver.port}/hook")
            finally:
                db.dispose()
            env = {
                **fresh.server_env(),
                "OPENIMPACT_BACKGROUND_WORKER": "false",
                "OPENIMPACT_PUBLIC_RATE_LIMIT": "off",
                "OPENIMPACT_SIGNIN_RATE_LIMIT": "1000/minute",
                "OPENIMPACT_ADMIN_TOKEN": ADMIN_TOKEN,
                "OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE": "true",
                "OPENIMPACT_WORKER_INTERVAL_SECONDS": "0.5",
            }
            worker_cmd = [sys.executable, "-m", "openimpact.cli", "worker"]
            with (
                serve(SERVER_FACTORY, workers, env, log_dir) as server,
                process(worker_cmd, env, log_dir / "worker.log") as worker,
            ):
                soak = Soak(server.base_url, api_key, slug, owner, time.monotonic() + args.seconds)
                threads = [
                    threading.Thread(target=soak.writer, args=(n,)) for n in range(args.writers)
                ]
                threads += [
                    threading.Thread(target=soak.reader, args=(1000 + n,))
                    for n in range(args.readers)
                ]
                threads += [threading.Thread(target=soak.dashboard)]
                threads += [threading.Thread(target=soak.operator)]
                for thread in threads:
                    thread.start()
                time.sleep(warmup)
                pids = {f"server worker {i + 1}": p for i, p in enumerate(children(server.pid))}
                pids["openimpact worker"] = worker.pid
                before = {name: rss_mb(pid) for name, pid in pids.items()}
                for thread in threads:
                    thread.join()
                after = {name: rss_mb(pid) for name, pid in pids.items()}
                with httpx.Client(base_url=server.base_url, timeout=60) as http:
                    checks = check_store(http, soak)
                    checks.update(drain(fresh.url, receiver, http, api_key, 120))
    finally:
        receiver.stop()
    five_xx = sum(n for k, n in soak.statuses.items() if k.split()[1].startswith("5"))
    checks["no 5xx"] = five_xx == 0 and not soak.errors
    ok = all(checks.values())
    report = _report(args, workers, started, soak, before, after, checks, receiver, warmup)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.md").write_text(report)
    print(report)
    if soak.errors:
        print("errors:", *soak.errors[:20], sep="\n  ", file=sys.stderr)
    return 0 if ok else 1


def _report(
    args: argparse.Namespace,
    workers: int,
    started: str,
    soak: Soak,
    before: dict[str, float],
    after: dict[str, float],
    checks: dict[str, bool],
    receiver: Receiver,
    warmup: float,
) -> str:
    lines = [
        "# Soak",
        "",
        f"{started}: {args.seconds:g} s of mixed traffic on {args.backend}, {workers} server "
        f"worker(s) and one `openimpact worker`; {args.writers} writers, {args.readers} "
        "readers, a signed-in dashboard owner, lifecycle batches every 5 s, webhooks to a "
        "local receiver. Command: `python -m bench soak "
        f"--seconds {args.seconds:g} --backend {args.backend}`.",
        "",
        "| check | holds |",
        "|---|---|",
        *(f"| {name} | {'yes' if ok else '**no**'} |" for name, ok in checks.items()),
        "",
        "| answers | count |",
        "|---|---|",
        *(f"| {name} | {n:,} |" for name, n in sorted(soak.statuses.items())),
        "",
        f"Impacts acknowledged: {sum(1 for s in soak.sent if s.answer):,}; cancelled: "
        f"{sum(1 for s in soak.sent if s.cancelled):,}; lifecycle rounds: {soak.batches}; "
        f"webhook deliveries received: {sum(receiver.ids.values()):,} "
        f"({len(receiver.ids):,} distinct events).",
        "",
        f"| process | RSS after {warmup:g} s warm-up (MB) | at the end (MB) | growth (MB) |",
        "|---|---|---|---|",
        *(
            f"| {name} | {before[name]:.0f} | {after[name]:.0f} | {after[name] - before[name]:+.0f} |"
            for name in before
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
