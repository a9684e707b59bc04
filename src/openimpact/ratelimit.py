"""Per-key rate limits with the ``limits`` library.

In-process memory by default; Redis when ``REDIS_URL`` is set, so that every
worker draws on one budget per key.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError

from openimpact.errors import RateLimited

log = logging.getLogger(__name__)


@dataclass
class Limiter:
    item: RateLimitItem
    strategy: FixedWindowRateLimiter | MovingWindowRateLimiter
    storage: Storage


def make_storage(redis_url: str | None) -> Storage:
    if redis_url:
        # Bounded waits and exceptions of one kind, so that an unreachable
        # Redis costs a request at most a second (see enforce_rate_limit).
        return RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix="openimpact",
            wrap_exceptions=True,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
    return MemoryStorage()


def make_limiter(rate: str, redis_url: str | None) -> Limiter | None:
    if rate == "off":
        return None
    storage = make_storage(redis_url)
    return Limiter(item=parse(rate), strategy=FixedWindowRateLimiter(storage), storage=storage)


async def retry_after(limiter: Limiter, *identity: str) -> int | None:
    """Count one hit for ``identity``; None while within the limit, else the
    seconds until the next hit is allowed. An unreachable shared store lets
    the hit through (the policy of enforce_rate_limit)."""
    try:
        if await limiter.strategy.hit(limiter.item, *identity):
            return None
        stats = await limiter.strategy.get_window_stats(limiter.item, *identity)
    except StorageError as exc:
        log.warning("rate limit storage unavailable, request not limited: %s", exc)
        return None
    return max(1, math.ceil(stats.reset_time - time.time()))


async def enforce_rate_limit(limiter: Limiter | None, identity: str) -> None:
    if limiter is None:
        return
    # The key hash identifies the key without putting the key itself anywhere.
    # The limit protects the service; losing its shared counter must not
    # take the service down: the request goes through, and the log says why.
    wait = await retry_after(limiter, "key", identity[:32])
    if wait is None:
        return
    raise RateLimited(
        f"rate limit of {limiter.item.amount} requests per "
        f"{limiter.item.multiples if limiter.item.multiples > 1 else ''}"
        f"{limiter.item.GRANULARITY.name} exceeded for this API key; retry after {wait}s",
        headers={"Retry-After": str(wait)},
    )
