"""Delivering events to webhook endpoints (the worker's job).

    event written ──claim (lease)──▶ first attempt to every subscribed endpoint
         (outbox)                        ├─ 2xx ─────────▶ done
                                         └─ otherwise ───▶ webhook_messages: retries
                                                            5 s, 5 min, 30 min, 2 h, 5 h,
                                                            10 h, 14 h, 20 h, 24 h

At least once, in no promised order. An event is claimed with a lease (one
UPDATE for a chunk, ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so of several
workers one sends it; a worker that dies while sending lets the lease run out
and the event is sent again, with the same ``webhook-id``. Retries, resends,
recoveries and test pings are ``webhook_messages`` rows, claimed the same way.

Each request is signed with the ``standardwebhooks`` library (and with the
previous secret too for 24 hours after a rotation), has a timeout, follows no
redirect, and connects only to addresses the SSRF guard allowed (guard.py).
A 410 disables the endpoint; so does failing every attempt for five days, and
the account's owners are emailed either way. ``Retry-After`` on 429, 502, 503
and 504 puts the next attempt no earlier than it says.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session
from standardwebhooks import Webhook

from openimpact import sql
from openimpact.accounts.models import Account
from openimpact.config import Settings
from openimpact.db import Database, rowcount, table
from openimpact.outbox import service as outbox
from openimpact.outbox.models import OutboxMessage
from openimpact.timeutil import now_ms
from openimpact.users.models import User
from openimpact.webhooks import guard
from openimpact.webhooks.models import WebhookAttempt, WebhookEndpoint, WebhookMessage
from openimpact.webhooks.service import RETENTION_DAYS, new_delivery_id, signing_secrets

log = logging.getLogger(__name__)

# Standard Webhooks' schedule: the delay before each retry, in seconds.
RETRY_DELAYS = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
MAX_TRIES = len(RETRY_DELAYS) + 1
JITTER = 0.1
RETRY_AFTER_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER_S = 86400
RESPONSE_BYTES = 1024
USER_AGENT = "OpenImpact-Webhooks/1"
# One worker pass sends at most this long, so the worker's other jobs run too.
PASS_SECONDS = 60.0
# An event leased this many times without its attempts being recorded (a
# worker dying on it each time) is given up instead of stalling the rest.
MAX_EVENT_CLAIMS = 10

_outbox = table(OutboxMessage)
_endpoints = table(WebhookEndpoint)
_messages = table(WebhookMessage)
_attempts = table(WebhookAttempt)


@dataclass(frozen=True, slots=True)
class Target:
    pk: int
    url: str
    secrets: tuple[str, ...]


@dataclass(slots=True)
class Send:
    """One request to make: an event to an endpoint."""

    target: Target
    event_pk: int
    event_id: str
    event_type: str
    body: str
    trigger: str  # first | retry | resend | recover | test
    message_pk: int | None = None  # None for a first attempt
    tries: int = 0  # attempts before this one on the message's schedule
    lease: int | None = None  # the message's lease held while sending it
    version: int = 0  # the message's version when it was leased


@dataclass(slots=True)
class Answer:
    send: Send
    attempted_ms: int
    latency_ms: int
    status: int | None = None
    response: str | None = None
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(slots=True)
class Work:
    sends: list[Send] = field(default_factory=list)
    events: list[int] = field(default_factory=list)  # claimed, to mark delivered
    claimed: int = 0  # rows leased (events with no endpoint are done at once)


def retry_delay_ms(tries: int, scale: float, retry_after_s: float | None = None) -> int:
    """Delay before the next attempt after ``tries`` failed ones (with jitter)."""
    base = RETRY_DELAYS[min(tries, len(RETRY_DELAYS)) - 1] * scale
    delay = base * random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    return max(1, int(delay * 1000))


def parse_retry_after(value: str | None, now: float) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


# Claiming -----------------------------------------------------------------------------------


def _targets(session: Session, keys: set[tuple[int, str]], now: int) -> dict[Any, list[Any]]:
    """The enabled endpoints of each (account, env)."""
    if not keys:
        return {}
    accounts = sorted({a for a, _ in keys})
    rows = session.execute(
        select(_endpoints).where(
            _endpoints.c.account_id.in_(accounts),
            _endpoints.c.enabled.is_(True),
            _endpoints.c.deleted_ms.is_(None),
        )
    ).all()
    found: dict[Any, list[Any]] = {}
    for row in rows:
        if (row.account_id, row.env) in keys:
            found.setdefault((row.account_id, row.env), []).append(row)
    return found


def _target(row: Any, now: int) -> Target:
    return Target(row.id, row.url, tuple(signing_secrets(row, now)))


def _body(payload: Any) -> str:
    return orjson.dumps(payload).decode()


def claim_events(
    session: Session, now: int, limit: int, lease_ms: int, max_sends: int | None = None
) -> Work:
    """Lease up to ``limit`` new events and plan their first attempts (at
    most ``max_sends`` of them: events beyond are handed back); an event no
    endpoint subscribes to is done at once, and one that was claimed
    :data:`MAX_EVENT_CLAIMS` times without its attempts being recorded is
    given up (``recover`` can send it again)."""
    o = _outbox
    work = Work()
    _give_up_events(session, now)
    rows = sql.claim(
        session.connection(),
        o,
        [
            o.c.kind == outbox.EVENT,
            o.c.delivered_ms.is_(None),
            o.c.failed_ms.is_(None),
            o.c.next_attempt_ms <= now,
        ],
        [o.c.next_attempt_ms, o.c.id],
        limit,
        {"next_attempt_ms": now + lease_ms, "attempts": o.c.attempts + 1},
        [
            o.c.id,
            o.c.account_id,
            o.c.env,
            o.c.payload,
            o.c.event_id,
            o.c.event_type,
            o.c.created_ms,
        ],
    )
    work.claimed = len(rows)
    if not rows:
        return work
    endpoints = _targets(session, {(r.account_id, r.env) for r in rows}, now)
    none: list[int] = []
    returned: list[int] = []
    for row in sorted(rows, key=lambda r: r.id):
        wanted = [
            e
            for e in endpoints.get((row.account_id, row.env), ())
            if e.created_ms <= row.created_ms
            and (e.event_types is None or row.event_type in e.event_types)
        ]
        if not wanted:
            none.append(row.id)
            continue
        if max_sends is not None and work.sends and len(work.sends) + len(wanted) > max_sends:
            returned.append(row.id)
            continue
        body = _body(row.payload)
        work.events.append(row.id)
        for endpoint in wanted:
            work.sends.append(
                Send(_target(endpoint, now), row.id, row.event_id, row.event_type, body, "first")
            )
    _mark_delivered(session, none, now)
    if returned:
        session.execute(
            update(o)
            .where(o.c.id.in_(returned))
            .values(next_attempt_ms=now, attempts=o.c.attempts - 1)
        )
    return work


def _give_up_events(session: Session, now: int) -> None:
    o = _outbox
    given_up = session.execute(
        update(o)
        .where(
            o.c.kind == outbox.EVENT,
            o.c.delivered_ms.is_(None),
            o.c.failed_ms.is_(None),
            o.c.next_attempt_ms <= now,
            o.c.attempts >= MAX_EVENT_CLAIMS,
        )
        .values(
            failed_ms=now,
            last_error=f"claimed {MAX_EVENT_CLAIMS} times and never recorded; use recover",
        )
    )
    if rowcount(given_up):
        log.error(
            "gave up %d event(s) claimed %d times without their attempts being recorded",
            rowcount(given_up),
            MAX_EVENT_CLAIMS,
        )


def claim_messages(
    session: Session,
    now: int,
    limit: int,
    lease_ms: int,
    *,
    only: Sequence[int] | None = None,
    lease: int | None = None,
) -> Work:
    """Lease up to ``limit`` due retries, resends, recoveries and pings of
    enabled endpoints; or the messages ``only`` that hold ``lease`` (a test
    ping, leased to the request that queued it)."""
    m, e, o = _messages, _endpoints, _outbox
    enabled = (
        select(e.c.id)
        .where(e.c.id == m.c.endpoint_pk, e.c.enabled.is_(True), e.c.deleted_ms.is_(None))
        .exists()
    )
    due: list[Any] = [m.c.status == "pending", m.c.next_attempt_ms <= now, enabled]
    if only is not None:
        due.append(m.c.id.in_(list(only)))
    if lease is not None:
        due.append(m.c.lease_ms == lease)
    else:
        due.append(or_(m.c.lease_ms.is_(None), m.c.lease_ms <= now))
    new_lease = now + lease_ms
    rows = sql.claim(
        session.connection(),
        m,
        due,
        [m.c.next_attempt_ms, m.c.id],
        limit,
        {"lease_ms": new_lease, "updated_ms": now},
        [m.c.id, m.c.endpoint_pk, m.c.event_pk, m.c.tries, m.c.trigger, m.c.version],
    )
    work = Work(claimed=len(rows))
    if not rows:
        return work
    events = {
        r.id: r
        for r in session.execute(
            select(o.c.id, o.c.payload, o.c.event_id, o.c.event_type).where(
                o.c.id.in_(sorted({r.event_pk for r in rows}))
            )
        )
    }
    targets = {
        r.id: _target(r, now)
        for r in session.execute(
            select(_endpoints).where(_endpoints.c.id.in_(sorted({r.endpoint_pk for r in rows})))
        )
    }
    bodies: dict[int, str] = {}
    for row in rows:
        found = events.get(row.event_pk)
        if found is None:  # deleted with its account meanwhile
            continue
        body = bodies.get(row.event_pk) or bodies.setdefault(row.event_pk, _body(found.payload))
        trigger = "retry" if row.trigger == "retry" or row.tries > 0 else row.trigger
        work.sends.append(
            Send(
                targets[row.endpoint_pk],
                row.event_pk,
                found.event_id,
                found.event_type,
                body,
                trigger,
                message_pk=row.id,
                tries=row.tries,
                lease=new_lease,
                version=row.version,
            )
        )
    return work


def _mark_delivered(session: Session, event_pks: list[int], now: int) -> None:
    o = _outbox
    for start in range(0, len(event_pks), outbox.ROWS_PER_INSERT):
        session.execute(
            update(o)
            .where(o.c.id.in_(event_pks[start : start + outbox.ROWS_PER_INSERT]))
            .values(delivered_ms=now)
        )


# Sending ------------------------------------------------------------------------------------


def headers_for(send: Send, at: float) -> dict[str, str]:
    """The Standard Webhooks headers: id, timestamp and one ``v1,`` signature per secret."""
    stamp = datetime.fromtimestamp(int(at), tz=UTC)
    signatures = " ".join(
        Webhook(secret).sign(send.event_id, stamp, send.body) for secret in send.target.secrets
    )
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": send.event_id,
        "webhook-timestamp": str(int(at)),
        "webhook-signature": signatures,
    }


def _text(raw: str | bytes | None) -> str | None:
    """Text for the log: valid UTF-8 with no NUL (PostgreSQL stores neither)."""
    if raw is None:
        return None
    value = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    value = value.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return value or None


class Sender:
    """Bounded concurrent HTTP: at most ``concurrency`` requests in flight,
    and at most ``per_endpoint`` to one endpoint, so a slow receiver holds
    back its own events only. The timeout runs from the moment a request
    has its turn, not while it waits for one."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        self.http = http
        self.timeout = settings.webhook_timeout_seconds
        self.allow_private = settings.webhooks_allow_private
        self.slots = asyncio.Semaphore(settings.webhook_concurrency)
        self.per_endpoint = max(1, settings.webhook_concurrency // 4)
        self.endpoint_slots: dict[int, asyncio.Semaphore] = {}

    async def send(self, send: Send) -> Answer:
        slot = self.endpoint_slots.setdefault(send.target.pk, asyncio.Semaphore(self.per_endpoint))
        async with slot, self.slots:
            return await self._send(send)

    async def _send(self, send: Send) -> Answer:
        started = time.monotonic()
        at = time.time()
        answer = Answer(send, int(at * 1000), 0)
        try:
            host = urlsplit(send.target.url).hostname or ""
            guard.check_literal_host(host, allow_private=self.allow_private)
            async with asyncio.timeout(self.timeout):
                async with self.http.post(
                    send.target.url,
                    data=send.body.encode(),
                    headers=headers_for(send, at),
                    allow_redirects=False,
                ) as response:
                    answer.status = response.status
                    answer.response = _text(await response.content.read(RESPONSE_BYTES))
                    if response.status in RETRY_AFTER_STATUSES:
                        answer.retry_after_s = parse_retry_after(
                            response.headers.get("Retry-After"), time.time()
                        )
            if not answer.succeeded:
                answer.error = f"HTTP {answer.status}" + (
                    " (redirects are not followed)" if 300 <= (answer.status or 0) < 400 else ""
                )
        except TimeoutError:
            answer.error = "timed out"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            answer.error = _text(guard.describe(exc))
        except Exception as exc:  # a failed attempt, whatever went wrong
            log.exception("webhook delivery to endpoint %s failed", send.target.pk)
            answer.error = _text(f"{type(exc).__name__}: {exc}"[:500])
        answer.latency_ms = int((time.monotonic() - started) * 1000)
        return answer

    async def send_all(self, sends: Sequence[Send]) -> list[Answer]:
        return list(await asyncio.gather(*(self.send(s) for s in sends)))


def client(settings: Settings) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=guard.GuardedResolver(allow_private=settings.webhooks_allow_private),
        limit=settings.webhook_concurrency,
        limit_per_host=0,
    )
    return aiohttp.ClientSession(
        connector=connector,
        # The Sender times each request from its turn on (asyncio.timeout).
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("Accept-Encoding",),
    )


