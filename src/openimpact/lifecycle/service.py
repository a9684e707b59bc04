"""Moving impacts through their lifecycle (seed 000):

    initiated ──receive──▶ donation_received ──transfer──▶ transferred ──complete──▶ completed
                 donation_available_ms        donation_sent_ms + project      completed_ms

The rules, enforced by every path (operator batches, the sandbox simulation):

* forward only, one stage at a time: each step moves impacts from exactly one
  stage to the next, and a conditional UPDATE (``WHERE stage = <from> AND
  cancelled_ms IS NULL``) makes it happen at most once per impact, however
  many batches, workers or cancellations race for the same rows;
* a stage's timestamp is ``max(now, previous stage's timestamp)``, so the
  timeline never goes back even when clocks disagree;
* cancelled impacts never advance; and since ``cancel_impact`` only cancels
  impacts that are Initiated or Donation Received, an impact that reached the
  partner can no longer be cancelled;
* every change appends one row to ``impact_transitions`` in the same
  transaction (when, who, from → to, batch id);
* completing an impact queues the customer's "completed" email in that
  transaction too, when the impact's ``notify`` allowed the first one
  (``notifications/service.py``);
* every change writes its event (``impact.donation_received``,
  ``impact.transferred``, ``impact.completed``) to the outbox in that
  transaction, one multi-row statement per chunk (lifecycle/messages.py).

A batch works in chunks of ids (keyset by id, bounded by the largest id seen at
the start, so it always ends). Each chunk is one transaction that first locks
its rows in id order (``SELECT ... FOR UPDATE``; two batches therefore wait on
each other instead of deadlocking) and then updates them. :func:`run_batch` is
a transaction boundary of its own, like a request: it commits chunk by chunk.
"""

from __future__ import annotations

import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    bindparam,
    case,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from openimpact.accounts.models import ENVIRONMENTS, Account
from openimpact.db import Database, table
from openimpact.errors import NotFound, ValidationFailed
from openimpact.impacts.models import STAGES, Impact
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle.assignment import Assigner
from openimpact.lifecycle.messages import queue_completion_emails, queue_events
from openimpact.lifecycle.models import ImpactTransition
from openimpact.outbox.service import Events
from openimpact.projects.models import Project
from openimpact.timeutil import datetime_to_ms, day_start_ms, ms_to_datetime, ms_to_iso, now_ms

_impacts = table(Impact)
_transitions = table(ImpactTransition)

STAGE_LABELS = {
    "initiated": "Initiated",
    "donation_received": "Donation Received",
    "transferred": "Transferred to Partner",
    "completed": "Completed",
}
# The column that holds the time each stage was reached.
STAGE_COLUMNS = {
    "initiated": "time_ms",
    "donation_received": "donation_available_ms",
    "transferred": "donation_sent_ms",
    "completed": "completed_ms",
}
DEFAULT_CHUNK = 1000
MAX_CHUNK = 10_000
_ID_BATCH = 2000  # ids per IN (...) list: well under every driver's parameter limit


@dataclass(frozen=True, slots=True)
class Step:
    action: str
    from_stage: str
    to_stage: str

    @property
    def column(self) -> str:
        return STAGE_COLUMNS[self.to_stage]

    @property
    def previous_column(self) -> str:
        return STAGE_COLUMNS[self.from_stage]

    @property
    def number(self) -> int:
        """1 for receive, 2 for transfer, 3 for complete."""
        return STAGES.index(self.to_stage)


STEPS = {
    "receive": Step("receive", "initiated", "donation_received"),
    "transfer": Step("transfer", "donation_received", "transferred"),
    "complete": Step("complete", "transferred", "completed"),
}
STEP_INTO = {step.to_stage: step for step in STEPS.values()}


# Selections ---------------------------------------------------------------------------

_TRACKING_RE = re.compile(r"^(?P<user_id>.+?)-(?P<time_utc>\d{4}-\d{2}-\d{2}T\S+)$")


def parse_tracking_id(tracking_id: str) -> tuple[str, int] | None:
    """``U123-2024-09-16T20:34:04.429Z`` → (``U123``, epoch ms); None if malformed."""
    from openimpact.timeutil import parse_iso_ms

    match = _TRACKING_RE.match(tracking_id.strip())
    if match is None:
        return None
    time_ms = parse_iso_ms(match["time_utc"])
    if time_ms is None:
        return None
    return match["user_id"], time_ms


