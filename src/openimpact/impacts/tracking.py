"""The tracking view of one impact (GET /v1/track).

Each lifecycle field appears once its stage is reached and is absent before
(seed 000: Initiated → Donation Received → Transferred to Partner → Completed).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.impacts.models import Impact
from openimpact.projects.models import Cause
from openimpact.timeutil import ms_to_iso


def tracking_id(user_id: str, time_ms: int) -> str:
    return f"{user_id}-{ms_to_iso(time_ms)}"


def cause_label(session: Session, cause: str | None, locale: str = "en") -> str | None:
    if cause is None:
        return None
    label = session.scalar(select(Cause.label).where(Cause.cause == cause))
    if not label:
        return cause
    return label.get(locale) or label.get("en") or cause


def track_view(
    session: Session, impact: Impact, user_id: str, public_base_url: str
) -> dict[str, Any]:
    tid = tracking_id(user_id, impact.time_ms)
    view: dict[str, Any] = {
        "tracking_id": tid,
        "impact_initiated": ms_to_iso(impact.time_ms),
        impact.impact_type: impact.amount,
    }
    if impact.category is not None and impact.impact_type == "tree_planted":
        view["category"] = impact.category
    optional_times = {
        "donation_available": impact.donation_available_ms,
        "donation_sent": impact.donation_sent_ms,
        "impact_completed": impact.completed_ms,
        "live_session_date": impact.live_session_ms,
        "cancelled_on": impact.cancelled_ms,
    }
    for name, ms in optional_times.items():
        if ms is not None:
            view[name] = ms_to_iso(ms)
    optional_text = {
        "assigned_agent": impact.assigned_agent,
        "project_location": impact.project_location,
        "location_map": impact.location_map,
        "project_id": impact.project_id if impact.donation_sent_ms is not None else None,
        "impact_video": impact.impact_video,
        "cancellation_reason": impact.cancellation_reason,
    }
    for name, text in optional_text.items():
        if text is not None:
            view[name] = text
    if impact.impact_type == "money_donated":
        label = cause_label(session, impact.cause)
        if label is not None:
            view["donation_category"] = label
    if impact.env == "production" and impact.certificate_id is not None:
        view["certificate"] = f"{public_base_url.rstrip('/')}/certificate/{tid}"
    if impact.env == "sandbox":
        view["is_test_transaction"] = True
    if impact.is_bonus:
        view["is_bonus_impact"] = True
    if impact.schedule_id is not None:
        view["schedule_id"] = impact.schedule_id
        view["period"] = impact.period
    return view
