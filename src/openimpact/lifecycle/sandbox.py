"""The sandbox simulation: sandbox impacts move through the lifecycle by
themselves, so an integrator sees every stage (and every track field) within
minutes, with no operator involved.

The schedule is deterministic: stage *k* (1 = Donation Received, 2 =
Transferred to Partner, 3 = Completed) is reached at ``time_utc + k * S``,
where S is ``OPENIMPACT_SANDBOX_STAGE_SECONDS`` (default 120 s). The stage
timestamps are those scheduled times, not the moment the change was written.

The schedule is materialized by :func:`advance_due`, with the same rules and
the same conditional updates as operator batches: by the worker loop for all
due impacts, and by ``track`` and ``cancel_impact`` for the one impact they
look at, so the answer is the same whether or not a worker runs. Running it
from many processes at once is safe: each impact advances once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.db import table
from openimpact.impacts.models import STAGES, Impact
from openimpact.lifecycle.assignment import Assigner
from openimpact.lifecycle.service import STEPS, advance, new_batch_id
from openimpact.outbox.service import Events

ACTOR = "sandbox"
_impacts = table(Impact)


def is_due(impact: Impact, now: int, stage_seconds: int) -> bool:
    """Whether the schedule has moved this impact past its stored stage."""
    if impact.env != "sandbox" or impact.cancelled_ms is not None or impact.stage == "completed":
        return False
    next_stage = STAGES.index(impact.stage) + 1
    return now >= impact.time_ms + next_stage * stage_seconds * 1000


def advance_due(
    session: Session,
    now: int,
    stage_seconds: int,
    *,
    impact_ids: Sequence[int] | None = None,
    limit: int = 1000,
    batch_id: str | None = None,
    events: Events = Events(),
) -> int:
    """Advance sandbox impacts whose scheduled time has come, at most ``limit``
    per stage, in the caller's transaction; returns the number of stage
    changes. An impact several stages behind moves through all of them."""
    t = _impacts
    step_ms = stage_seconds * 1000
    batch_id = batch_id or new_batch_id(ACTOR)
    assigner: Assigner | None = None
    changed = 0
    for step in STEPS.values():
        offset = step.number * step_ms
        stmt = select(t.c.id).where(
            t.c.env == "sandbox",
            t.c.stage == step.from_stage,
            t.c.cancelled_ms.is_(None),
            t.c.time_ms <= now - offset,
        )
        if impact_ids is not None:
            stmt = stmt.where(t.c.id.in_(list(impact_ids)))
        ids = list(session.scalars(stmt.order_by(t.c.id).limit(limit)))
        if not ids:
            continue
        if step.action == "transfer" and assigner is None:
            assigner = Assigner(session)
        changed += advance(
            session,
            step,
            ids,
            stamp=t.c.time_ms + offset,
            actor=ACTOR,
            batch_id=batch_id,
            assigner=assigner,
            events=events,
        ).changed
    return changed


def catch_up(
    session: Session,
    impact: Impact,
    now: int,
    stage_seconds: int,
    events: Events = Events(),
) -> bool:
    """Bring one sandbox impact up to its schedule (in the caller's write
    transaction); True when it changed. ``impact`` is refreshed."""
    if not is_due(impact, now, stage_seconds):
        return False
    changed = advance_due(
        session, now, stage_seconds, impact_ids=[impact.id], limit=1, events=events
    )
    session.refresh(impact)
    return changed > 0
