"""Webhook endpoints and the events feed: their rules (the API and the
dashboard both call these).

An endpoint belongs to an account and environment and receives that
environment's events, all of them or the ``event_types`` it names, signed with
its secret (Standard Webhooks). Deliveries are made by the worker
(webhooks/delivery.py); here are the endpoints, their secrets and rotation,
the delivery log, resends, recovery and the test ``ping``.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, exists, literal, or_, select, text, tuple_, update
from sqlalchemy.orm import Session

from openimpact import sql
from openimpact.auth import Caller
from openimpact.db import table
from openimpact.errors import Conflict, NotFound, ValidationFailed
from openimpact.outbox import service as outbox
from openimpact.outbox.models import OutboxMessage
from openimpact.pagination import CursorCodec, fingerprint
from openimpact.timeutil import ms_to_iso, now_ms, parse_iso_ms
from openimpact.webhooks import guard
from openimpact.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from openimpact.webhooks.schemas import EndpointCreate, EndpointPatch

# The events feed and recovery reach back this far; older events are deleted.
RETENTION_DAYS = 30
ROTATION_OVERLAP_MS = 24 * 3_600_000
MAX_ENDPOINTS = 20  # per account and environment

_outbox = table(OutboxMessage)
_messages = table(WebhookMessage)
_attempts = table(WebhookAttempt)


def _token(nbytes: int) -> str:
    return base64.b32encode(secrets.token_bytes(nbytes)).decode("ascii").lower().rstrip("=")


def new_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_delivery_id() -> str:
    return "dlv_" + _token(15)


def signing_secrets(endpoint: Any, now: int) -> list[str]:
    """The secrets a delivery is signed with: the current one, and the
    previous one during the 24 hours after a rotation."""
    found = [endpoint.secret]
    if (
        endpoint.previous_secret
        and endpoint.previous_secret_until_ms is not None
        and endpoint.previous_secret_until_ms > now
    ):
        found.append(endpoint.previous_secret)
    return found


def endpoint_out(endpoint: WebhookEndpoint) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": endpoint.endpoint_id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": endpoint.event_types,
        "enabled": endpoint.enabled,
        "created_on": ms_to_iso(endpoint.created_ms),
        "updated_on": ms_to_iso(endpoint.updated_ms),
    }
    if endpoint.disabled_reason is not None:
        out["disabled_reason"] = endpoint.disabled_reason
    return out


def _types(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    return sorted(set(values), key=list(outbox.EVENT_TYPES).index)


# How long the guard may wait for DNS when an endpoint is saved.
RESOLVE_SECONDS = 5.0


class CheckedUrl(str):
    """A URL the SSRF guard passed (made only by :func:`check_url`)."""

    __slots__ = ()


async def check_url(url: str, *, allow_private: bool) -> CheckedUrl:
    """The guard's check of a URL to save, before any transaction is opened
    and off the event loop: DNS may be slow, and must hold no lock meanwhile."""
    try:
        checked = await asyncio.wait_for(
            asyncio.to_thread(guard.check_url, url, allow_private=allow_private),
            RESOLVE_SECONDS,
        )
    except TimeoutError:
        host = urlsplit(url).hostname or url
        raise ValidationFailed(
            f"url: the host {host} did not resolve within {RESOLVE_SECONDS:g} s"
        ) from None
    return CheckedUrl(checked)


def create_endpoint(
    session: Session, caller: Caller, body: EndpointCreate, url: CheckedUrl
) -> dict[str, Any]:
    """A new endpoint for ``url``, which :func:`check_url` passed (``body.url``
    as the caller sent it)."""
    count = len(
        session.scalars(
            select(WebhookEndpoint.id).where(
                WebhookEndpoint.account_id == caller.account_id,
                WebhookEndpoint.env == caller.env,
                WebhookEndpoint.deleted_ms.is_(None),
            )
        ).all()
    )
    if count >= MAX_ENDPOINTS:
        raise Conflict(f"an environment has at most {MAX_ENDPOINTS} endpoints; delete one first")
    now = now_ms()
    endpoint = WebhookEndpoint(
        endpoint_id="we_" + _token(15),
        account_id=caller.account_id,
        env=caller.env,
        url=url,
        description=body.description,
        event_types=_types(body.event_types),
        enabled=True,
        secret=new_secret(),
        created_ms=now,
        updated_ms=now,
    )
    session.add(endpoint)
    session.flush()
    return {**endpoint_out(endpoint), "secret": endpoint.secret}


def find_endpoint(session: Session, caller: Caller, endpoint_id: str) -> WebhookEndpoint:
    """The caller's own endpoint, or the same 404 for another's or none."""
    found = session.scalar(
        select(WebhookEndpoint).where(
            WebhookEndpoint.endpoint_id == endpoint_id,
            WebhookEndpoint.account_id == caller.account_id,
            WebhookEndpoint.env == caller.env,
            WebhookEndpoint.deleted_ms.is_(None),
        )
    )
    if found is None:
        raise NotFound("no webhook endpoint with this id")
    return found


def list_endpoints(
    session: Session, caller: Caller, limit: int, cursor: str | None, codec: CursorCodec
) -> tuple[list[dict[str, Any]], str | None]:
    scope = fingerprint("webhook_endpoints", caller.account_id, caller.env)
    query = select(WebhookEndpoint).where(
        WebhookEndpoint.account_id == caller.account_id,
        WebhookEndpoint.env == caller.env,
        WebhookEndpoint.deleted_ms.is_(None),
    )
    if cursor is not None:
        (after,) = codec.decode(cursor, scope, 1)
        query = query.where(WebhookEndpoint.id > after)
    rows = list(session.scalars(query.order_by(WebhookEndpoint.id).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = codec.encode(scope, [page[-1].id]) if len(rows) > limit and page else None
    return [endpoint_out(e) for e in page], next_cursor


def update_endpoint(
    session: Session,
    caller: Caller,
    endpoint_id: str,
    patch: EndpointPatch,
    url: CheckedUrl | None = None,
) -> dict[str, Any]:
    """Change what ``patch`` names; a new URL comes as ``url``, which
    :func:`check_url` passed."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    fields = patch.model_fields_set
    if "url" in fields:
        if patch.url is None or url is None:
            raise ValidationFailed("url: must be an https:// (or http://) URL")
        endpoint.url = url
    if "description" in fields:
        endpoint.description = patch.description
    if "event_types" in fields:
        endpoint.event_types = _types(patch.event_types)
    if "enabled" in fields:
        if patch.enabled is None:
            raise ValidationFailed("enabled: must be true or false")
        if patch.enabled and not endpoint.enabled:
            endpoint.disabled_reason = None
            endpoint.failing_since_ms = None
        elif not patch.enabled and endpoint.enabled:
            endpoint.disabled_reason = "disabled by a user"
        endpoint.enabled = patch.enabled
    endpoint.updated_ms = now_ms()
    session.flush()
    return endpoint_out(endpoint)


