"""Load generators: wrk with a Lua script, or a bounded asyncio client.

wrk (Debian package ``wrk``) is the generator of record: it is written in C
and costs the server little of the machine's two cores. When it is missing
and cannot be installed, a bounded asyncio client built on httpx stands in
(same connections, same duration, same bodies); its figures are lower because
Python spends more of the shared CPU to send the load, which is why the
report names the generator that produced each figure.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LUA_DIR = Path(__file__).parent / "lua"


@dataclass
class LoadResult:
    generator: str
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    first_error: str = ""

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors

    def to_json(self) -> dict[str, object]:
        out = asdict(self)
        out["rps"] = round(self.rps, 1)
        out["errors"] = self.errors
        for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms", "seconds"):
            out[k] = round(float(out[k]), 3)  # type: ignore[arg-type]
        return out


def ensure_wrk(*, allow_install: bool = True) -> str | None:
    """Path of wrk; installs the Debian package when running as root with
    apt-get, else says how and returns None (the caller falls back)."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if allow_install and apt and os.geteuid() == 0:
        print("bench: wrk not found; installing the Debian package (apt-get install wrk)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", "wrk"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"bench: {' '.join(cmd)} failed: {done.stderr.strip()[-300:]}")
                break
        found = shutil.which("wrk")
        if found:
            return found
    print(
        "bench: wrk is not installed; install it with `sudo apt-get install wrk` for figures "
        "comparable with the published ones. Falling back to the asyncio generator (httpx).",
        file=sys.stderr,
    )
    return None


class Generator:
    def __init__(self, wrk: str | None, *, threads: int, connections: int) -> None:
        self.wrk = wrk
        self.threads = threads
        self.connections = connections

    @property
    def name(self) -> str:
        return f"wrk -t{self.threads}" if self.wrk else "asyncio+httpx"

    def post(
        self,
        base_url: str,
        api_key: str,
        prefix: str,
        seconds: float,
        rate: float = 0.0,
        connections: int | None = None,
    ) -> LoadResult:
        """POST /v1/plant_tree for ``seconds``; paced at ``rate`` req/s when given.
        ``api_key`` may be ``@path``: a file of keys, one per line, used in turn."""
        if self.wrk:
            per_thread = rate / self.threads if rate else 0.0
            return self._wrk(
                "post.lua",
                base_url + "/v1/plant_tree",
                seconds,
                [api_key, prefix, f"{per_thread:.3f}"],
                connections=connections,
            )
        if api_key.startswith("@"):
            raise RuntimeError("many accounts at once needs wrk")
        return asyncio.run(
            _async_load(
                base_url,
                api_key,
                seconds,
                connections or self.connections,
                rate,
                post_prefix=prefix,
            )
        )

    def get(
        self,
        url: str,
        api_key: str,
        seconds: float,
        connections: int = 1,
        header: str = "x-api-key",
    ) -> LoadResult:
        """GET ``url`` over ``connections`` connections for ``seconds``, with
        ``api_key`` in ``header`` (or a session cookie: header "Cookie")."""
        if self.wrk:
            return self._wrk(
                "get.lua", url, seconds, [api_key, header], connections=connections, threads=1
            )
        return asyncio.run(
            _async_load(url, api_key, seconds, connections, 0.0, post_prefix=None, header=header)
        )

    def hooks(self, url: str, prefix: str, seconds: float, connections: int) -> LoadResult:
        """POST ``url`` as the webhook worker does (a distinct ``webhook-id``
        and an event-sized body each time): the receiver's own capacity.
        Without wrk, GETs of the same URL stand in (a lower bound)."""
        if self.wrk:
            return self._wrk(
                "webhook.lua", url, seconds, [prefix], connections=connections, threads=1
            )
        return asyncio.run(_async_load(url, "", seconds, connections, 0.0, post_prefix=None))

    def _wrk(
        self,
        script: str,
        url: str,
        seconds: float,
        args: list[str],
        *,
        connections: int | None = None,
        threads: int | None = None,
    ) -> LoadResult:
        assert self.wrk is not None
        cmd = [
            self.wrk,
            f"-t{threads or self.threads}",
            f"-c{connections or self.connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA_DIR / script),
            url,
            "--",
            *args,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        report = None
        first_error = ""
        for line in done.stdout.splitlines():
            if line.startswith("BENCH "):
                report = json.loads(line[6:])
            elif line.startswith("BENCH_FIRST_ERROR "):
                first_error = line[18:]
        if report is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
        return LoadResult(
            generator=self.name,
            requests=report["requests"],
            seconds=report["duration_us"] / 1e6,
            non2xx=report["non2xx"],
            socket_errors=report["connect_errors"]
            + report["read_errors"]
            + report["write_errors"]
            + report["timeouts"],
            p50_ms=report["p50_us"] / 1000,
            p90_ms=report["p90_us"] / 1000,
            p99_ms=report["p99_us"] / 1000,
            max_ms=report["max_us"] / 1000,
            first_error=first_error,
        )


async def _async_load(
    url: str,
    api_key: str,
    seconds: float,
    connections: int,
    rate: float,
    *,
    post_prefix: str | None,
    header: str = "x-api-key",
) -> LoadResult:
    """Closed loop over ``connections`` connections, or an even schedule at
    ``rate``; bounded by ``seconds`` and by a request ceiling."""
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    latencies: list[float] = []
    non2xx = 0
    socket_errors = 0
    first_error = ""
    counter = 0
    deadline = time.perf_counter() + seconds
    max_requests = 2_000_000  # a hard bound whatever the duration
    interval = connections / rate if rate else 0.0

    async with httpx.AsyncClient(limits=limits, timeout=10.0) as client:

        async def worker(index: int) -> None:
            nonlocal non2xx, socket_errors, first_error, counter
            next_slot = time.perf_counter() + index * (1 / rate if rate else 0)
            while time.perf_counter() < deadline and counter < max_requests:
                if interval:
                    wait = next_slot - time.perf_counter()
                    next_slot += interval
                    if wait > 0:
                        await asyncio.sleep(wait)
                counter += 1
                started = time.perf_counter()
                try:
                    if post_prefix is not None:
                        n = f"{post_prefix}-{counter}"
                        response = await client.post(
                            url + "/v1/plant_tree",
                            json={
                                "amount": 1,
                                "customer_email": f"c{n}@shop.example",
                                "metadata": {"order_id": n, "channel": "checkout"},
                            },
                            headers={"x-api-key": api_key, "Idempotency-Key": n},
                        )
                    else:
                        response = await client.get(url, headers={header: api_key})
                except httpx.HTTPError:
                    socket_errors += 1
                    continue
                latencies.append(time.perf_counter() - started)
                if not 200 <= response.status_code <= 299:
                    non2xx += 1
                    if not first_error:
                        first_error = f"{response.status_code} {response.text[:300]}"

        started = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(connections)))
        elapsed = time.perf_counter() - started

    def pct(q: float) -> float:
        if not latencies:
            return 0.0
        if len(latencies) == 1:
            return latencies[0] * 1000
        return statistics.quantiles(latencies, n=1000, method="inclusive")[int(q * 10) - 1] * 1000

    return LoadResult(
        generator="asyncio+httpx",
        requests=len(latencies),
        seconds=elapsed,
        non2xx=non2xx,
        socket_errors=socket_errors,
        p50_ms=pct(50),
        p90_ms=pct(90),
        p99_ms=pct(99),
        max_ms=max(latencies, default=0.0) * 1000,
        first_error=first_error,
    )