# Recording ----------------------------------------------------------------------------------


def record(session: Session, work: Work, answers: Sequence[Answer], settings: Settings) -> None:
    """Log every attempt, finish what succeeded, schedule what failed, and
    disable endpoints that answered 410 or have failed for too long."""
    now = now_ms()
    if answers:
        conn = session.connection()
        rows = [
            {
                "delivery_id": new_delivery_id(),
                "endpoint_pk": a.send.target.pk,
                "event_pk": a.send.event_pk,
                "event_id": a.send.event_id,
                "event_type": a.send.event_type,
                "attempted_ms": a.attempted_ms,
                "trigger": a.send.trigger,
                "succeeded": a.succeeded,
                "status_code": a.status,
                "latency_ms": a.latency_ms,
                "response": _text(a.response),
                "error": _text(a.error),
            }
            for a in answers
        ]
        for start in range(0, len(rows), outbox.ROWS_PER_INSERT):
            conn.execute(_attempts.insert(), rows[start : start + outbox.ROWS_PER_INSERT])
    _mark_delivered(session, work.events, now)

    scale = settings.webhook_retry_scale
    retries: list[dict[str, Any]] = []
    finished: list[dict[str, Any]] = []
    for a in answers:
        send = a.send
        tries = send.tries + 1
        if send.message_pk is None:
            if not a.succeeded:
                retries.append(
                    {
                        "endpoint_pk": send.target.pk,
                        "event_pk": send.event_pk,
                        "status": "pending",
                        "tries": 1,
                        "next_attempt_ms": now + retry_delay_ms(1, scale, a.retry_after_s),
                        "trigger": "retry",
                        "version": 0,
                        "created_ms": now,
                        "updated_ms": now,
                    }
                )
            continue
        if a.succeeded:
            status, next_ms = "delivered", now
        elif tries >= MAX_TRIES:
            status, next_ms = "failed", now
        else:
            status, next_ms = "pending", now + retry_delay_ms(tries, scale, a.retry_after_s)
        finished.append(
            {
                "b_id": send.message_pk,
                "b_status": status,
                "b_tries": tries,
                "b_next": next_ms,
                "b_version": send.version,
                "b_lease": send.lease,
            }
        )
    if retries:
        sql.insert_new(session.connection(), _messages, ["endpoint_pk", "event_pk"], retries)
    if finished:
        m = _messages
        conn = session.connection()
        # The outcome, unless a resend came meanwhile (version changed): that
        # one stands, and is sent once the lease below is let go.
        conn.execute(
            update(m)
            .where(m.c.id == bindparam("b_id"), m.c.version == bindparam("b_version"))
            .values(
                status=bindparam("b_status"),
                tries=bindparam("b_tries"),
                next_attempt_ms=bindparam("b_next"),
                lease_ms=None,
                updated_ms=now,
            ),
            finished,
        )
        conn.execute(
            update(m)
            .where(m.c.id == bindparam("b_id"), m.c.lease_ms == bindparam("b_lease"))
            .values(lease_ms=None),
            finished,
        )
    _endpoint_health(session, answers, now, settings)


