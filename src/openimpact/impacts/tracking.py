"""The tracking view of one impact (GET /v1/track), which is also the ``data``
of its events (webhooks, ``GET /v1/events``).

Each lifecycle field appears once its stage is reached and is absent before
(seed 000: Initiated → Donation Received → Transferred to Partner → Completed).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.impacts.models import Impact
from openimpact.projects.models import Cause
from openimpact.timeutil import ms_to_iso

# The columns the view reads (rows of a SELECT of these, or an Impact).
VIEW_COLUMNS = (
    "env",
    "time_ms",
    "impact_type",
    "amount",
    "category",
    "cause",
    "donation_available_ms",
    "donation_sent_ms",
    "completed_ms",
    "live_session_ms",
    "cancelled_ms",
    "assigned_agent",
    "project_location",
    "location_map",
    "project_id",
    "impact_video",
    "cancellation_reason",
    "certificate_id",
    "is_bonus",
    "schedule_id",
    "period",
)
_OPTIONAL_TIMES = (
    ("donation_available", "donation_available_ms"),
    ("donation_sent", "donation_sent_ms"),
    ("impact_completed", "completed_ms"),
    ("live_session_date", "live_session_ms"),
    ("cancelled_on", "cancelled_ms"),
)
_OPTIONAL_TEXT = (
    ("assigned_agent", "assigned_agent"),
    ("project_location", "project_location"),
    ("location_map", "location_map"),
    ("project_id", "project_id"),
    ("impact_video", "impact_video"),
    ("cancellation_reason", "cancellation_reason"),
)


def tracking_id(user_id: str, time_ms: int) -> str:
    return f"{user_id}-{ms_to_iso(time_ms)}"


def cause_label(session: Session, cause: str | None, locale: str = "en") -> str | None:
    if cause is None:
        return None
    label = session.scalar(select(Cause.label).where(Cause.cause == cause))
    return _label(label, cause, locale)


def cause_labels(
    session: Session, causes: Iterable[str | None], locale: str = "en"
) -> dict[str, str]:
    """The label of each of ``causes`` (one query)."""
    wanted = sorted({c for c in causes if c is not None})
    if not wanted:
        return {}
    found = dict(
        session.execute(select(Cause.cause, Cause.label).where(Cause.cause.in_(wanted))).all()
    )
    return {c: _label(found.get(c), c, locale) for c in wanted}


def _label(label: dict[str, str] | None, cause: str, locale: str) -> str:
    if not label:
        return cause
    return label.get(locale) or label.get("en") or cause


class _Columns(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def impact_view(
    impact: _Columns, user_id: str, base_url: str, donation_label: str | None
) -> dict[str, Any]:
    """The view of an impact given as a mapping of :data:`VIEW_COLUMNS`;
    ``donation_label`` is its cause's label (donations only)."""
    tid = tracking_id(user_id, impact["time_ms"])
    view: dict[str, Any] = {
        "tracking_id": tid,
        "impact_initiated": ms_to_iso(impact["time_ms"]),
        impact["impact_type"]: impact["amount"],
    }
    if impact["category"] is not None and impact["impact_type"] == "tree_planted":
        view["category"] = impact["category"]
    for name, column in _OPTIONAL_TIMES:
        ms = impact[column]
        if ms is not None:
            view[name] = ms_to_iso(ms)
    for name, column in _OPTIONAL_TEXT:
        text = impact[column]
        if text is not None and (column != "project_id" or impact["donation_sent_ms"] is not None):
            view[name] = text
    if impact["impact_type"] == "money_donated" and donation_label is not None:
        view["donation_category"] = donation_label
    if impact["env"] == "production" and impact["certificate_id"] is not None:
        view["certificate"] = f"{base_url.rstrip('/')}/certificate/{tid}"
    if impact["env"] == "sandbox":
        view["is_test_transaction"] = True
    if impact["is_bonus"]:
        view["is_bonus_impact"] = True
    if impact["schedule_id"] is not None:
        view["schedule_id"] = impact["schedule_id"]
        view["period"] = impact["period"]
    return view


def as_mapping(impact: Impact) -> dict[str, Any]:
    return {column: getattr(impact, column) for column in VIEW_COLUMNS}


def track_view(
    session: Session, impact: Impact, user_id: str, public_base_url: str
) -> dict[str, Any]:
    label = cause_label(session, impact.cause) if impact.impact_type == "money_donated" else None
    return impact_view(as_mapping(impact), user_id, public_base_url, label)
