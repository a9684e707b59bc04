"""Recording and cancelling impacts.

Impacts are written in batches (impacts/batch.py): the API's writer gathers
concurrent requests into one transaction, and :func:`record_impact` writes a
batch of one in the caller's transaction. Cancels are rare (refunds) and run
one per transaction here, with their Idempotency-Key looked up first and
stored last (:func:`find_replay`, :func:`remember`).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from openimpact.accounts.models import Ledger
from openimpact.auth import Caller
from openimpact.budgets.service import give_back, lock_budget
from openimpact.db import rowcount, table
from openimpact.errors import IdempotencyConflict, NotFound, OpenImpactError, ValidationFailed
from openimpact.impacts.batch import (
    IdempotencyRace,
    NewImpact,
    Outcome,
    Pending,
    add_daily,
    request_hash,
    write_batch,
)
from openimpact.impacts.models import IdempotencyRecord, Impact
from openimpact.impacts.tracking import as_mapping, cause_label, impact_view
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle import sandbox
from openimpact.outbox import service as outbox
from openimpact.timeutil import day_of, ms_to_iso, now_ms, parse_iso, parse_iso_ms

__all__ = [
    "IdempotencyRace",
    "NewImpact",
    "Outcome",
    "cancel_impact",
    "find_impact",
    "find_replay",
    "record_impact",
    "remember",
    "request_hash",
]

_ledger = table(Ledger)
_impacts = table(Impact)
_idem = table(IdempotencyRecord)

CANCELLABLE_STAGES = ("initiated", "donation_received")

_FIND_REPLAY = select(_idem.c.request_hash, _idem.c.status_code, _idem.c.response_body).where(
    _idem.c.account_id == bindparam("p_account"),
    _idem.c.env == bindparam("p_env"),
    _idem.c.key == bindparam("p_key"),
)
_INSERT_IDEMPOTENCY = insert(_idem)


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


def record_impact(
    session: Session, caller: Caller, new: NewImpact, *, now: int | None = None
) -> Outcome:
    """Record one impact in the session's transaction (a batch of one). ``now``
    stands for the wall clock (the demo's history and tests only: ``time_utc``
    is still at least one past the ledger's last)."""
    (result,) = write_batch(
        session, [Pending(caller, new)], now=now if now is not None else now_ms()
    )
    if isinstance(result, OpenImpactError):
        raise result
    return result


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
    events: outbox.Events = outbox.Events(),
) -> Outcome:
    impact = find_impact(session, caller, user_id, time_utc)
    now = now if now is not None else now_ms()
    if stage_seconds is not None:
        # A sandbox impact is where its schedule says, even with no worker
        # running: past Donation Received it can no longer be cancelled.
        sandbox.catch_up(session, impact, now, stage_seconds, events)
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
        lock_budget(session, caller.account_id, caller.env)
        column = ("customer_" if impact.is_customer else "user_") + impact.impact_type
        session.execute(
            update(_ledger)
            .where(_ledger.c.account_id == caller.account_id, _ledger.c.env == caller.env)
            .values({column: _ledger.c[column] - impact.amount})
        )
        give_back(session, impact)
        add_daily(
            session,
            {
                (caller.account_id, caller.env, day_of(impact.time_ms)): _one(
                    impact.impact_type, -impact.amount
                )
            },
        )
        if events.enabled:
            view = impact_view(
                {**as_mapping(impact), "cancelled_ms": now, "cancellation_reason": reason},
                caller.user_id,
                events.certificate_base(),
                cause_label(session, impact.cause)
                if impact.impact_type == "money_donated"
                else None,
            )
            outbox.enqueue(
                session,
                [outbox.event(outbox.IMPACT_CANCELLED, caller.account_id, caller.env, view, now)],
            )
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


def _one(kind: str, amount: int) -> dict[str, int]:
    return {k: (amount if k == kind else 0) for k in RECORD_KEYS}


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