def _endpoint_health(
    session: Session, answers: Sequence[Answer], now: int, settings: Settings
) -> None:
    e = _endpoints
    healthy = {a.send.target.pk for a in answers if a.succeeded}
    failing = {a.send.target.pk for a in answers if not a.succeeded} - healthy
    gone = {a.send.target.pk for a in answers if a.status == 410}
    if healthy:
        session.execute(
            update(e)
            .where(e.c.id.in_(sorted(healthy)), e.c.failing_since_ms.is_not(None))
            .values(failing_since_ms=None)
        )
    if failing:
        first = min(a.attempted_ms for a in answers if a.send.target.pk in failing)
        session.execute(
            update(e)
            .where(e.c.id.in_(sorted(failing)), e.c.failing_since_ms.is_(None))
            .values(failing_since_ms=first)
        )
    limit_ms = int(settings.webhook_disable_after_hours * 3_600_000)
    disable: dict[int, str] = {pk: "the endpoint answered 410 Gone" for pk in gone}
    if failing:
        for pk, since in session.execute(
            select(e.c.id, e.c.failing_since_ms).where(
                e.c.id.in_(sorted(failing)), e.c.enabled.is_(True)
            )
        ):
            if since is not None and now - since >= limit_ms and pk not in disable:
                days = limit_ms / 86_400_000
                disable[pk] = f"every attempt failed for {days:g} days"
    for pk, reason in sorted(disable.items()):
        disabled = session.execute(
            update(e)
            .where(e.c.id == pk, e.c.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, updated_ms=now)
            .returning(e.c.account_id, e.c.env, e.c.endpoint_id, e.c.url)
        ).first()
        if disabled is not None:
            _email_owners(session, disabled, reason, now)