def delete_endpoint(session: Session, caller: Caller, endpoint_id: str) -> dict[str, Any]:
    """Stop deliveries for good; the endpoint's log goes with it."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    now = now_ms()
    endpoint.deleted_ms = endpoint.updated_ms = now
    endpoint.enabled = False
    session.execute(
        update(_messages)
        .where(_messages.c.endpoint_pk == endpoint.id, _messages.c.status == "pending")
        .values(status="failed", updated_ms=now)
    )
    return {"id": endpoint.endpoint_id, "deleted": True}


def reveal_secret(session: Session, caller: Caller, endpoint_id: str) -> dict[str, Any]:
    endpoint = find_endpoint(session, caller, endpoint_id)
    out: dict[str, Any] = {"secret": endpoint.secret}
    now = now_ms()
    if len(signing_secrets(endpoint, now)) > 1:
        assert endpoint.previous_secret_until_ms is not None
        out["previous_secret_expires_on"] = ms_to_iso(endpoint.previous_secret_until_ms)
    return out


def rotate_secret(session: Session, caller: Caller, endpoint_id: str) -> dict[str, Any]:
    """A new secret; the current one keeps signing beside it for 24 hours."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    now = now_ms()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_until_ms = now + ROTATION_OVERLAP_MS
    endpoint.secret = new_secret()
    endpoint.updated_ms = now
    session.flush()
    return reveal_secret(session, caller, endpoint_id)


# The delivery log ---------------------------------------------------------------------------


def attempt_out(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.delivery_id,
        "event_id": row.event_id,
        "event_type": row.event_type,
        "attempted_on": ms_to_iso(row.attempted_ms),
        "trigger": row.trigger,
        "succeeded": row.succeeded,
        "latency_ms": row.latency_ms,
    }
    for name in ("status_code", "response", "error"):
        value = getattr(row, name)
        if value is not None:
            out[name] = value
    return out


