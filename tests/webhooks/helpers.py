from __future__ import annotations

import time
from typing import Any

from openimpact.webhooks import delivery
from tests.factories import Api, Caller


def endpoint(me: Caller, url: str, **fields: Any) -> dict[str, Any]:
    response = me.post("/v1/webhook_endpoints", {"url": url, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def deliver(api: Api) -> dict[str, int]:
    """One worker pass of webhook delivery."""
    return delivery.deliver_webhooks(api.db, api.client.app.state.settings)  # type: ignore[attr-defined]


def deliver_until(api: Api, done: Any, timeout: float = 20.0) -> None:
    """Worker passes until ``done()`` (retries come due within milliseconds)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "deliveries did not finish"
        deliver(api)
        time.sleep(0.01)


def deliveries(me: Caller, endpoint_id: str) -> list[dict[str, Any]]:
    return me.walk(f"/v1/webhook_endpoints/{endpoint_id}/deliveries", "deliveries", limit=100)


# On PostgreSQL the feed shows an event only once every transaction older than
# it has ended, in any database of the server (webhooks/service.py,
# list_events), so a test running beside others may have to wait for theirs.
FEED_WAIT_SECONDS = 30.0


def feed(me: Caller, count: int, *, limit: int = 100) -> list[dict[str, Any]]:
    """The whole events feed, once it holds ``count`` events."""
    deadline = time.monotonic() + FEED_WAIT_SECONDS
    while True:
        events = me.walk("/v1/events", "events", limit=limit)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def feed_page(me: Caller, count: int, **params: Any) -> dict[str, Any]:
    """One page of the events feed (``params`` as the query), once it holds
    ``count`` events."""
    deadline = time.monotonic() + FEED_WAIT_SECONDS
    while True:
        page: dict[str, Any] = me.get("/v1/events", **params).json()
        if len(page["events"]) >= count or time.monotonic() > deadline:
            return page
        time.sleep(0.05)