def _email_owners(session: Session, endpoint: Any, reason: str, now: int) -> None:
    """The dashboard's owners of the account, or its own email when it has none."""
    account = session.get(Account, endpoint.account_id)
    owners = session.scalars(
        select(User.email).where(User.account_id == endpoint.account_id, User.role == "owner")
    ).all() or ([account.email] if account is not None and account.email else [])
    facts = {
        "template": "webhook_disabled",
        "account_name": account.name if account else "",
        "env": endpoint.env,
        "endpoint_id": endpoint.endpoint_id,
        "url": endpoint.url,
        "reason": reason,
    }
    outbox.enqueue(
        session,
        [
            outbox.message("email", endpoint.account_id, endpoint.env, {**facts, "to": to}, now)
            for to in owners
        ],
    )


# The worker's job ---------------------------------------------------------------------------


def chunk_size(settings: Settings) -> int:
    """Sends leased at once: the lease must outlast the slowest chunk, which
    sends in ``chunk / concurrency`` rounds of at most a timeout each."""
    rounds = max(1, int(settings.webhook_lease_seconds / (2 * settings.webhook_timeout_seconds)))
    return max(1, min(1000, settings.webhook_concurrency * rounds))


async def deliver(
    db: Database, settings: Settings, *, seconds: float = PASS_SECONDS
) -> dict[str, int]:
    """Send what is due until nothing is, or ``seconds`` have passed: the
    next chunk is claimed, and the last one recorded, while one is being sent.
    A chunk whose recording fails is logged; its leases run out and it is
    sent again."""
    counts = {"sent": 0, "failed": 0}
    limit = chunk_size(settings)
    lease_ms = settings.webhook_lease_seconds * 1000
    deadline = time.monotonic() + seconds

    def claim() -> Work:
        def run(session: Session) -> Work:
            now = now_ms()
            work = claim_messages(session, now, limit, lease_ms)
            if len(work.sends) < limit:
                first = claim_events(
                    session, now, limit - len(work.sends), lease_ms, limit - len(work.sends)
                )
                work.sends.extend(first.sends)
                work.events.extend(first.events)
                work.claimed += first.claimed
            return work

        return db.run_sync(run, write=True)

    async def recorded(work: Work, answers: list[Answer]) -> None:
        try:
            await asyncio.to_thread(db.run_sync, record, work, answers, settings, write=True)
        except Exception:
            log.exception("recording %d webhook attempts failed", len(answers))

    recording: asyncio.Task[None] | None = None
    async with client(settings) as http:
        sender = Sender(http, settings)
        work = await asyncio.to_thread(claim)
        while work.claimed:
            answers = await sender.send_all(work.sends)
            more = time.monotonic() < deadline
            following = asyncio.create_task(asyncio.to_thread(claim)) if more else None
            if recording is not None:
                await recording
            recording = asyncio.create_task(recorded(work, answers))
            for answer in answers:
                counts["sent" if answer.succeeded else "failed"] += 1
            if following is None:
                break
            work = await following
        if recording is not None:
            await recording
    return counts


