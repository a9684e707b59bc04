"""``python -m bench``: the whole benchmark in one run (see bench/README.md).

Order of a full run (each server on a fresh database, started and stopped
by this process):

1. writes, 1 worker: ceiling, SQLite, PostgreSQL; then the same with 2
   workers. Each: warm-up, then the maximum (closed loop), then the same
   load paced at 0.7x that maximum for latency below saturation;
2. reads on SQLite and PostgreSQL: bulk-load accounts of each size, start
   one worker, and time each read one request at a time;
3. public reads, 1 worker: the ceiling's GET, then the public profile JSON
   and an SVG badge on SQLite and PostgreSQL, closed loop like the writes.

The load generator and the server share the machine's cores, in the same
way for the ceiling and for every subject, so ratios compare like with like.

``python -m bench webhooks`` runs the webhook measurements instead
(bench/webhooks.py): delivery of a lifecycle batch, and the cost of events
to a POST.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench import fixtures, report
from bench.load import Generator, LoadResult, ensure_wrk
from bench.servers import (
    CEILING_FACTORY,
    SERVER_FACTORY,
    FreshDatabase,
    fresh_database,
    new_account,
    postgres_problem,
    serve,
)

RESULTS_DIR = Path(__file__).parent / "results"
PACED_FRACTION = 0.7


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument(
        "mode",
        nargs="?",
        choices=("all", "webhooks"),
        default="all",
        help="all (writes, reads, public reads) or webhooks (delivery of a lifecycle batch "
        "and the cost of events to a POST; results in bench/results/webhooks)",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run in under a minute")
    p.add_argument("--duration", type=float, help="seconds per write measurement (full: 8)")
    p.add_argument(
        "--read-rounds", type=int, help="one-second slices per read, interleaved (full: 3)"
    )
    p.add_argument("--connections", type=int, default=32, help="connections for write loads")
    p.add_argument(
        "--rounds", type=int, help="ceiling/subject measurements in turn per subject (full: 3)"
    )
    p.add_argument(
        "--many-connections", type=int, default=256, help="connections for the crowd load"
    )
    p.add_argument(
        "--accounts", type=int, help="accounts writing at once in the platform load (full: 1000)"
    )
    p.add_argument("--sizes", help="comma-separated account sizes (full: 1000,100000,1000000)")
    p.add_argument("--no-postgres", action="store_true", help="SQLite only")
    p.add_argument("--no-reads", action="store_true")
    p.add_argument("--no-writes", action="store_true")
    p.add_argument("--no-public", action="store_true", help="skip the public profile and badge")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--out", type=Path, help="where results go (default bench/results/[webhooks])")
    p.add_argument(
        "--webhook-impacts",
        type=int,
        help="impacts in the batch whose events are delivered (full: 100000)",
    )
    p.add_argument(
        "--delivery-timeout", type=float, default=600.0, help="give a delivery up after (s)"
    )
    p.add_argument(
        "--drain-timeout", type=float, default=120.0, help="wait for a round's events (s)"
    )
    p.add_argument("--no-delivery", action="store_true", help="webhooks: skip the batch delivery")
    p.add_argument(
        "--no-events-cost", action="store_true", help="webhooks: skip POST with/without events"
    )
    p.add_argument(
        "--events-delivery",
        help="webhooks: comma-separated deliveries of the events cost (full: in-server,"
        "worker process,none (recorded only))",
    )
    p.add_argument(
        "--profile", action="store_true", help="webhooks: py-spy record the delivering worker"
    )
    args = p.parse_args(argv)
    args.events_delivery = (
        [w.strip() for w in args.events_delivery.split(",")] if args.events_delivery else None
    )
    if args.out is None:
        args.out = RESULTS_DIR / "webhooks" if args.mode == "webhooks" else RESULTS_DIR
    args.webhook_impacts = args.webhook_impacts or (10_000 if args.quick else 100_000)
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.read_rounds = args.read_rounds or (1 if args.quick else 3)
    # Events on and off differ less than a ceiling and a subject, and the
    # machine's noise is the same: the webhook mode takes more rounds.
    args.rounds = args.rounds or (1 if args.quick else 5 if args.mode == "webhooks" else 3)
    args.accounts = args.accounts or (50 if args.quick else 1000)
    args.warmup = 1.0 if args.quick else 2.0
    default_sizes = "1000,10000" if args.quick else "1000,100000,1000000"
    args.sizes = [int(s) for s in (args.sizes or default_sizes).split(",")]
    args.workers = [1] if args.quick else [1, 2]
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    backends = ["sqlite"]
    pg_note = None
    if args.quick:
        pg_note = "skipped (--quick)"
    elif args.no_postgres:
        pg_note = "skipped (--no-postgres)"
    else:
        pg_note = postgres_problem()
        if pg_note is None:
            backends.append("postgresql")
    if pg_note:
        print(f"bench: PostgreSQL {pg_note}")

    wrk = ensure_wrk(allow_install=not args.no_install)
    gen = Generator(wrk, threads=1, connections=args.connections)
    logs = Path(tempfile.mkdtemp(prefix="openimpact-bench-logs-"))
    if args.mode == "webhooks":
        return _webhooks(gen, args, backends, pg_note, logs, started)
    out: dict[str, Any] = {
        "meta": _meta(args, gen, backends, pg_note),
        "writes": [],
        "reads": [],
        "public": [],
    }

    if not args.no_writes:
        for workers in args.workers:
            for backend in backends:
                out["writes"].append(_writes(gen, args, backend, workers, logs))
    if not args.no_reads:
        for backend in backends:
            out["reads"].extend(_reads(gen, args, backend, logs))
    if not args.no_public:
        out["public"].append(_public_ceiling(gen, args, logs))
        for backend in backends:
            out["public"].extend(_public(gen, args, backend, logs))

    out["meta"]["seconds"] = round(time.monotonic() - started, 1)
    summary = report.write(out, args.out)
    print(summary)
    print(f"bench: results in {args.out} (server logs in {logs})")
    return 1 if out["errors"] else 0


def _webhooks(
    gen: Generator,
    args: argparse.Namespace,
    backends: list[str],
    pg_note: str | None,
    logs: Path,
    started: float,
) -> int:
    from bench import webhooks
    from openimpact.config import Settings

    meta = _meta(args, gen, backends, pg_note)
    meta["webhook_impacts"] = args.webhook_impacts
    meta["webhook_concurrency"] = Settings().webhook_concurrency
    meta["load_average_start"] = [round(x, 2) for x in os.getloadavg()]
    out: dict[str, Any] = {"meta": meta, "webhooks": webhooks.run(gen, args, backends, logs)}
    out["meta"]["seconds"] = round(time.monotonic() - started, 1)
    meta["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    summary = webhooks.write(out, args.out)
    print(summary)
    print(f"bench: results in {args.out} (server, worker and receiver logs in {logs})")
    return 1 if out["errors"] else 0


def _meta(
    args: argparse.Namespace, gen: Generator, backends: list[str], pg_note: str | None
) -> dict[str, Any]:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False, cwd=Path(__file__).parent,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "quick": args.quick,
        "machine": {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version()},
        # The stack both the ceiling and the server run on: a new release of
        # one of these moves the ceiling itself.
        "packages": {name: _version(name) for name in STACK},
        "generator": gen.name,
        "connections": args.connections,
        "write_seconds": args.duration,
        "warmup_seconds": args.warmup,
        "read_rounds": args.read_rounds,
        "read_connections": 1,
        "sizes": args.sizes,
        "backends": backends,
        "postgresql": pg_note or "measured",
        "server": "python -m openimpact.serving (uvicorn; with 2 workers each on a socket of "
        "its own, as openimpact serve) --loop uvloop --http httptools --no-access-log, "
        "OPENIMPACT_RATE_LIMIT=off",
    }


def _writes(
    gen: Generator, args: argparse.Namespace, backend: str, workers: int, logs: Path
) -> dict[str, Any]:
    """One subject against the ceiling with as many workers, measured in turn
    (ceiling, subject, ceiling, subject, …: machine drift hits both alike), the
    ratio being the median of the rounds' ratios. 1,000 accounts writing at
    once are measured in the same rounds, right after the subject's one
    account, and compared the same way: as the store grows over the rounds,
    both see it alike. Then, on the subject alone, the paced latency and 256
    connections."""
    print(f"bench: writes  {backend:<10} {workers} worker(s) against the ceiling ...", flush=True)
    with fresh_database(backend) as fdb:
        db = fdb.open()
        try:
            _, _, key = new_account(db, "writes")
            many = [new_account(db, f"platform{n}")[2] for n in range(args.accounts)]
        finally:
            db.dispose()
        keys_file = logs / f"keys-{backend}-{workers}w.txt"
        keys_file.write_text("\n".join(many) + "\n")
        ceiling_key = "oi_live_" + secrets.token_urlsafe(32)
        run = secrets.token_hex(3)
        with (
            serve(CEILING_FACTORY, workers, {}, logs) as ceiling,
            serve(SERVER_FACTORY, workers, fdb.server_env(), logs) as server,
        ):
            results: list[LoadResult] = []
            results.append(gen.post(ceiling.base_url, ceiling_key, f"{run}cw", args.warmup))
            results.append(gen.post(server.base_url, key, f"{run}w", args.warmup))
            # Warm, as a platform's accounts are in steady state: each key's
            # first request looks the key up (later ones confirm it in the
            # batch's transaction).
            results.append(gen.post(server.base_url, f"@{keys_file}", f"{run}aw", args.warmup))
            if fdb.backend == "postgresql":
                _analyze(fdb)
            ceilings: list[LoadResult] = []
            subjects: list[LoadResult] = []
            platforms: list[LoadResult] = []
            for n in range(args.rounds):
                ceilings.append(
                    gen.post(ceiling.base_url, ceiling_key, f"{run}c{n}", args.duration)
                )
                subjects.append(gen.post(server.base_url, key, f"{run}m{n}", args.duration))
                platforms.append(
                    gen.post(server.base_url, f"@{keys_file}", f"{run}a{n}", args.duration)
                )
            peak = _median_result(subjects)
            platform = _median_result(platforms)
            rate = round(PACED_FRACTION * peak.rps, 1)
            paced = gen.post(server.base_url, key, f"{run}p", args.duration, rate=rate)
            crowd = gen.post(
                server.base_url, key, f"{run}k", args.duration, connections=args.many_connections
            )
            results += [*ceilings, *subjects, *platforms, paced, crowd]
    ratios = [s.rps / c.rps for s, c in zip(subjects, ceilings, strict=True) if c.rps]
    platform_ratios = [p.rps / s.rps for p, s in zip(platforms, subjects, strict=True) if s.rps]
    errors = sum(r.errors for r in results)
    entry = {
        "subject": backend,
        "workers": workers,
        "max": peak.to_json(),
        "rounds": [
            {
                "ceiling_rps": round(c.rps, 1),
                "subject_rps": round(s.rps, 1),
                "platform_rps": round(p.rps, 1),
            }
            for c, s, p in zip(ceilings, subjects, platforms, strict=True)
        ],
        "ceiling_rps": round(statistics.median(c.rps for c in ceilings), 1),
        "ratio": round(statistics.median(ratios), 3) if ratios else None,
        "paced_rate": rate,
        "paced": paced.to_json(),
        "many_connections": args.many_connections,
        "crowd": crowd.to_json(),
        "accounts": args.accounts,
        "platform": platform.to_json(),
        "platform_ratio": round(statistics.median(platform_ratios), 3) if platform_ratios else None,
        "errors": errors,
    }
    first_error = next((r.first_error for r in results if r.first_error), "")
    print(
        f"bench:   ceiling {entry['ceiling_rps']:8.0f} req/s, subject {peak.rps:8.0f} req/s "
        f"(x{entry['ratio']}); at {rate:.0f} req/s p50 {paced.p50_ms:.2f} ms, "
        f"p99 {paced.p99_ms:.2f} ms; {args.many_connections} connections {crowd.rps:.0f} req/s; "
        f"{args.accounts} accounts {platform.rps:.0f} req/s; errors {errors}"
        + (f" (first: {first_error})" if errors else ""),
        flush=True,
    )
    return entry


def _median_result(results: list[LoadResult]) -> LoadResult:
    return sorted(results, key=lambda r: r.rps)[(len(results) - 1) // 2]


STACK = ("fastapi", "starlette", "pydantic", "uvicorn", "uvloop", "httptools", "sqlalchemy")


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _analyze(fdb: FreshDatabase) -> None:
    """Planner statistics, as autovacuum gathers them within a minute on a
    live server. A fresh database has none, and without them PostgreSQL may
    look a customer up through the (account, env, onboarded_ms) index and
    filter by email, scanning every customer of the account on each write;
    a benchmark of seconds would measure that first minute only."""
    engine = create_engine(fdb.sqlalchemy_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("ANALYZE"))
    finally:
        engine.dispose()


def _read_urls(base: str, account: fixtures.ReadAccount, codec: Any) -> list[tuple[str, str, int]]:
    """(name, url, rows expected) of every read timed on ``account``."""
    from openimpact.auth import Caller
    from openimpact.impacts.queries import RecordQuery

    caller = Caller(account.account_id, account.user_id, "", "", fixtures.ENV, "")
    customers = account.kind == "customers"
    path = "/v1/customer_records" if customers else "/v1/records"
    label = "customer_records" if customers else "records"
    n = account.size
    urls: list[tuple[str, str, int]] = []
    for limit in (10, 1000):
        urls.append((f"{label} limit={limit} first", f"{base}{path}?limit={limit}", min(limit, n)))
        # Deep: from the middle of the listing, or from as deep as a full
        # page still fits, so every account size serves the same rows.
        # (On the smallest account a 1000-record page has nowhere deeper to
        # start than the beginning.)
        skip = min(n // 2, max(0, n - limit))
        deep = f"{base}{path}?limit={limit}"
        if skip:
            query = RecordQuery(customers, (), None, None, limit, False, None)
            deep += "&cursor=" + codec.encode(query.scope(caller), [account.time_ms[skip - 1]])
        urls.append((f"{label} limit={limit} deep", deep, min(limit, n)))
    if not customers:
        today = datetime.now(UTC).date()
        year_ago = today - timedelta(days=365)
        urls.append(("impact", f"{base}/v1/impact", 0))
        urls.append(
            (
                "impact/daily (one year)",
                f"{base}/v1/impact/daily?start_date={year_ago}&end_date={today}",
                0,
            )
        )
    return urls


def _rows(name: str, body: dict[str, Any]) -> int:
    for key in ("user_records", "customer_records", "daily_impact"):
        if key in body:
            return len(body[key])
    return 0


def _reads(
    gen: Generator, args: argparse.Namespace, backend: str, logs: Path
) -> list[dict[str, Any]]:
    from openimpact.accounts.service import server_secret
    from openimpact.pagination import CursorCodec

    print(
        f"bench: reads   {backend:<10} loading {', '.join(f'{s:,}' for s in args.sizes)} ...",
        flush=True,
    )
    with fresh_database(backend) as fdb:
        db = fdb.open()
        try:
            t0 = time.monotonic()
            accounts = fixtures.load_all(db, args.sizes)
            load_seconds = time.monotonic() - t0
            codec = CursorCodec(db.run_sync(server_secret, "cursor", write=True))
        finally:
            db.dispose()
        print(f"bench:   loaded in {load_seconds:.0f} s", flush=True)
        db = fdb.open()
        try:
            sessions = {a.account_id: _dashboard_session(db, a) for a in accounts}
        finally:
            db.dispose()
        with serve(SERVER_FACTORY, 1, fdb.server_env(), logs) as server:
            reads = [
                (account, name, url, expected, ("x-api-key", account.key))
                for account in accounts
                for name, url, expected in _read_urls(server.base_url, account, codec)
            ] + [
                (account, name, url, 0, ("Cookie", f"oi_session={sessions[account.account_id]}"))
                for account in accounts
                if account.kind == "customers"
                for name, url in _page_urls(server.base_url, account)
            ]
            problems = [
                _check_read(account, name, url, expected, credential)
                for account, name, url, expected, credential in reads
            ]
            # Round-robin slices of one second: a burst of load from elsewhere
            # on the machine then lands on every account size alike, instead of
            # on whichever size happened to be measured at the time.
            slices: list[list[LoadResult]] = [[] for _ in reads]
            for _ in range(args.read_rounds):
                for n, (_account, _name, url, _expected, (header, value)) in enumerate(reads):
                    slices[n].append(gen.get(url, value, 1, connections=1, header=header))
    entries = []
    for (account, name, _url, expected, _credential), problem, results in zip(
        reads, problems, slices, strict=True
    ):
        entries.append(
            _read_entry(backend, account, name, expected, problem, results, load_seconds)
        )
    return entries


def _dashboard_session(db: Any, account: fixtures.ReadAccount) -> str:
    """A signed-in dashboard session of the account (an owner, made directly)."""
    from openimpact.accounts.models import Account
    from openimpact.users import service as users

    def sign_in(session: Any) -> str:
        owner = users.add_user(
            session,
            session.get(Account, account.account_id),
            f"owner-{account.account_id}@bench.example",
            "owner",
            secrets.token_urlsafe(16),
        )
        return users.start_session(session, owner.id, max_ms=86_400_000)

    token: str = db.run_sync(sign_in, write=True)
    return token


def _page_urls(base: str, account: fixtures.ReadAccount) -> list[tuple[str, str]]:
    """The dashboard pages timed on ``account`` (issue 8: overview, impacts,
    and the track view of an impact from the middle of the account)."""
    from openimpact.timeutil import ms_to_iso

    middle = account.time_ms[len(account.time_ms) // 2]
    tracking_id = f"{account.user_id}-{ms_to_iso(middle)}"
    return [
        ("dashboard overview", f"{base}/dashboard"),
        ("dashboard impacts", f"{base}/dashboard/impacts"),
        ("dashboard track view", f"{base}/dashboard/impacts/{tracking_id}"),
    ]


def _check_read(
    account: fixtures.ReadAccount,
    name: str,
    url: str,
    expected: int,
    credential: tuple[str, str] | None = None,
) -> str:
    """Warm up, and check that the answer is the page it should be: a fast
    empty page would prove nothing."""
    header, value = credential or ("x-api-key", account.key)
    with httpx.Client(headers={header: value}, timeout=30) as client:
        for _ in range(5):
            response = client.get(url)
    if response.status_code != 200:
        return f"{response.status_code} {response.text[:300]}"
    if name.startswith("dashboard") and 'class="clickable-row' not in response.text:
        return "the page lists no impacts"
    if expected and _rows(name, response.json()) != expected:
        return f"expected {expected} rows, got {_rows(name, response.json())}"
    return ""


def _read_entry(
    backend: str,
    account: fixtures.ReadAccount,
    name: str,
    expected: int,
    problem: str,
    results: list[LoadResult],
    load_seconds: float,
) -> dict[str, Any]:
    """One read over all its slices: medians of the slices' percentiles."""
    result = LoadResult(
        generator=results[0].generator,
        requests=sum(r.requests for r in results),
        seconds=sum(r.seconds for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        p50_ms=statistics.median(r.p50_ms for r in results),
        p90_ms=statistics.median(r.p90_ms for r in results),
        p99_ms=statistics.median(r.p99_ms for r in results),
        max_ms=max(r.max_ms for r in results),
        first_error=next((r.first_error for r in results if r.first_error), ""),
    )
    errors = result.errors + (1 if problem else 0)
    print(
        f"bench:   {backend:<10} {account.size:>9,} {name:<32} p50 {result.p50_ms:7.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms"
        + (f"  ERROR {problem or result.first_error}" if errors else ""),
        flush=True,
    )
    return {
        "backend": backend,
        "size": account.size,
        "endpoint": name,
        "rows": expected,
        "load_seconds": round(load_seconds, 1),
        "result": result.to_json(),
        "slices_p50_ms": [round(r.p50_ms, 3) for r in results],
        "problem": problem,
        "errors": errors,
    }


# Public reads ------------------------------------------------------------------------------

# The public endpoints' own per-address limit stays on, at a budget the load
# never reaches, so its cost is part of what is measured.
PUBLIC_RATE = "100000000/second"


def _public_entry(
    subject: str, endpoint: str, result: LoadResult, problem: str = ""
) -> dict[str, Any]:
    errors = result.errors + (1 if problem else 0)
    print(
        f"bench:   {subject:<10} {endpoint:<34} {result.rps:8.0f} req/s  p50 {result.p50_ms:.2f} ms"
        f"  p99 {result.p99_ms:.2f} ms"
        + (f"  ERROR {problem or result.first_error}" if errors else ""),
        flush=True,
    )
    return {
        "subject": subject,
        "endpoint": endpoint,
        "workers": 1,
        "max": result.to_json(),
        "problem": problem,
        "errors": errors,
    }


def _public_ceiling(gen: Generator, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    print("bench: public  ceiling    1 worker ...", flush=True)
    with serve(CEILING_FACTORY, 1, {}, logs) as server:
        url = f"{server.base_url}/public/v1/profiles/bench"
        gen.get(url, "", args.warmup, connections=args.connections)
        result = gen.get(url, "", args.duration, connections=args.connections)
    return _public_entry("ceiling", "GET (no database)", result)


def _public(
    gen: Generator, args: argparse.Namespace, backend: str, logs: Path
) -> list[dict[str, Any]]:
    """GET /public/v1/profiles/{slug} and its SVG badge, closed loop, on one worker."""
    from openimpact.impacts.service import NewImpact, record_impact
    from openimpact.public.service import update_profile

    print(f"bench: public  {backend:<10} 1 worker ...", flush=True)
    entries = []
    with fresh_database(backend) as fdb:
        db = fdb.open()
        try:
            account_id, user_id, _key = new_account(db, "public")
            slug = f"bench-{secrets.token_hex(3)}"

            def publish(session: Any) -> None:
                from openimpact.auth import Caller

                caller = Caller(account_id, user_id, "", "", "production", "")
                for kind, amount in (("tree_planted", 1234), ("waste_removed", 56)):
                    record_impact(
                        session, caller, NewImpact(kind, amount, None, None, None, None, None)
                    )
                update_profile(session, account_id, slug=slug, enabled=True)

            db.run_sync(publish, write=True)
        finally:
            db.dispose()
        env = {**fdb.server_env(), "OPENIMPACT_PUBLIC_RATE_LIMIT": PUBLIC_RATE}
        with serve(SERVER_FACTORY, 1, env, logs) as server:
            for endpoint, path, check in (
                (
                    "GET /public/v1/profiles/{slug}",
                    f"/public/v1/profiles/{slug}",
                    '"tree_planted":1234',
                ),
                ("GET /badge/{slug}/tree_planted.svg", f"/badge/{slug}/tree_planted.svg", "1,234"),
            ):
                url = server.base_url + path
                response = httpx.get(url, timeout=30)
                problem = (
                    ""
                    if response.status_code == 200 and check in response.text
                    else f"{response.status_code} {response.text[:300]}"
                )
                gen.get(url, "", args.warmup, connections=args.connections)
                result = gen.get(url, "", args.duration, connections=args.connections)
                entries.append(_public_entry(backend, endpoint, result, problem))
    return entries


if __name__ == "__main__":
    sys.exit(main())