def list_deliveries(
    session: Session,
    caller: Caller,
    endpoint_id: str,
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
) -> tuple[list[dict[str, Any]], str | None]:
    """Every attempt to the endpoint, newest first."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    scope = fingerprint("webhook_deliveries", caller.account_id, caller.env, endpoint.id)
    query = select(WebhookAttempt).where(WebhookAttempt.endpoint_pk == endpoint.id)
    if cursor is not None:
        (before,) = codec.decode(cursor, scope, 1)
        query = query.where(WebhookAttempt.id < before)
    rows = list(session.scalars(query.order_by(WebhookAttempt.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    next_cursor = codec.encode(scope, [page[-1].id]) if len(rows) > limit and page else None
    return [attempt_out(a) for a in page], next_cursor


_REQUEUE = ["status", "tries", "next_attempt_ms", "trigger", "updated_ms"]


def _queue(session: Session, endpoint_pk: int, event_pk: int, trigger: str, now: int) -> None:
    """Send the event to the endpoint now, on a fresh retry schedule. A
    message a worker is sending meanwhile keeps its lease: the new version
    makes that attempt leave this request standing (delivery.record)."""
    sql.upsert(
        session.connection(),
        _messages,
        ["endpoint_pk", "event_pk"],
        [_message_row(endpoint_pk, event_pk, trigger, now)],
        _REQUEUE,
        increment=("version",),
    )


def _message_row(
    endpoint_pk: int, event_pk: int, trigger: str, now: int, lease_ms: int | None = None
) -> dict[str, Any]:
    return {
        "endpoint_pk": endpoint_pk,
        "event_pk": event_pk,
        "status": "pending",
        "tries": 0,
        "next_attempt_ms": now,
        "trigger": trigger,
        "lease_ms": lease_ms,
        "version": 0,
        "created_ms": now,
        "updated_ms": now,
    }


def resend(session: Session, caller: Caller, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
    """Send the event of one logged attempt again."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    attempt = session.scalar(
        select(WebhookAttempt).where(
            WebhookAttempt.delivery_id == delivery_id, WebhookAttempt.endpoint_pk == endpoint.id
        )
    )
    if attempt is None:
        raise NotFound("no delivery with this id for this endpoint")
    _check_enabled(endpoint)
    _queue(session, endpoint.id, attempt.event_pk, "resend", now_ms())
    return {"endpoint_id": endpoint.endpoint_id, "event_id": attempt.event_id, "status": "queued"}


def _check_enabled(endpoint: WebhookEndpoint) -> None:
    if not endpoint.enabled:
        raise Conflict("the endpoint is disabled; enable it first (PATCH with enabled: true)")


def _subscribed(endpoint: WebhookEndpoint) -> Any:
    o = _outbox
    types = endpoint.event_types or list(outbox.EVENT_TYPES)
    return and_(
        o.c.kind == outbox.EVENT,
        o.c.account_id == endpoint.account_id,
        o.c.env == endpoint.env,
        o.c.endpoint_pk.is_(None),
        o.c.event_type.in_(types),
        o.c.event_type.is_not(None),  # the feed index's own predicate (outbox/models.py)
    )