async def deliver_now(db: Database, settings: Settings, message_pk: int, lease: int) -> None:
    """Send one queued message at once (the test button and endpoint): the
    message was queued leased to the caller, so no worker takes it first."""
    lease_ms = settings.webhook_lease_seconds * 1000
    work: Work = await db.run(
        lambda s: claim_messages(s, now_ms(), 1, lease_ms, only=[message_pk], lease=lease),
        write=True,
    )
    if not work.sends:
        return
    async with client(settings) as http:
        answers = await Sender(http, settings).send_all(work.sends)
    await db.run(record, work, answers, settings, write=True)


def deliver_webhooks(db: Database, settings: Settings) -> dict[str, int]:
    """The worker's job: one pass of :func:`deliver` on a loop of its own."""
    return asyncio.run(deliver(db, settings))


def purge(db: Database, now: int | None = None) -> int:
    """Delete events, attempts and finished messages older than the 30 days
    the feed and the log keep; returns how many events went.

    An event goes 30 days after it was settled (fanned out to the endpoints,
    or found to have none), which is moments after it was written: found
    through the outbox's (kind, delivered_ms) index, so a pass seeks instead
    of reading the whole outbox, as a filter on ``created_ms`` (which no index
    leads with) did every few seconds."""
    now = now if now is not None else now_ms()
    cutoff = now - RETENTION_DAYS * 86_400_000

    def run(session: Session) -> int:
        session.execute(_attempts.delete().where(_attempts.c.attempted_ms < cutoff))
        session.execute(
            _messages.delete().where(
                _messages.c.status != "pending", _messages.c.updated_ms < cutoff
            )
        )
        old = (
            select(_outbox.c.id)
            .where(
                _outbox.c.delivered_ms < cutoff,
                _outbox.c.kind == outbox.EVENT,
            )
            .limit(10_000)
        )
        ids = list(session.scalars(old))
        if not ids:
            return 0
        session.execute(_messages.delete().where(_messages.c.event_pk.in_(ids)))
        session.execute(_attempts.delete().where(_attempts.c.event_pk.in_(ids)))
        session.execute(_outbox.delete().where(_outbox.c.id.in_(ids)))
        return len(ids)

    return db.run_sync(run, write=True)