def impact_by_tracking_id(session: Session, tracking_id: str, env: str) -> Impact:
    parsed = parse_tracking_id(tracking_id)
    impact = None
    if parsed is not None:
        impact = session.scalar(
            select(Impact)
            .join(Account, Account.id == Impact.account_id)
            .where(Account.user_id == parsed[0], Impact.env == env, Impact.time_ms == parsed[1])
        )
    if impact is None:
        raise NotFound(f"no {env} impact with tracking id {tracking_id[:120]}")
    return impact


@dataclass(frozen=True)
class Selection:
    """Which impacts a batch looks at. Criteria combine with AND."""

    env: str = "production"
    user_id: str | None = None
    impact_type: str | None = None
    category: str | None = None
    start: date | None = None
    end: date | None = None
    stage: str | None = None
    project_id: str | None = None
    tracking_ids: tuple[str, ...] = ()
    all: bool = False

    def has_criteria(self) -> bool:
        return any(
            (
                self.user_id,
                self.impact_type,
                self.category,
                self.start,
                self.end,
                self.stage,
                self.project_id,
                self.tracking_ids,
            )
        )


@dataclass
class _Resolved:
    conditions: list[ColumnElement[bool]]
    ids: list[int] | None  # the impacts named by tracking id, sorted; None otherwise
    not_found: list[str] = field(default_factory=list)

    def scopes(self) -> Iterator[list[ColumnElement[bool]]]:
        """The conditions, split so no IN list grows past the driver's limits."""
        if self.ids is None:
            yield self.conditions
            return
        for start in range(0, len(self.ids), _ID_BATCH):
            yield [*self.conditions, _impacts.c.id.in_(self.ids[start : start + _ID_BATCH])]


def _resolve(session: Session, sel: Selection, step: Step | None = None) -> _Resolved:
    t = _impacts
    if sel.env not in ENVIRONMENTS:
        raise ValidationFailed("selection.env: must be production or sandbox")
    if not sel.has_criteria() and not sel.all:
        raise ValidationFailed(
            "selection: give at least one criterion (user_id, impact_type, category, "
            "start_date, end_date, stage, project_id, tracking_ids) or select all "
            "(all: true; --all on the command line)"
        )
    conditions: list[ColumnElement[bool]] = [t.c.env == sel.env]
    if sel.user_id is not None:
        account_id = session.scalar(select(Account.id).where(Account.user_id == sel.user_id))
        if account_id is None:
            raise ValidationFailed(f"selection.user_id: no account with user_id {sel.user_id[:40]}")
        conditions.append(t.c.account_id == account_id)
    if sel.impact_type is not None:
        if sel.impact_type not in RECORD_KEYS:
            raise ValidationFailed(
                f"selection.impact_type: must be one of {', '.join(RECORD_KEYS)}"
            )
        conditions.append(t.c.impact_type == sel.impact_type)
    if sel.category is not None:
        # "food" for trees; for donations the cause they fund.
        conditions.append((t.c.category == sel.category) | (t.c.cause == sel.category))
    if sel.start and sel.end and sel.start > sel.end:
        raise ValidationFailed("selection.start_date: must not be after end_date")
    if sel.start is not None:
        conditions.append(t.c.time_ms >= day_start_ms(sel.start))
    if sel.end is not None:
        conditions.append(t.c.time_ms < day_start_ms(sel.end + timedelta(days=1)))
    if sel.stage is not None:
        if sel.stage not in STAGES:
            raise ValidationFailed(f"selection.stage: must be one of {', '.join(STAGES)}")
        if step is not None and sel.stage != step.from_stage:
            raise ValidationFailed(
                f"selection.stage: {step.action} moves impacts from {step.from_stage} "
                f"to {step.to_stage}, so it cannot select impacts at {sel.stage}"
            )
        conditions.append(t.c.stage == sel.stage)
    if sel.project_id is not None:
        if step is not None and step.action != "complete":
            raise ValidationFailed(
                "selection.project_id: impacts get their project when transferred; "
                "only complete can select by project"
            )
        conditions.append(t.c.project_id == sel.project_id)
    if not sel.tracking_ids:
        return _Resolved(conditions, None)
    ids, not_found = _ids_for_tracking_ids(session, sel.env, sel.tracking_ids)
    return _Resolved(conditions, ids, not_found)


