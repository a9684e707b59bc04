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


def make_limiter(rate: str, redis_url: str | None) -> Limiter | None:
    if rate == "off":
        return None
    item = parse(rate)
    storage: Storage
    if redis_url:
        # Bounded waits and exceptions of one kind, so that an unreachable
        # Redis costs a request at most a second (see enforce_rate_limit).
        storage = RedisStorage(
            "async+" + redis_url,
            implementation="redispy",
            key_prefix="openimpact",
            wrap_exceptions=True,
            socket_timeout=0.5,
            socket_connect_timeout=0.5,
        )
    else:
        storage = MemoryStorage()
    return Limiter(item=item, strategy=FixedWindowRateLimiter(storage), storage=storage)


async def enforce_rate_limit(limiter: Limiter | None, identity: str) -> None:
    if limiter is None:
        return
    # The key hash identifies the key without putting the key itself anywhere.
    try:
        if await limiter.strategy.hit(limiter.item, "key", identity[:32]):
            return
        stats = await limiter.strategy.get_window_stats(limiter.item, "key", identity[:32])
    except StorageError as exc:
        # The limit protects the service; losing its shared counter must not
        # take the service down: the request goes through, and the log says why.
        log.warning("rate limit storage unavailable, request not limited: %s", exc)
        return
    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
    raise RateLimited(
        f"rate limit of {limiter.item.amount} requests per "
        f"{limiter.item.multiples if limiter.item.multiples > 1 else ''}"
        f"{limiter.item.GRANULARITY.name} exceeded for this API key; retry after {retry_after}s",
        headers={"Retry-After": str(retry_after)},
    )
