"""``python -m bench webhooks``: how fast events reach a webhook endpoint, and
what recording them costs a write (see bench/README.md).

1. **Delivery of a lifecycle batch.** An account of N impacts (100,000;
   bulk-loaded by bench/fixtures.py, which writes no events) gets one webhook
   endpoint pointing at the bench's receiver (bench/receiver.py, a process of
   its own). One lifecycle batch (``receive``) moves every impact on, writing
   N ``impact.donation_received`` events; once it has committed, ``openimpact
   worker`` is started and the time from the commit to the receiver's Nth
   distinct ``webhook-id`` is measured. The receiver's own capacity (wrk, as
   many connections as the worker opens) is measured first and reported
   beside it, so that it is seen not to be the bottleneck.
2. **The cost events add to a POST.** Two servers, each on a fresh database
   with an account and an endpoint at the receiver: one with
   ``OPENIMPACT_EVENTS=true``, one with ``false``, measured in turn (off, on,
   off, on, …; the write bench's load and durations) and compared by the
   median of the rounds' ratios. Events are delivered while the load runs,
   by the server's own background worker (``in-server``, the default of
   ``openimpact serve``) or by a separate ``openimpact worker`` process
   (``worker process``, servers with ``OPENIMPACT_BACKGROUND_WORKER=false``).
   After each events-on round the bench waits until every event has reached
   the receiver, so no delivery runs into the next round.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench import fixtures
from bench.load import Generator, LoadResult
from bench.servers import (
    SERVER_FACTORY,
    FreshDatabase,
    _free_port,
    fresh_database,
    new_account,
    process,
    serve,
)

WORKER_CMD = [sys.executable, "-m", "openimpact.cli", "worker"]
DELIVERY_GOAL_S = 60.0
EVENTS_COST_MIN = 0.90
# The receiver must be able to take this many times the fastest delivery rate.
RECEIVER_HEADROOM_MIN = 5.0
# Without progress for this long a delivery run is given up (and reported).
STALL_S = 90.0
# The diagnostic variant of the events cost: events recorded, nothing delivering
# them (no background worker, no worker process): the write path's own share.
RECORDED_ONLY = "none (recorded only)"


# The receiver -------------------------------------------------------------------------------


class Receiver:
    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}/hook"
        self._client = httpx.Client(timeout=10)

    def stats(self) -> dict[str, Any]:
        response = self._client.get(self.base_url + "/stats")
        response.raise_for_status()
        found: dict[str, Any] = response.json()
        return found

    def reset(self) -> None:
        self._client.post(self.base_url + "/reset").raise_for_status()

    def close(self) -> None:
        self._client.close()


@contextlib.contextmanager
def receiver(logs: Path) -> Iterator[Receiver]:
    port = _free_port()
    cmd = [sys.executable, "-m", "bench.receiver", "--port", str(port)]
    with process(cmd, {}, logs / f"receiver-{port}.log", ready="receiver ready"):
        found = Receiver(port)
        try:
            yield found
        finally:
            found.close()


def receiver_capacity(
    gen: Generator, rx: Receiver, seconds: float, connections: int
) -> dict[str, Any]:
    """The receiver's own rate, loaded by wrk over as many connections as the
    worker delivers over at once (OPENIMPACT_WEBHOOK_CONCURRENCY)."""
    print(f"bench: webhooks receiver capacity ({connections} connections) ...", flush=True)
    result = gen.hooks(rx.url, f"cap{int(time.time())}", seconds, connections)
    rx.reset()
    print(
        f"bench:   receiver {result.rps:,.0f} req/s, p50 {result.p50_ms:.2f} ms, "
        f"p99 {result.p99_ms:.2f} ms; errors {result.errors}",
        flush=True,
    )
    return {"connections": connections, "max": result.to_json(), "errors": result.errors}


# Helpers ------------------------------------------------------------------------------------


def _analyze(fdb: FreshDatabase) -> None:
    if fdb.backend != "postgresql":
        return
    engine = create_engine(fdb.sqlalchemy_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
    finally:
        engine.dispose()


def _scalar(fdb: FreshDatabase, query: str) -> int:
    engine = create_engine(fdb.sqlalchemy_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(query)).scalar_one() or 0)
    finally:
        engine.dispose()


def _events(fdb: FreshDatabase) -> int:
    return _scalar(fdb, "SELECT count(*) FROM outbox WHERE kind = 'event'")


def _add_endpoint(db: Any, account_id: int, user_id: str, url: str) -> str:
    from openimpact.auth import Caller
    from openimpact.webhooks.guard import check_url
    from openimpact.webhooks.schemas import EndpointCreate
    from openimpact.webhooks.service import CheckedUrl, create_endpoint

    caller = Caller(account_id, user_id, "", "", fixtures.ENV, "")
    checked = CheckedUrl(check_url(url, allow_private=True))
    made: dict[str, Any] = db.run_sync(
        lambda s: create_endpoint(
            s, caller, EndpointCreate(url=url, description="bench receiver"), checked
        ),
        write=True,
    )
    return str(made["id"])


def _worker_env(fdb: FreshDatabase) -> dict[str, str]:
    return {**fdb.server_env(), "OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE": "true"}


def _py_spy() -> str | None:
    return shutil.which("py-spy") or (
        str(Path(sys.executable).parent / "py-spy")
        if (Path(sys.executable).parent / "py-spy").exists()
        else None
    )


@contextlib.contextmanager
def _profiled(pid: int, out: Path, enabled: bool) -> Iterator[Path | None]:
    """``py-spy record`` of the process ``pid`` (raw collapsed stacks, one
    line a stack, for flamegraph.pl or speedscope) while the block runs."""
    spy = _py_spy() if enabled else None
    if enabled and spy is None:
        print("bench:   py-spy is not installed (pip install py-spy); no profile", flush=True)
    if spy is None:
        yield None
        return
    cmd = [spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", str(out)]
    with open(out.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield out
    finally:
        # py-spy writes its file when the process it samples exits, or on SIGINT.
        if proc.poll() is None:
            proc.send_signal(2)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# CPU time ----------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) of a live process; 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn's workers; py-spy is never one)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError, ValueError):
                todo.extend(int(c) for c in task.read_text().split())
    return found


class CpuMeter:
    """CPU seconds spent by the processes of one deployment: its server's
    processes, its worker process, and on PostgreSQL the backends connected to
    its own database (the database server's shared processes are left out)."""

    def __init__(self, roots: list[int], fdb: FreshDatabase) -> None:
        self.roots = roots
        self.fdb = fdb
        self._engine = (
            create_engine(fdb.sqlalchemy_url, pool_size=1) if fdb.backend == "postgresql" else None
        )

    def _pids(self) -> list[int]:
        pids = [p for root in self.roots for p in _tree(root)]
        if self._engine is not None:
            with self._engine.connect() as conn:
                pids += [
                    int(p)
                    for p in conn.scalars(
                        text(
                            "SELECT pid FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                ]
        return pids

    def snapshot(self) -> dict[int, float]:
        return {pid: _proc_cpu(pid) for pid in self._pids()}

    def since(self, start: dict[int, float]) -> float:
        """CPU seconds since ``start`` (a process born meanwhile counts whole)."""
        now = self.snapshot()
        return sum(max(0.0, cpu - start.get(pid, 0.0)) for pid, cpu in now.items())

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


# 1. Delivery of a lifecycle batch -----------------------------------------------------------


def delivery(args: argparse.Namespace, backend: str, rx: Receiver, logs: Path) -> dict[str, Any]:
    from openimpact.lifecycle.service import Selection, run_batch
    from openimpact.outbox.service import Events

    n = args.webhook_impacts
    print(f"bench: webhooks {backend:<10} delivery of a {n:,}-impact batch ...", flush=True)
    with fresh_database(backend) as fdb:
        db = fdb.open()
        try:
            t0 = time.monotonic()
            account = fixtures.load_account(db, n, "direct")
            seed_s = time.monotonic() - t0
            endpoint = _add_endpoint(db, account.account_id, account.user_id, rx.url)
        finally:
            db.dispose()
        _analyze(fdb)  # as autovacuum would, before the batch reads the account
        before = _events(fdb)
        rx.reset()
        db = fdb.open()
        try:
            t0 = time.monotonic()
            batch = run_batch(
                db,
                "receive",
                Selection(env=fixtures.ENV, user_id=account.user_id),
                actor="bench",
                events=Events(True, None),
            )
            committed = time.monotonic()
        finally:
            db.dispose()
        batch_s = committed - t0
        events = _events(fdb) - before
        print(
            f"bench:   seeded {n:,} impacts in {seed_s:.1f} s; the batch changed "
            f"{batch['changed']:,} and wrote {events:,} events in {batch_s:.1f} s",
            flush=True,
        )
        worker_log = logs / f"worker-delivery-{backend}.log"
        timeline: list[tuple[float, int]] = []
        stats: dict[str, Any] = {}
        profile: Path | None = None
        with process(WORKER_CMD, _worker_env(fdb), worker_log) as worker:
            started = time.monotonic()
            with _profiled(worker.pid, logs / f"worker-delivery-{backend}.txt", args.profile) as p:
                profile = p
                stats = _wait_for(rx, n, worker, started, args.delivery_timeout, timeline)
        undelivered = _scalar(
            fdb, "SELECT count(*) FROM outbox WHERE kind = 'event' AND delivered_ms IS NULL"
        )
        attempts = _scalar(fdb, "SELECT count(*) FROM webhook_attempts")
        failed = _scalar(
            fdb, "SELECT count(*) FROM webhook_attempts WHERE succeeded = " + _false(fdb)
        )
        retries = _scalar(fdb, "SELECT count(*) FROM webhook_messages")
    distinct = int(stats.get("distinct", 0))
    complete = distinct >= n and events == n
    first_at = stats.get("first_at")
    last_at = stats.get("last_new_at")
    seconds = (last_at - committed) if complete and last_at else None
    sending_s = (last_at - first_at) if last_at and first_at else None
    problem = ""
    if events != n:
        problem = f"the batch wrote {events:,} events, expected {n:,}"
    elif not complete:
        problem = f"{distinct:,} of {n:,} events received ({stats.get('gave_up', 'timed out')})"
    entry = {
        "backend": backend,
        "impacts": n,
        "endpoint": endpoint,
        "seed_seconds": round(seed_s, 2),
        "batch_seconds": round(batch_s, 2),
        "batch_changed": batch["changed"],
        "events": events,
        "received": distinct,
        "requests": int(stats.get("requests", 0)),
        "duplicates": int(stats.get("duplicates", 0)),
        "connections": int(stats.get("connections", 0)),
        "peak_connections": int(stats.get("peak_connections", 0)),
        "body_bytes_mean": round(stats["body_bytes"] / stats["requests"])
        if stats.get("requests")
        else None,
        # From the batch's commit: the worker started, its first delivery
        # arrived, and the Nth distinct webhook-id arrived.
        "worker_start_after_s": round(started - committed, 3),
        "first_delivery_s": round(first_at - committed, 3) if first_at else None,
        "seconds": round(seconds, 3) if seconds is not None else None,
        "sending_seconds": round(sending_s, 3) if sending_s else None,
        "rate": round(n / seconds, 1) if seconds else None,
        "sending_rate": round(distinct / sending_s, 1) if sending_s else None,
        # (seconds after the commit, distinct ids received) every 5 s.
        "timeline": [(round(t, 1), c) for t, c in timeline],
        "attempts": attempts,
        "failed_attempts": failed,
        "retries_queued": retries,
        "undelivered_events": undelivered,
        "profile": str(profile) if profile else None,
        "problem": problem,
        "errors": (1 if problem else 0) + failed,
    }
    shown = f"{seconds:.1f} s" if seconds is not None else "INCOMPLETE"
    print(
        f"bench:   commit -> {n:,}th webhook-id: {shown}"
        + (f" ({entry['rate']:,.0f}/s overall, {entry['sending_rate']:,.0f}/s while sending)"
           if seconds else "")
        + f"; first delivery after {entry['first_delivery_s']} s; attempts {attempts:,}, "
        f"failed {failed}, duplicates {entry['duplicates']}"
        + (f"  ERROR {problem}" if problem else ""),
        flush=True,
    )  # fmt: skip
    if profile:
        print(f"bench:   worker profile (py-spy, raw stacks): {profile}", flush=True)
    return entry


def _false(fdb: FreshDatabase) -> str:
    return "false" if fdb.backend == "postgresql" else "0"


def _wait_for(
    rx: Receiver,
    n: int,
    worker: subprocess.Popen[bytes],
    started: float,
    timeout: float,
    timeline: list[tuple[float, int]],
) -> dict[str, Any]:
    """Poll the receiver until it has ``n`` distinct ids, the worker dies,
    nothing arrives for STALL_S, or ``timeout`` passes."""
    last_count, last_progress, next_mark = -1, time.monotonic(), started
    while True:
        stats = rx.stats()
        now = time.monotonic()
        count = int(stats["distinct"])
        if now >= next_mark:
            timeline.append((now - started, count))
            next_mark += 5.0
        if count >= n:
            return stats
        if count != last_count:
            last_count, last_progress = count, now
        if worker.poll() is not None:
            return {**stats, "gave_up": f"the worker exited ({worker.returncode})"}
        if now - last_progress > STALL_S:
            return {**stats, "gave_up": f"nothing arrived for {STALL_S:g} s"}
        if now - started > timeout:
            return {**stats, "gave_up": f"timed out after {timeout:g} s"}
        time.sleep(0.1)


# 2. The cost events add to a POST -----------------------------------------------------------


def events_cost(
    gen: Generator,
    args: argparse.Namespace,
    backend: str,
    workers: int,
    where: str,
    rx: Receiver,
    logs: Path,
) -> dict[str, Any]:
    """POST /v1/plant_tree on a server recording events (and delivering them
    to the receiver) against the same server with OPENIMPACT_EVENTS=false."""
    print(
        f"bench: webhooks {backend:<10} {workers} worker(s), POST with events against "
        f"without (delivery {where}) ...",
        flush=True,
    )
    load_before = os.getloadavg()[0]
    run = f"{int(time.time()) % 100000:05d}"
    with fresh_database(backend) as on_db, fresh_database(backend) as off_db:
        keys = {}
        for name, fdb in (("on", on_db), ("off", off_db)):
            db = fdb.open()
            try:
                account_id, user_id, key = new_account(db, f"events{name}")
                _add_endpoint(db, account_id, user_id, rx.url)
            finally:
                db.dispose()
            keys[name] = key
        extra = {"OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE": "true"}
        if where != "in-server":
            extra["OPENIMPACT_BACKGROUND_WORKER"] = "false"
        delivering = where != RECORDED_ONLY
        env_on = {**on_db.server_env(), **extra, "OPENIMPACT_EVENTS": "true"}
        env_off = {**off_db.server_env(), **extra, "OPENIMPACT_EVENTS": "false"}
        with contextlib.ExitStack() as stack:
            on = stack.enter_context(serve(SERVER_FACTORY, workers, env_on, logs))
            off = stack.enter_context(serve(SERVER_FACTORY, workers, env_off, logs))
            roots = {"on": [on.pid], "off": [off.pid]}
            if where == "worker process":
                for name, fdb in (("on", on_db), ("off", off_db)):
                    worker = stack.enter_context(
                        process(
                            WORKER_CMD,
                            {**_worker_env(fdb), "OPENIMPACT_EVENTS": str(name == "on").lower()},
                            logs / f"worker-events-{name}-{backend}-{workers}w.log",
                            ready="Worker running",
                        )
                    )
                    roots[name].append(worker.pid)
            meters = {"on": CpuMeter(roots["on"], on_db), "off": CpuMeter(roots["off"], off_db)}
            stack.callback(meters["on"].close)
            stack.callback(meters["off"].close)
            rx.reset()
            results: list[LoadResult] = [
                gen.post(off.base_url, keys["off"], f"{run}ow", args.warmup),
                gen.post(on.base_url, keys["on"], f"{run}nw", args.warmup),
            ]
            if backend == "postgresql":
                _analyze(on_db)
                _analyze(off_db)
            warm_drain, _ = _drain(rx, on_db, args.drain_timeout) if delivering else (0.0, 0)
            offs: list[LoadResult] = []
            ons: list[LoadResult] = []
            rounds: list[dict[str, Any]] = []
            problem = "" if warm_drain is not None else "events of the warm-up not delivered"
            for n in range(args.rounds):
                cpu = meters["off"].snapshot()
                offs.append(gen.post(off.base_url, keys["off"], f"{run}o{n}", args.duration))
                off_cpu = meters["off"].since(cpu)
                at_start = int(rx.stats()["distinct"])
                cpu = meters["on"].snapshot()
                ons.append(gen.post(on.base_url, keys["on"], f"{run}n{n}", args.duration))
                at_end = int(rx.stats()["distinct"])
                drained, total = (
                    _drain(rx, on_db, args.drain_timeout) if delivering else (None, _events(on_db))
                )
                # The events-on round's CPU runs on to the end of its delivery.
                on_cpu = meters["on"].since(cpu)
                if drained is None and delivering and not problem:
                    problem = f"round {n + 1}: events not all delivered in {args.drain_timeout} s"
                rounds.append(
                    {
                        "off_rps": round(offs[-1].rps, 1),
                        "on_rps": round(ons[-1].rps, 1),
                        "ratio": round(ons[-1].rps / offs[-1].rps, 3) if offs[-1].rps else None,
                        # Of the events the round wrote, how many had reached the
                        # receiver when its load stopped, and how long the rest took.
                        "events": ons[-1].requests,
                        "delivered_during": at_end - at_start,
                        "drain_seconds": drained,
                        "events_total": total,
                        # CPU ms per POST of the deployment (server, worker, the
                        # database's backends), the on round's through its drain.
                        "off_cpu_ms": _per(off_cpu, offs[-1].requests),
                        "on_cpu_ms": _per(on_cpu, ons[-1].requests),
                    }
                )
            results += [*offs, *ons]
        off_events = _events(off_db)
    ratios = [r["ratio"] for r in rounds if r["ratio"] is not None]
    if off_events and not problem:
        problem = f"the events-off server wrote {off_events} events"
    errors = sum(r.errors for r in results) + (1 if problem else 0)
    first_error = next((r.first_error for r in results if r.first_error), "")
    on_peak, off_peak = _median(ons), _median(offs)
    entry = {
        "backend": backend,
        "workers": workers,
        "delivery": where,
        "rounds": rounds,
        "off": off_peak.to_json(),
        "on": on_peak.to_json(),
        "off_rps": round(statistics.median(r.rps for r in offs), 1),
        "on_rps": round(statistics.median(r.rps for r in ons), 1),
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "off_cpu_ms": _median_of(r["off_cpu_ms"] for r in rounds),
        "on_cpu_ms": _median_of(r["on_cpu_ms"] for r in rounds),
        # CPU per POST with events against without: the median of the rounds'.
        "cpu_ratio": _median_of(
            r["on_cpu_ms"] / r["off_cpu_ms"] for r in rounds if r["on_cpu_ms"] and r["off_cpu_ms"]
        ),
        "problem": problem or (first_error if errors else ""),
        "errors": errors,
        # The machine's 1-minute load average before and after (2 cores: above
        # about 2, other work shared them with the measurement).
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    lag = max((r["drain_seconds"] or 0.0) for r in rounds) if rounds else 0.0
    print(
        f"bench:   events off {entry['off_rps']:8.0f} req/s, on {entry['on_rps']:8.0f} req/s "
        f"(x{entry['ratio']}); rounds "
        + ", ".join(f"{r['ratio']}" for r in rounds)
        + "; delivered during the load "
        + ", ".join(f"{r['delivered_during']:,}/{r['events']:,}" for r in rounds)
        + f", the rest within {lag:.1f} s; CPU/POST {entry['off_cpu_ms']} ms off, "
        f"{entry['on_cpu_ms']} ms on (x{entry['cpu_ratio']}); errors {errors}"
        + (f" (first: {entry['problem']})" if errors else ""),
        flush=True,
    )
    return entry


def _per(cpu_seconds: float, requests: int) -> float | None:
    return round(1000 * cpu_seconds / requests, 4) if requests else None


def _median_of(values: Any) -> float | None:
    found = [v for v in values if v is not None]
    return round(statistics.median(found), 4) if found else None


def _median(results: list[LoadResult]) -> LoadResult:
    return sorted(results, key=lambda r: r.rps)[(len(results) - 1) // 2]


def _drain(rx: Receiver, fdb: FreshDatabase, timeout: float) -> tuple[float | None, int]:
    """Seconds until the receiver has every event of ``fdb`` (None: not in
    ``timeout``), and how many that is."""
    started = time.monotonic()
    total = _events(fdb)
    while True:
        if int(rx.stats()["distinct"]) >= total:
            return round(time.monotonic() - started, 2), total
        if time.monotonic() - started > timeout:
            return None, total
        time.sleep(0.1)


# The mode -----------------------------------------------------------------------------------


def run(
    gen: Generator, args: argparse.Namespace, backends: list[str], logs: Path
) -> dict[str, Any]:
    """Every webhook measurement of the run: ``out["webhooks"]``."""
    from openimpact.config import Settings

    concurrency = Settings().webhook_concurrency
    out: dict[str, Any] = {"receiver": None, "delivery": [], "events_cost": []}
    with receiver(logs) as rx:
        out["receiver"] = receiver_capacity(gen, rx, args.duration, concurrency)
        if not args.no_delivery:
            for backend in backends:
                out["delivery"].append(delivery(args, backend, rx, logs))
        if not args.no_events_cost:
            for backend, workers, where in _cost_configs(args, backends):
                out["events_cost"].append(events_cost(gen, args, backend, workers, where, rx, logs))
    return out


def _cost_configs(args: argparse.Namespace, backends: list[str]) -> list[tuple[str, int, str]]:
    wheres = args.events_delivery or (
        ["in-server"] if args.quick else ["in-server", "worker process", RECORDED_ONLY]
    )
    unknown = set(wheres) - {"in-server", "worker process", RECORDED_ONLY}
    if unknown:
        raise SystemExit(f"--events-delivery: unknown {', '.join(sorted(unknown))}")
    configs = [("sqlite", 1, where) for where in wheres]
    if "postgresql" in backends:
        configs += [("postgresql", 2, where) for where in wheres]
    return configs


# Report ----------------------------------------------------------------------------------


def targets(w: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, holds: bool | None) -> None:
        found.append({"target": name, "value": value, "goal": goal, "holds": holds})

    for d in w["delivery"]:
        add(
            f"{d['backend']}: batch of {d['impacts']:,} committed -> {d['impacts']:,}th "
            "webhook-id at the receiver (s)",
            d["seconds"],
            f"< {DELIVERY_GOAL_S:g} s",
            d["seconds"] is not None and d["seconds"] < DELIVERY_GOAL_S,
        )
    rates = [d["sending_rate"] for d in w["delivery"] if d["sending_rate"]]
    cap = w["receiver"]["max"]["rps"] if w.get("receiver") else None
    if rates and cap:
        headroom = round(cap / max(rates), 2)
        add(
            "receiver capacity against the fastest delivery rate",
            headroom,
            f">= {RECEIVER_HEADROOM_MIN:g}x (the receiver is not the bottleneck)",
            headroom >= RECEIVER_HEADROOM_MIN,
        )
    for c in w["events_cost"]:
        if c["delivery"] == RECORDED_ONLY:
            continue  # a diagnostic: where the cost is, not a deployment
        add(
            f"POST plant_tree with events (delivery {c['delivery']}), {c['backend']}, "
            f"{c['workers']} worker(s), against without",
            c["ratio"],
            f">= {EVENTS_COST_MIN:.2f}x (events cost < {100 - EVENTS_COST_MIN * 100:g} %)",
            None if c["ratio"] is None else c["ratio"] >= EVENTS_COST_MIN,
        )
        cpu = c.get("cpu_ratio")
        add(
            f"CPU per POST and its delivery, with events (delivery {c['delivery']}), "
            f"{c['backend']}, {c['workers']} worker(s), against without",
            cpu,
            f"<= {1 / EVENTS_COST_MIN:.2f}x (the same 10 %, in CPU)",
            None if cpu is None else cpu <= 1 / EVENTS_COST_MIN,
        )
    return found


def markdown(out: dict[str, Any]) -> str:
    m = out["meta"]
    w = out["webhooks"]
    lines = [
        "# OpenImpact benchmark: webhooks",
        "",
        f"{m['when']} · commit {m['commit'] or '?'} · {m['machine']['cpus']} CPUs "
        f"({m['machine']['cpu']}) · Python {m['machine']['python']} · "
        f"{'QUICK run · ' if m['quick'] else ''}"
        f"{'FAILED: ' + str(out['errors']) + ' error(s)' if out['errors'] else 'no errors'}"
        f" · {m.get('seconds', '?')} s · load average (1, 5, 15 min) "
        f"{_loads(m.get('load_average_start'))} at the start, "
        f"{_loads(m.get('load_average_end'))} at the end",
        "",
        f"Server: {m['server']}. Worker: `openimpact worker` with "
        "OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE=true, its other settings the defaults "
        f"(OPENIMPACT_WEBHOOK_CONCURRENCY {m['webhook_concurrency']}). Receiver: "
        "bench/receiver.py, its own process (uvloop + httptools, HTTP/1.1 keep-alive, "
        "answers 200, counts distinct webhook-ids). PostgreSQL: "
        f"{m['postgresql']}.",
        "",
    ]
    r = w.get("receiver")
    if r:
        lines += [
            f"Receiver capacity: **{r['max']['rps']:,.0f} req/s** ({m['generator']}, "
            f"{r['connections']} connections, {r['max']['seconds']:g} s; p50 "
            f"{r['max']['p50_ms']:.2f} ms, p99 {r['max']['p99_ms']:.2f} ms).",
            "",
        ]
    if w["delivery"]:
        lines += [
            "## Delivery of one lifecycle batch",
            "",
            "An account of N impacts (bulk-loaded, no events), one endpoint at the receiver; "
            "one `receive` batch writes N `impact.donation_received` events and commits; "
            "then `openimpact worker` starts. Times are from the batch's commit.",
            "",
            "| database | impacts | batch s | worker started | first delivery | "
            "Nth webhook-id | deliveries/s | while sending | attempts | failed | "
            "duplicates | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for d in w["delivery"]:
            secs = f"**{d['seconds']:.1f} s**" if d["seconds"] is not None else "**incomplete**"
            rate = f"{d['rate']:,.0f}" if d["rate"] else "-"
            sending = f"{d['sending_rate']:,.0f}" if d["sending_rate"] else "-"
            first = f"{d['first_delivery_s']:.1f} s" if d["first_delivery_s"] is not None else "-"
            lines.append(
                f"| {d['backend']} | {d['impacts']:,} | {d['batch_seconds']:.1f} | "
                f"{d['worker_start_after_s']:.1f} s | {first} | {secs} | {rate} | {sending} | "
                f"{d['attempts']:,} | {d['failed_attempts']} | {d['duplicates']} | "
                f"{d['errors']} |"
            )
        lines.append("")
        for d in w["delivery"]:
            if d["timeline"]:
                marks = ", ".join(f"{t:g} s: {c:,}" for t, c in d["timeline"])
                lines.append(f"- {d['backend']}, received after the worker started: {marks}.")
            if d["problem"]:
                lines.append(f"- {d['backend']}: **{d['problem']}**.")
        lines.append("")
    if w["events_cost"]:
        lines += [
            "## The cost of events: POST /v1/plant_tree with OPENIMPACT_EVENTS=true against false",
            "",
            f"The write bench's load ({m['generator']}, {m['connections']} connections, "
            f"{m['write_seconds']:g} s a round after {m['warmup_seconds']:g} s of warm-up), "
            "events off and on measured in turn; x is the median of the rounds' ratios. "
            "Each server has an endpoint at the receiver. *In-server*: the server's own "
            "background worker delivers (the default); *worker process*: a separate "
            "`openimpact worker`, servers with OPENIMPACT_BACKGROUND_WORKER=false. "
            "Delivered during the load: of the events a round wrote, those at the receiver "
            "when its load stopped; the rest arrived within the drain time. "
            f"*{RECORDED_ONLY}*, a diagnostic with no target: events written, nothing "
            "delivering them (OPENIMPACT_BACKGROUND_WORKER=false, no worker), which is the "
            "write path's own share of the cost. CPU ms/POST: CPU time of the deployment's "
            "processes (the server's, the worker's, and on PostgreSQL the backends of its own "
            "database) per POST, the events-on round's counted until its last event arrived; "
            "x CPU is the median of the rounds' on/off, the figure least moved by other load "
            "on the machine (throughput on two shared cores is). A round whose events were "
            "mostly delivered during its load shows their whole cost in its ratio; one whose "
            "worker pass (every 5 s) came after it shows it as delivery lag instead. "
            "Load avg: the machine's 1-minute load average before and after (two cores).",
            "",
            "| database | workers | delivery | events off req/s | events on req/s | x | "
            "rounds | delivered during the load | drain s | CPU ms/POST off | on | x CPU "
            "| load avg | errors |",
            "|---|---:|---|---:|---:|---:|---|---|---:|---:|---:|---:|---|---:|",
        ]
        for c in w["events_cost"]:
            rounds = ", ".join(f"{r['ratio']:.2f}" for r in c["rounds"] if r["ratio"])
            during = ", ".join(
                f"{100 * r['delivered_during'] / r['events']:.0f} %"
                for r in c["rounds"]
                if r["events"]
            )
            drains = [r["drain_seconds"] for r in c["rounds"] if r["drain_seconds"] is not None]
            drain = f"{max(drains, default=0):.1f}"
            if c["delivery"] == RECORDED_ONLY:
                during, drain = "-", "-"
            ratio = f"{c['ratio']:.2f}" if c["ratio"] is not None else "-"
            cpu = " | ".join(
                "-" if c.get(k) is None else f"{c[k]:.3f}" if k != "cpu_ratio" else f"{c[k]:.2f}"
                for k in ("off_cpu_ms", "on_cpu_ms", "cpu_ratio")
            )
            lines.append(
                f"| {c['backend']} | {c['workers']} | {c['delivery']} | {c['off_rps']:,.0f} | "
                f"{c['on_rps']:,.0f} | {ratio} | {rounds} | {during} | {drain} | {cpu} | "
                f"{_loads(c.get('load_average'))} | {c['errors']} |"
            )
        lines.append("")
    lines += ["## Targets", "", "| target | value | goal | holds |", "|---|---:|---|---|"]
    for t in out["targets"]:
        value = t["value"]
        shown = (
            "-" if value is None else f"{value:,.2f}" if isinstance(value, float) else f"{value}"
        )
        holds = "-" if t["holds"] is None else "yes" if t["holds"] else "**no**"
        lines.append(f"| {t['target']} | {shown} | {t['goal']} | {holds} |")
    lines.append("")
    return "\n".join(lines)


def _loads(values: list[float] | None) -> str:
    return "/".join(f"{v:.1f}" for v in values) if values else "?"


def write(out: dict[str, Any], directory: Path) -> str:
    import json

    directory.mkdir(parents=True, exist_ok=True)
    w = out["webhooks"]
    out["errors"] = (
        (w["receiver"]["errors"] if w.get("receiver") else 0)
        + sum(d["errors"] for d in w["delivery"])
        + sum(c["errors"] for c in w["events_cost"])
    )
    out["failed"] = out["errors"] > 0
    out["targets"] = [
        *targets(w),
        {
            "target": "errors (non-2xx, socket, failed or missing deliveries) in every run",
            "value": out["errors"],
            "goal": "0",
            "holds": out["errors"] == 0,
        },
    ]
    (directory / "latest.json").write_text(json.dumps(out, indent=1) + "\n")
    text_ = markdown(out)
    (directory / "latest.md").write_text(text_)
    return text_