def _ids_for_tracking_ids(
    session: Session, env: str, tracking_ids: Sequence[str]
) -> tuple[list[int], list[str]]:
    wanted: dict[str, dict[int, str]] = {}
    # The shape of a tracking id at a time that does not exist (2024-02-30...):
    # it names no impact.
    no_such_time: list[str] = []
    for raw in tracking_ids:
        parsed = parse_tracking_id(raw)
        if parsed is None:
            if _TRACKING_RE.match(raw.strip()) is None:
                raise ValidationFailed(
                    f"selection.tracking_ids: '{raw[:80]}' is not a tracking id "
                    "(user_id-time_utc, e.g. U123-2024-09-16T20:34:04.429Z)"
                )
            no_such_time.append(raw.strip())
            continue
        wanted.setdefault(parsed[0], {})[parsed[1]] = raw.strip()
    accounts: dict[str, int] = {
        user_id: account_id
        for user_id, account_id in session.execute(
            select(Account.user_id, Account.id).where(Account.user_id.in_(list(wanted)))
        )
    }
    ids: set[int] = set()
    found: set[str] = set()
    for user_id, by_time in wanted.items():
        account_id = accounts.get(user_id)
        if account_id is None:
            continue
        times = list(by_time)
        for start in range(0, len(times), _ID_BATCH):
            rows = session.execute(
                select(_impacts.c.id, _impacts.c.time_ms).where(
                    _impacts.c.account_id == account_id,
                    _impacts.c.env == env,
                    _impacts.c.time_ms.in_(times[start : start + _ID_BATCH]),
                )
            )
            for impact_id, time_ms in rows:
                ids.add(impact_id)
                found.add(by_time[time_ms])
    missing = [tid for by_time in wanted.values() for tid in by_time.values() if tid not in found]
    return sorted(ids), [*dict.fromkeys(no_such_time), *missing]


# Options ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompleteOptions:
    impact_video: str | None = None
    # For impacts of projects with live sessions (food trees); when None, the
    # next Saturday 13:00 UTC after completion is scheduled.
    live_session_ms: int | None = None
    notes: str | None = None


def next_live_session_ms(after_ms: int) -> int:
    """The next Saturday 13:00 UTC strictly after ``after_ms``: food tree partners
    hold their live planting sessions weekly (seed 000)."""
    moment = ms_to_datetime(after_ms)
    day = moment.date() + timedelta(days=(5 - moment.weekday()) % 7)
    session_at = datetime(day.year, day.month, day.day, 13, tzinfo=UTC)
    if session_at <= moment:
        session_at += timedelta(days=7)
    return datetime_to_ms(session_at)


