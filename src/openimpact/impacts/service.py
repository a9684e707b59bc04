"""Recording and cancelling impacts.

One impact write is one transaction, in this order:

1. look up the Idempotency-Key (a stored answer is replayed or refused);
2. update the ledger row of the account and environment: add the amount to
   the totals and allocate ``time_utc`` (the row lock serializes writers of
   one account and environment, which is what makes ``time_utc`` unique);
3. onboard or rename the customer;
4. insert the impact, add to the daily series, queue the notification;
5. store the answer under the Idempotency-Key.

A second request with the same key that raced past step 1 fails at step 5 on
the unique constraint; the boundary retries it, and step 1 then replays.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account, Ledger
from openimpact.auth import Caller
from openimpact.customers.models import Customer
from openimpact.db import rowcount, table
from openimpact.errors import IdempotencyConflict, NotFound, ValidationFailed
from openimpact.impacts.models import DailyImpact, IdempotencyRecord, Impact
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle import sandbox
from openimpact.notifications.models import OutboxMessage
from openimpact.timeutil import day_of, ms_to_iso, now_ms, parse_iso, parse_iso_ms

_ledger = table(Ledger)
_impacts = table(Impact)
_daily = table(DailyImpact)
_customers = table(Customer)
_idem = table(IdempotencyRecord)
_outbox = table(OutboxMessage)

CANCELLABLE_STAGES = ("initiated", "donation_received")

# The write path's statements, built once (issue 4: an impact write is the hot
# path). SQLAlchemy compiles a statement once per dialect and caches that, but
# building the statement and its cache key again on every call cost more than
# running it on SQLite; built once with bind parameters, a request only binds.
_FIND_REPLAY = select(_idem.c.request_hash, _idem.c.status_code, _idem.c.response_body).where(
    _idem.c.account_id == bindparam("p_account"),
    _idem.c.env == bindparam("p_env"),
    _idem.c.key == bindparam("p_key"),
)
_INSERT_IDEMPOTENCY = insert(_idem)
_FIND_CUSTOMER = select(
    _customers.c.id, _customers.c.customer_id, _customers.c.email, _customers.c.name
).where(
    _customers.c.account_id == bindparam("p_account"),
    _customers.c.env == bindparam("p_env"),
    _customers.c.email_key == bindparam("p_email_key"),
)
_INSERT_CUSTOMER = insert(_customers).returning(_customers.c.id)
_RENAME_CUSTOMER = (
    update(_customers).where(_customers.c.id == bindparam("p_pk")).values(name=bindparam("p_name"))
)
_INSERT_IMPACT = insert(_impacts)
_INSERT_DAILY = insert(_daily)
_INSERT_OUTBOX = insert(_outbox)


def _ledger_add(column: str) -> Any:
    # max(last + 1, now) without dialect functions: strictly increasing per
    # account and environment, and equal to the wall clock unless a burst
    # of more than 1000 impacts a second runs ahead of it.
    now = bindparam("p_now", type_=BigInteger)
    return (
        update(_ledger)
        .where(_ledger.c.account_id == bindparam("p_account"), _ledger.c.env == bindparam("p_env"))
        .values(
            {
                "last_ms": case((_ledger.c.last_ms >= now, _ledger.c.last_ms + 1), else_=now),
                column: _ledger.c[column] + bindparam("p_amount", type_=BigInteger),
            }
        )
        .returning(_ledger.c.last_ms)
    )


_LEDGER_ADD = {
    f"{who}_{kind}": _ledger_add(f"{who}_{kind}")
    for who in ("user", "customer")
    for kind in RECORD_KEYS
}
_DAILY_ADD = {
    kind: update(_daily)
    .where(
        _daily.c.account_id == bindparam("p_account"),
        _daily.c.env == bindparam("p_env"),
        _daily.c.day == bindparam("p_day"),
    )
    .values({kind: _daily.c[kind] + bindparam("p_amount", type_=BigInteger)})
    for kind in RECORD_KEYS
}


class IdempotencyRace(Exception):
    """Another request with the same Idempotency-Key committed first."""


@dataclass(frozen=True, slots=True)
class Outcome:
    status: int
    body: dict[str, Any]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class NewImpact:
    impact_type: str
    amount: int
    category: str | None
    customer_email: str | None
    customer_name: str | None
    notify: bool | None
    metadata: dict[str, str] | None


def request_hash(path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\n{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


def find_replay(session: Session, caller: Caller, key: str, req_hash: str) -> Outcome | None:
    row = (
        session.connection()
        .execute(_FIND_REPLAY, {"p_account": caller.account_id, "p_env": caller.env, "p_key": key})
        .first()
    )
    if row is None:
        return None
    if row[0] != req_hash:
        raise IdempotencyConflict(
            "Idempotency-Key was already used with a different request; "
            "use a new key for a new request"
        )
    return Outcome(status=row[1], body=json.loads(row[2]), replayed=True)


def remember(session: Session, caller: Caller, key: str, req_hash: str, outcome: Outcome) -> None:
    # No savepoint: on a conflict the whole transaction is void anyway and
    # the boundary rolls it back before replaying the stored answer.
    try:
        session.connection().execute(
            _INSERT_IDEMPOTENCY,
            {
                "account_id": caller.account_id,
                "env": caller.env,
                "key": key,
                "request_hash": req_hash,
                "status_code": outcome.status,
                "response_body": json.dumps(outcome.body, separators=(",", ":")),
                "created_ms": now_ms(),
            },
        )
    except IntegrityError:
        raise IdempotencyRace() from None


def _new_certificate_id() -> str:
    # 100 random bits in a URL-safe lower-case alphabet: unguessable, and easy
    # to read aloud or type from a printed certificate.
    return base64.b32encode(secrets.token_bytes(15)).decode("ascii").lower()


def _allowed_cause(session: Session, caller: Caller, requested: str | None) -> str:
    causes = session.scalar(select(Account.causes).where(Account.id == caller.account_id)) or [
        "trees"
    ]
    if requested is None:
        return causes[0]
    if requested not in causes:
        raise ValidationFailed(
            f"category: '{requested}' is not a cause configured for this account; "
            f"allowed: {', '.join(causes)}"
        )
    return requested


def record_impact(
    session: Session, caller: Caller, new: NewImpact, *, now: int | None = None
) -> Outcome:
    """Record one impact. ``now`` stands for the wall clock (the demo's history
    and tests only: ``time_utc`` is still at least one past the ledger's last)."""
    cause = None
    if new.impact_type == "money_donated":
        cause = _allowed_cause(session, caller, new.category)

    on_behalf = new.customer_email is not None
    column = ("customer_" if on_behalf else "user_") + new.impact_type
    now = now if now is not None else now_ms()
    conn = session.connection()
    time_ms = conn.execute(
        _LEDGER_ADD[column],
        {"p_account": caller.account_id, "p_env": caller.env, "p_now": now, "p_amount": new.amount},
    ).scalar_one()

    customer_out = None
    customer_pk = None
    if on_behalf:
        assert new.customer_email is not None
        customer_pk, customer_out = _onboard(
            session, caller, new.customer_email, new.customer_name, time_ms
        )

    production = caller.env == "production"
    notify = production and (new.notify is not False) and on_behalf
    conn.execute(
        _INSERT_IMPACT,
        {
            "account_id": caller.account_id,
            "env": caller.env,
            "time_ms": time_ms,
            "impact_type": new.impact_type,
            "amount": new.amount,
            "category": new.category,
            "cause": cause,
            "customer_pk": customer_pk,
            "is_customer": on_behalf,
            "metadata": new.metadata or None,
            "notify": notify,
            "is_bonus": False,
            "certificate_id": _new_certificate_id() if production else None,
            "stage": "initiated",
        },
    )
    _add_daily(session, caller, day_of(time_ms), new.impact_type, new.amount)

    body: dict[str, Any] = {
        "user_id": caller.user_id,
        new.impact_type: new.amount,
        "time_utc": ms_to_iso(time_ms),
    }
    if new.category is not None:
        body["category"] = new.category
    if customer_out is not None:
        body["customer"] = customer_out
    if notify:
        conn.execute(
            _INSERT_OUTBOX,
            {
                "kind": "email",
                "account_id": caller.account_id,
                "env": caller.env,
                "payload": {"template": "impact_created", "user_id": caller.user_id, **body},
                "created_ms": now,
                "next_attempt_ms": now,
                "attempts": 0,
            },
        )
    return Outcome(status=200, body=body)


def _onboard(
    session: Session, caller: Caller, email: str, name: str | None, time_ms: int
) -> tuple[int, dict[str, Any]]:
    """One customer per email (case-insensitive) per account and environment.

    Safe without upsert syntax: the caller holds the ledger row lock, so no
    other writer of this account and environment can be here at once.
    """
    email_key = email.lower()
    conn = session.connection()
    row = conn.execute(
        _FIND_CUSTOMER,
        {"p_account": caller.account_id, "p_env": caller.env, "p_email_key": email_key},
    ).first()
    if row is None:
        customer_id = "C" + secrets.token_hex(8)
        pk = conn.execute(
            _INSERT_CUSTOMER,
            {
                "customer_id": customer_id,
                "account_id": caller.account_id,
                "env": caller.env,
                "email": email,
                "email_key": email_key,
                "name": name,
                "onboarded_ms": time_ms,
            },
        ).scalar_one()
        return pk, _customer_out(customer_id, email, name)
    pk, customer_id, stored_email, stored_name = row
    if name is not None and name != stored_name:
        conn.execute(_RENAME_CUSTOMER, {"p_pk": pk, "p_name": name})
        stored_name = name
    return pk, _customer_out(customer_id, stored_email, stored_name)


def _customer_out(customer_id: str, email: str, name: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"customer_id": customer_id, "customer_email": email}
    if name is not None:
        out["customer_name"] = name
    return out


def _add_daily(session: Session, caller: Caller, day: str, column: str, amount: int) -> None:
    # Update-then-insert is race-free here for the same reason as _onboard.
    conn = session.connection()
    result = conn.execute(
        _DAILY_ADD[column],
        {"p_account": caller.account_id, "p_env": caller.env, "p_day": day, "p_amount": amount},
    )
    if rowcount(result) == 0:
        conn.execute(
            _INSERT_DAILY,
            {
                "account_id": caller.account_id,
                "env": caller.env,
                "day": day,
                **dict.fromkeys(RECORD_KEYS, 0),
                column: amount,
            },
        )


def find_impact(session: Session, caller: Caller, user_id: str, time_utc: str) -> Impact:
    """The caller's own impact, or the same 404 whether it is someone else's or
    does not exist (OWASP API1: never confirm another account's data)."""
    if parse_iso(time_utc) is None:
        raise ValidationFailed(
            "time_utc: must be an ISO-8601 UTC timestamp like 2024-09-16T20:34:04.429Z"
        )
    # A real time between two milliseconds is well formed but names no impact
    # (impact times are whole milliseconds): that is a 404, like any other miss.
    time_ms = parse_iso_ms(time_utc)
    impact = None
    if time_ms is not None and user_id.strip() == caller.user_id:
        impact = session.scalar(
            select(Impact).where(
                Impact.account_id == caller.account_id,
                Impact.env == caller.env,
                Impact.time_ms == time_ms,
            )
        )
    if impact is None:
        raise NotFound("no impact with this user_id and time_utc")
    return impact


def cancel_impact(
    session: Session,
    caller: Caller,
    user_id: str,
    time_utc: str,
    reason: str | None,
    *,
    stage_seconds: int | None = None,
    now: int | None = None,
) -> Outcome:
    impact = find_impact(session, caller, user_id, time_utc)
    now = now if now is not None else now_ms()
    if stage_seconds is not None:
        # A sandbox impact is where its schedule says, even with no worker
        # running: past Donation Received it can no longer be cancelled.
        sandbox.catch_up(session, impact, now, stage_seconds)
    # The conditional update is the exactly-once gate: of two concurrent
    # cancels, the second waits on the row lock and then matches nothing.
    result = session.execute(
        update(_impacts)
        .where(
            _impacts.c.id == impact.id,
            _impacts.c.cancelled_ms.is_(None),
            _impacts.c.stage.in_(CANCELLABLE_STAGES),
        )
        .values(cancelled_ms=now, cancellation_reason=reason)
    )
    if rowcount(result) == 1:
        column = ("customer_" if impact.is_customer else "user_") + impact.impact_type
        session.execute(
            update(_ledger)
            .where(_ledger.c.account_id == caller.account_id, _ledger.c.env == caller.env)
            .values({column: _ledger.c[column] - impact.amount})
        )
        _add_daily(session, caller, day_of(impact.time_ms), impact.impact_type, -impact.amount)
        return Outcome(200, _cancel_body(caller, impact, now, reason, "impact cancelled"))

    session.refresh(impact)
    if impact.cancelled_ms is not None:
        return Outcome(
            200,
            _cancel_body(
                caller,
                impact,
                impact.cancelled_ms,
                impact.cancellation_reason,
                "impact was already cancelled",
            ),
        )
    raise ValidationFailed(
        f"impact cannot be cancelled: it has already been {_STAGE_WORDS[impact.stage]}; "
        "only impacts that are Initiated or Donation Received can be cancelled"
    )


_STAGE_WORDS = {
    "initiated": "initiated",
    "donation_received": "received",
    "transferred": "transferred to the partner",
    "completed": "completed",
}


def _cancel_body(
    caller: Caller, impact: Impact, cancelled_ms: int, reason: str | None, message: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user_id": caller.user_id,
        "time_utc": ms_to_iso(impact.time_ms),
        "cancelled_on": ms_to_iso(cancelled_ms),
        "message": message,
        impact.impact_type: impact.amount,
    }
    if reason:
        body["reason"] = reason
    if impact.category is not None:
        body["category"] = impact.category
    return body