def recover(session: Session, caller: Caller, endpoint_id: str, since: str) -> dict[str, Any]:
    """Queue every event since ``since`` that the endpoint subscribes to,
    written after the endpoint was, whose first attempt is over, and that it
    has not received (failed, or written while it was disabled): one INSERT
    … SELECT, however many."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    since_ms = parse_iso_ms(since)
    now = now_ms()
    oldest = now - RETENTION_DAYS * 86_400_000
    if since_ms is None:
        raise ValidationFailed("since: must be an ISO-8601 UTC timestamp like 2026-12-01T00:00:00Z")
    if since_ms < oldest:
        raise ValidationFailed(
            f"since: at most {RETENTION_DAYS} days ago (events are kept {RETENTION_DAYS} days)"
        )
    if since_ms > now:
        raise ValidationFailed("since: must not be in the future")
    _check_enabled(endpoint)
    o, m, a = _outbox, _messages, _attempts
    received = exists().where(
        a.c.endpoint_pk == endpoint.id, a.c.event_pk == o.c.id, a.c.succeeded.is_(True)
    )
    queued = exists().where(
        m.c.endpoint_pk == endpoint.id, m.c.event_pk == o.c.id, m.c.status == "pending"
    )
    rows = select(
        literal(endpoint.id).label("endpoint_pk"),
        o.c.id.label("event_pk"),
        literal("pending").label("status"),
        literal(0).label("tries"),
        literal(now).label("next_attempt_ms"),
        literal("recover").label("trigger"),
        literal(0).label("version"),
        literal(now).label("created_ms"),
        literal(now).label("updated_ms"),
    ).where(
        _subscribed(endpoint),
        o.c.created_ms >= max(since_ms, endpoint.created_ms),
        or_(o.c.delivered_ms.is_not(None), o.c.failed_ms.is_not(None)),
        ~received,
        ~queued,
    )
    count = sql.upsert(
        session.connection(),
        m,
        ["endpoint_pk", "event_pk"],
        rows,
        _REQUEUE,
        columns=[
            "endpoint_pk",
            "event_pk",
            "status",
            "tries",
            "next_attempt_ms",
            "trigger",
            "version",
            "created_ms",
            "updated_ms",
        ],
        increment=("version",),
    )
    return {"endpoint_id": endpoint.endpoint_id, "queued": count}


@dataclass(frozen=True, slots=True)
class TestPing:
    endpoint_id: str
    event_id: str
    message_pk: int
    lease: int  # held by the request that sends it (delivery.deliver_now)


def queue_test(session: Session, caller: Caller, endpoint_id: str, lease_seconds: int) -> TestPing:
    """A ``ping`` event for this endpoint alone, queued to be sent now by the
    caller, which holds its lease (a worker sends it only if the caller
    fails to)."""
    endpoint = find_endpoint(session, caller, endpoint_id)
    _check_enabled(endpoint)
    now = now_ms()
    lease = now + lease_seconds * 1000
    row = outbox.event(
        outbox.PING,
        caller.account_id,
        caller.env,
        {
            "endpoint_id": endpoint.endpoint_id,
            "message": "A test event: your endpoint is reachable and can verify signatures.",
        },
        now,
        endpoint_pk=endpoint.id,
    )
    event_pk = (
        session.connection().execute(_outbox.insert().returning(_outbox.c.id), row).scalar_one()
    )
    message_pk = (
        session.connection()
        .execute(
            _messages.insert().returning(_messages.c.id),
            _message_row(endpoint.id, event_pk, "test", now, lease),
        )
        .scalar_one()
    )
    return TestPing(endpoint.endpoint_id, row["event_id"], message_pk, lease)


def attempt_of_message(session: Session, message_pk: int) -> dict[str, Any] | None:
    """The latest attempt of a queued message (the test's answer)."""
    message = session.get(WebhookMessage, message_pk)
    if message is None:
        return None
    row = session.scalar(
        select(WebhookAttempt)
        .where(
            WebhookAttempt.endpoint_pk == message.endpoint_pk,
            WebhookAttempt.event_pk == message.event_pk,
        )
        .order_by(WebhookAttempt.id.desc())
        .limit(1)
    )
    return attempt_out(row) if row is not None else None


# The events feed ----------------------------------------------------------------------------


# The oldest transaction still running: below it no event can appear any more.
_HORIZON_PG = text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def list_events(
    session: Session,
    caller: Caller,
    event_type: str | None,
    limit: int,
    cursor: str | None,
    codec: CursorCodec,
) -> tuple[list[dict[str, Any]], str | None]:
    """The environment's events of the last 30 days, oldest first.

    Every page that holds events carries a cursor, the last one included: a
    client keeps it and calls again later for what came since. On
    PostgreSQL the order is (writing transaction, id), up to the oldest
    transaction still running (outbox/models.py says why); on SQLite, id.
    """
    o = _outbox
    scope = fingerprint("events", caller.account_id, caller.env, event_type)
    since = now_ms() - RETENTION_DAYS * 86_400_000
    postgres = session.connection().dialect.name == "postgresql"
    query = select(o.c.id, o.c.txid, o.c.event_id, o.c.payload).where(
        o.c.account_id == caller.account_id,
        o.c.env == caller.env,
        o.c.created_ms >= since,
    )
    if event_type is not None:
        query = query.where(o.c.event_type == event_type)
    else:
        # event_type IS NOT NULL: the predicate of the feed's index (outbox/models.py).
        query = query.where(
            o.c.kind == outbox.EVENT, o.c.event_type.is_not(None), o.c.endpoint_pk.is_(None)
        )
    settled = o.c.txid < _HORIZON_PG if postgres else o.c.txid.is_(None)
    query = query.where(settled)
    if cursor is not None:
        after_txid, after_id = codec.decode(cursor, scope, 2)
        if postgres:
            query = query.where(tuple_(o.c.txid, o.c.id) > tuple_(after_txid, after_id))
        else:
            query = query.where(o.c.id > after_id)
    order = (o.c.txid, o.c.id) if postgres else (o.c.id,)
    page = session.execute(query.order_by(*order).limit(limit)).all()
    next_cursor = codec.encode(scope, [page[-1].txid or 0, page[-1].id]) if page else None
    return [{"id": r.event_id, **r.payload} for r in page], next_cursor