def new_batch_id(action: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{action}-{stamp}-{secrets.token_hex(4)}"


# One chunk ----------------------------------------------------------------------------------


@dataclass
class ChunkOutcome:
    changed: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    by_project: Counter[str] = field(default_factory=Counter)


def advance(
    session: Session,
    step: Step,
    ids: Sequence[int],
    *,
    stamp: ColumnElement[int],
    actor: str,
    batch_id: str,
    assigner: Assigner | None = None,
    options: CompleteOptions | None = None,
    events: Events = Events(),
) -> ChunkOutcome:
    """Move those of ``ids`` that are at ``step.from_stage`` (and not cancelled)
    one stage forward, in the caller's transaction.

    ``stamp`` is the time the stage is reached: the wall clock for operator
    batches, the scheduled time for the sandbox; the stored time is never
    earlier than the previous stage's.
    """
    t = _impacts
    outcome = ChunkOutcome()
    if not ids:
        return outcome
    eligible = and_(t.c.id.in_(list(ids)), t.c.stage == step.from_stage, t.c.cancelled_ms.is_(None))
    # Lock in id order first: concurrent batches then queue instead of deadlocking.
    rows = session.execute(
        select(
            t.c.id,
            t.c.account_id,
            t.c.impact_type,
            t.c.category,
            t.c.cause,
            t.c.project_id,
            t.c.notify,
        )
        .where(eligible)
        .order_by(t.c.id)
        .with_for_update()
    ).all()
    if not rows:
        return outcome

    groups: dict[Any, tuple[dict[str, Any], list[int]]] = {}
    live_projects: set[str] = set()
    options = options or CompleteOptions()
    if step.action == "transfer":
        assigner = assigner or Assigner(session)
        for row in rows:
            chosen = assigner.assign(row.account_id, row.impact_type, row.category, row.cause)
            groups.setdefault(chosen.project_id, (chosen.values(), []))[1].append(row.id)
    elif step.action == "complete":
        live_projects = set(
            session.scalars(select(Project.project_id).where(Project.live_sessions.is_(True)))
        )
        common: dict[str, Any] = {}
        if options.impact_video is not None:
            common["impact_video"] = options.impact_video
        if options.notes is not None:
            common["completion_notes"] = options.notes
        for row in rows:
            live = row.project_id in live_projects
            values = dict(common)
            if live and options.live_session_ms is not None:
                values["live_session_ms"] = options.live_session_ms
            groups.setdefault(live, (values, []))[1].append(row.id)
    else:
        groups[None] = ({}, [row.id for row in rows])

    previous = func.coalesce(t.c[step.previous_column], t.c.time_ms)
    reached = case((previous > stamp, previous), else_=stamp)
    changed: list[tuple[int, int, str, str | None]] = []
    for values, group_ids in groups.values():
        result = session.execute(
            update(t)
            .where(t.c.id.in_(group_ids), t.c.stage == step.from_stage, t.c.cancelled_ms.is_(None))
            .values(stage=step.to_stage, **{step.column: reached}, **values)
            .returning(t.c.id, t.c[step.column], t.c.impact_type, t.c.project_id)
        )
        changed.extend((row[0], row[1], row[2], row[3]) for row in result)
    if not changed:
        return outcome

    session.execute(
        insert(_transitions),
        [
            {
                "impact_id": impact_id,
                "at_ms": at_ms,
                "actor": actor,
                "from_stage": step.from_stage,
                "to_stage": step.to_stage,
                "batch_id": batch_id,
            }
            for impact_id, at_ms, _type, _project in changed
        ],
    )
    if step.action == "complete" and options.live_session_ms is None:
        scheduled = [
            {"b_id": impact_id, "b_live": next_live_session_ms(at_ms)}
            for impact_id, at_ms, _type, project_id in changed
            if project_id in live_projects
        ]
        if scheduled:
            session.execute(
                update(t)
                .where(t.c.id == bindparam("b_id"), t.c.live_session_ms.is_(None))
                .values(live_session_ms=bindparam("b_live")),
                scheduled,
            )
    if step.action == "complete":
        # The customer's second email (completed, certificate final), in this
        # same transaction; only where the first one was allowed (notify is
        # stored on the impact, and always false in sandbox).
        wanted = {row.id for row in rows if row.notify}
        notified = [impact_id for impact_id, *_rest in changed if impact_id in wanted]
        if notified:
            queue_completion_emails(session, notified, now_ms())
    if events.enabled:
        queue_events(session, [row[0] for row in changed], step.to_stage, now_ms(), events)
    outcome.changed = len(changed)
    for _id, _at, impact_type, project_id in changed:
        outcome.by_type[impact_type] += 1
        if step.action == "transfer" and project_id is not None:
            outcome.by_project[project_id] += 1
    return outcome


# Batches ------------------------------------------------------------------------------------


@dataclass
class _Plan:
    resolved: _Resolved
    max_id: int
    matched: int
    eligible: int
    skipped: dict[str, int]
    by_type: dict[str, int]
    by_project: dict[str, int]


def _plan(session: Session, step: Step, sel: Selection, project_id: str | None) -> _Plan:
    t = _impacts
    resolved = _resolve(session, sel, step)
    assigner = Assigner(session, project_id) if step.action == "transfer" else None
    matched = 0
    skipped: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    by_project: Counter[str] = Counter()
    cancelled = t.c.cancelled_ms.is_not(None)
    for conditions in resolved.scopes():
        for stage, is_cancelled, impact_type, count in session.execute(
            select(t.c.stage, cancelled, t.c.impact_type, func.count())
            .where(*conditions)
            .group_by(t.c.stage, cancelled, t.c.impact_type)
        ):
            matched += count
            if is_cancelled:
                skipped["cancelled"] += count
            elif stage != step.from_stage:
                skipped[stage] += count
            else:
                by_type[impact_type] += count
        if assigner is not None:
            # Resolve every assignment up front: a selection that cannot be
            # assigned fails here, before any chunk is written.
            for account_id, impact_type, category, cause, count in session.execute(
                select(t.c.account_id, t.c.impact_type, t.c.category, t.c.cause, func.count())
                .where(*conditions, t.c.stage == step.from_stage, ~cancelled)
                .group_by(t.c.account_id, t.c.impact_type, t.c.category, t.c.cause)
            ):
                by_project[
                    assigner.assign(account_id, impact_type, category, cause).project_id
                ] += count
    max_id = session.scalar(select(func.max(t.c.id))) or 0
    return _Plan(
        resolved,
        max_id,
        matched,
        sum(by_type.values()),
        dict(sorted(skipped.items())),
        dict(sorted(by_type.items())),
        dict(sorted(by_project.items())),
    )


@dataclass(frozen=True)
class ChunkReport:
    index: int
    changed: int
    first_id: int
    last_id: int


def run_batch(
    db: Database,
    action: str,
    selection: Selection,
    *,
    actor: str,
    dry_run: bool = False,
    chunk_size: int = DEFAULT_CHUNK,
    project_id: str | None = None,
    options: CompleteOptions | None = None,
    on_chunk: Callable[[ChunkReport], None] | None = None,
    events: Events = Events(),
) -> dict[str, Any]:
    """Run one operator batch and report what it changed (or, with
    ``dry_run``, what it would change)."""
    step = STEPS[action]
    if not 1 <= chunk_size <= MAX_CHUNK:
        raise ValidationFailed(f"chunk_size: must be between 1 and {MAX_CHUNK}")
    if action != "transfer" and project_id is not None:
        raise ValidationFailed("project_id: only transfer assigns a project")
    if action != "complete" and options is not None and options != CompleteOptions():
        raise ValidationFailed("impact_video, live_session_date and notes are set when completing")
    started = time.monotonic()
    plan: _Plan = db.run_sync(_plan, step, selection, project_id)
    report: dict[str, Any] = {
        "action": action,
        "from_stage": step.from_stage,
        "to_stage": step.to_stage,
        "env": selection.env,
        "dry_run": dry_run,
        "matched": plan.matched,
    }
    if dry_run:
        report["would_change"] = plan.eligible
        report["by_type"] = plan.by_type
        if action == "transfer":
            report["by_project"] = plan.by_project
        report["skipped"] = plan.skipped
    else:
        batch_id = new_batch_id(action)
        totals = ChunkOutcome()
        chunks: list[dict[str, int]] = []
        for index, candidate_ids in enumerate(_chunks(db, step, plan, chunk_size), start=1):
            outcome: ChunkOutcome = db.run_sync(
                _advance_now,
                step,
                candidate_ids,
                actor,
                batch_id,
                project_id,
                options,
                events,
                write=True,
            )
            totals.changed += outcome.changed
            totals.by_type.update(outcome.by_type)
            totals.by_project.update(outcome.by_project)
            chunk = ChunkReport(index, outcome.changed, candidate_ids[0], candidate_ids[-1])
            chunks.append({"chunk": index, "changed": outcome.changed})
            if on_chunk is not None:
                on_chunk(chunk)
        report["batch_id"] = batch_id
        report["changed"] = totals.changed
        report["by_type"] = dict(sorted(totals.by_type.items()))
        if action == "transfer":
            report["by_project"] = dict(sorted(totals.by_project.items()))
        report["skipped"] = plan.skipped
        report["chunks"] = chunks
    if plan.resolved.not_found:
        report["not_found"] = plan.resolved.not_found[:100]
        report["not_found_count"] = len(plan.resolved.not_found)
    report["elapsed_ms"] = int((time.monotonic() - started) * 1000)
    return report


def _advance_now(
    session: Session,
    step: Step,
    ids: list[int],
    actor: str,
    batch_id: str,
    project_id: str | None,
    options: CompleteOptions | None,
    events: Events,
) -> ChunkOutcome:
    assigner = Assigner(session, project_id) if step.action == "transfer" else None
    return advance(
        session,
        step,
        ids,
        stamp=literal(now_ms(), BigInteger),
        actor=actor,
        batch_id=batch_id,
        assigner=assigner,
        options=options,
        events=events,
    )


def _chunks(db: Database, step: Step, plan: _Plan, size: int) -> Iterator[list[int]]:
    """Candidate ids, ascending, ``size`` at a time. The keyset stops at the
    largest id that existed when the batch began, so a stream of new impacts
    cannot keep a batch running forever."""
    t = _impacts
    if plan.resolved.ids is not None:
        for start in range(0, len(plan.resolved.ids), size):
            yield plan.resolved.ids[start : start + size]
        return
    conditions = [
        *plan.resolved.conditions,
        t.c.stage == step.from_stage,
        t.c.cancelled_ms.is_(None),
        t.c.id <= plan.max_id,
    ]
    last = 0
    while True:
        found = db.run_sync(
            lambda s, after=last: list(
                s.scalars(
                    select(t.c.id).where(*conditions, t.c.id > after).order_by(t.c.id).limit(size)
                )
            )
        )
        if not found:
            return
        yield found
        last = found[-1]


# Status and history -------------------------------------------------------------------------


def lifecycle_status(session: Session, env: str, now: int | None = None) -> dict[str, Any]:
    """Counts per stage and type, and the impact waiting longest in each open stage."""
    if env not in ENVIRONMENTS:
        raise ValidationFailed("env: must be production or sandbox")
    now = now if now is not None else now_ms()
    t = _impacts
    counts: dict[str, Counter[str]] = {stage: Counter() for stage in STAGES}
    cancelled: Counter[str] = Counter()
    for stage, is_cancelled, impact_type, count in session.execute(
        select(t.c.stage, t.c.cancelled_ms.is_not(None), t.c.impact_type, func.count())
        .where(t.c.env == env)
        .group_by(t.c.stage, t.c.cancelled_ms.is_not(None), t.c.impact_type)
    ):
        (cancelled if is_cancelled else counts[stage])[impact_type] += count
    stages = []
    for stage in STAGES:
        entry: dict[str, Any] = {
            "stage": stage,
            "label": STAGE_LABELS[stage],
            "total": sum(counts[stage].values()),
            "by_type": dict(sorted(counts[stage].items())),
        }
        if stage != "completed" and entry["total"]:
            since = t.c[STAGE_COLUMNS[stage]]
            row = session.execute(
                select(Account.user_id, t.c.time_ms, t.c.impact_type, t.c.amount, since)
                .join(Account, Account.id == t.c.account_id)
                .where(t.c.env == env, t.c.stage == stage, t.c.cancelled_ms.is_(None))
                .order_by(since, t.c.id)
                .limit(1)
            ).first()
            if row is not None:
                entry["oldest"] = {
                    "tracking_id": f"{row[0]}-{ms_to_iso(row[1])}",
                    row[2]: row[3],
                    "since": ms_to_iso(row[4]),
                    "waiting_seconds": max(0, (now - row[4]) // 1000),
                }
        stages.append(entry)
    return {
        "env": env,
        "stages": stages,
        "cancelled": {"total": sum(cancelled.values()), "by_type": dict(sorted(cancelled.items()))},
    }


def transition_rows(session: Session, impact_id: int) -> list[ImpactTransition]:
    return list(
        session.scalars(
            select(ImpactTransition)
            .where(ImpactTransition.impact_id == impact_id)
            .order_by(ImpactTransition.id)
        )
    )


def impact_history(session: Session, tracking_id: str, env: str) -> dict[str, Any]:
    if env not in ENVIRONMENTS:
        raise ValidationFailed("env: must be production or sandbox")
    impact = impact_by_tracking_id(session, tracking_id, env)
    user_id = session.scalar(select(Account.user_id).where(Account.id == impact.account_id))
    body: dict[str, Any] = {
        "tracking_id": f"{user_id}-{ms_to_iso(impact.time_ms)}",
        "env": env,
        "stage": impact.stage,
        "transitions": [
            {
                "at": ms_to_iso(row.at_ms),
                "actor": row.actor,
                "from_stage": row.from_stage,
                "to_stage": row.to_stage,
                "batch_id": row.batch_id,
            }
            for row in transition_rows(session, impact.id)
        ],
    }
    if impact.cancelled_ms is not None:
        body["cancelled_on"] = ms_to_iso(impact.cancelled_ms)
    if impact.completion_notes:
        body["completion_notes"] = impact.completion_notes
    return body
