"""Certificates of production impacts: find one, and gather what it shows.

A certificate is issued when a production impact is initiated (its ID is
``Impact.certificate_id``: 24 random base32 characters, so it cannot be
guessed) and is final once the impact is completed (seed 000). It is void when
the impact was cancelled. Sandbox impacts have no certificate.

Everything here ends up on public pages, so nothing here may carry an email
address: customers appear by name only, and free text typed by a business
(its name, a cancellation reason) has addresses masked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.certificates.render import CertificateView, Stage, describe_impact, headline
from openimpact.customers.models import Customer
from openimpact.errors import NotFound
from openimpact.impacts.models import STAGES, Impact
from openimpact.impacts.tracking import cause_label
from openimpact.lifecycle.service import STAGE_COLUMNS, STAGE_LABELS, impact_by_tracking_id
from openimpact.projects.models import Partner, Project
from openimpact.timeutil import ms_to_datetime, ms_to_iso

UNITS = {
    "tree_planted": "trees",
    "waste_removed": "lbs",
    "carbon_captured": "lbs CO₂",
    "coral_restored": "coral fragments",
    "money_donated": "US cents",
}
_EMAIL = re.compile(r"[^\s@<>()\"',;:]+@[^\s@<>()\"',;:]+")
_CERTIFICATE_ID = re.compile(r"^[a-z2-7]{12,64}$")


def mask_emails(text: str | None) -> str | None:
    if text is None:
        return None
    return _EMAIL.sub("[email hidden]", text)


class _Staged(Protocol):
    stage: str
    cancelled_ms: int | None


def status_of(impact: _Staged) -> str:
    if impact.cancelled_ms is not None:
        return "void"
    return "completed" if impact.stage == "completed" else "in_progress"


def by_certificate_id(session: Session, certificate_id: str) -> Impact:
    impact = None
    key = certificate_id.strip().lower()
    if _CERTIFICATE_ID.match(key):
        impact = session.scalar(
            select(Impact).where(Impact.certificate_id == key, Impact.env == "production")
        )
    if impact is None:
        raise NotFound(f"no certificate with id {certificate_id[:80]}")
    return impact


def by_tracking_id(session: Session, tracking_id: str) -> Impact:
    try:
        impact = impact_by_tracking_id(session, tracking_id, "production")
    except NotFound:
        impact = None
    if impact is None or impact.certificate_id is None:
        raise NotFound(f"no certificate for tracking id {tracking_id[:120]}")
    return impact


@dataclass(frozen=True)
class Urls:
    page: str
    image: str
    pdf: str


def urls(base_url: str, certificate_id: str) -> Urls:
    """The certificate-ID address is the canonical one: the QR code, the share
    links and the Open Graph tags use it (``/certificate/{tracking_id}``, the
    address track returns, shows the same certificate)."""
    page = f"{base_url.rstrip('/')}/certificates/{certificate_id}"
    return Urls(page, f"{page}/image.png", f"{page}/certificate.pdf")


@dataclass(frozen=True)
class _Facts:
    impact: Impact
    user_id: str
    business_name: str
    customer_name: str | None
    category: str | None
    project: Project | None
    partner: Partner | None

    @property
    def tracking_id(self) -> str:
        return f"{self.user_id}-{ms_to_iso(self.impact.time_ms)}"


def _facts(session: Session, impact: Impact) -> _Facts:
    account = session.get(Account, impact.account_id)
    assert account is not None  # impacts are deleted with their account
    customer_name = None
    if impact.customer_pk is not None:
        customer_name = session.scalar(
            select(Customer.name).where(Customer.id == impact.customer_pk)
        )
    if customer_name and "@" in customer_name:
        customer_name = None  # a name that may be an address is not shown at all
    if impact.impact_type == "money_donated":
        category = cause_label(session, impact.cause)
    else:
        category = impact.category
    project = session.get(Project, impact.project_id) if impact.project_id else None
    partner = session.get(Partner, impact.partner_id) if impact.partner_id else None
    return _Facts(
        impact=impact,
        user_id=account.user_id,
        business_name=mask_emails(account.name) or account.user_id,
        customer_name=customer_name,
        category=category,
        project=project,
        partner=partner,
    )


def _stage_times(impact: Impact) -> list[tuple[str, int | None]]:
    return [(stage, getattr(impact, STAGE_COLUMNS[stage])) for stage in STAGES]


def _project_texts(facts: _Facts) -> tuple[str | None, str | None]:
    if facts.project is not None:
        text = facts.project.i18n.get("en", {})
        return text.get("name"), text.get("location")
    # The project left the catalogue: the impact's own snapshot still says where.
    return None, facts.impact.project_location


def certificate_view(session: Session, impact: Impact, base_url: str) -> CertificateView:
    facts = _facts(session, impact)
    assert impact.certificate_id is not None
    links = urls(base_url, impact.certificate_id)
    project_name, project_location = _project_texts(facts)
    partner = facts.partner
    return CertificateView(
        certificate_id=impact.certificate_id,
        tracking_id=facts.tracking_id,
        page_url=links.page,
        image_url=links.image,
        pdf_url=links.pdf,
        impact_type=impact.impact_type,
        amount=impact.amount,
        category=facts.category,
        business_name=facts.business_name,
        customer_name=facts.customer_name,
        issued_at=ms_to_datetime(impact.time_ms),
        status=status_of(impact),
        stages=tuple(
            Stage(stage, STAGE_LABELS[stage], ms_to_datetime(ms) if ms is not None else None)
            for stage, ms in _stage_times(impact)
        ),
        project_name=project_name,
        project_location=project_location,
        partner_name=partner.name if partner is not None else impact.assigned_agent,
        partner_website=partner.website if partner is not None else None,
        partner_logo_url=partner.logo_url if partner is not None else None,
        location_map=impact.location_map,
        impact_video=impact.impact_video,
        live_session_date=(
            ms_to_datetime(impact.live_session_ms) if impact.live_session_ms is not None else None
        ),
        cancelled_at=ms_to_datetime(impact.cancelled_ms) if impact.cancelled_ms else None,
        cancellation_reason=mask_emails(impact.cancellation_reason),
    )


def verification(session: Session, impact: Impact, base_url: str) -> dict[str, Any]:
    """The facts that let anyone check a certificate (GET /v1/certificates/{id})."""
    view = certificate_view(session, impact, base_url)
    body: dict[str, Any] = {
        "certificate_id": view.certificate_id,
        "status": view.status,
        "tracking_id": view.tracking_id,
        "impact_type": impact.impact_type,
        "amount": impact.amount,
        "unit": UNITS[impact.impact_type],
        "description": describe_impact(impact.impact_type, impact.amount, view.category),
        "headline": headline(view),
        "business_name": view.business_name,
        "issued_on": ms_to_iso(impact.time_ms),
        "stages": [
            {"stage": stage, "label": STAGE_LABELS[stage]}
            | ({"reached_on": ms_to_iso(ms)} if ms is not None else {})
            for stage, ms in _stage_times(impact)
        ],
        "certificate_url": view.page_url,
        "image_url": view.image_url,
        "pdf_url": view.pdf_url,
    }
    if view.category is not None:
        body["category"] = view.category
    if view.customer_name is not None:
        body["customer_name"] = view.customer_name
    if impact.completed_ms is not None:
        body["completed_on"] = ms_to_iso(impact.completed_ms)
    if impact.project_id is not None:
        body["project"] = {"project_id": impact.project_id} | {
            key: value
            for key, value in (("name", view.project_name), ("location", view.project_location))
            if value
        }
    if view.partner_name:
        body["partner"] = {"name": view.partner_name} | (
            {"website": view.partner_website} if view.partner_website else {}
        )
    if impact.live_session_ms is not None:
        body["live_session_date"] = ms_to_iso(impact.live_session_ms)
    if impact.impact_video is not None:
        body["impact_video"] = impact.impact_video
    if impact.cancelled_ms is not None:
        body["cancelled_on"] = ms_to_iso(impact.cancelled_ms)
    return body


# The dashboard's list of an account's certificates.

CERTIFICATE_STATUSES = ("in_progress", "completed", "void")


def list_certificates(
    session: Session,
    account_id: int,
    user_id: str,
    status: str | None,
    after: int | None,
    limit: int,
    base_url: str,
) -> tuple[list[dict[str, Any]], int | None]:
    """Certificates of the account's production impacts, newest first, with
    their status (final once completed, void once cancelled) and addresses;
    keyset on time_ms. Returns the page and the next position (or None)."""
    t = Impact.__table__.c
    stmt = select(
        t.time_ms,
        t.impact_type,
        t.amount,
        t.category,
        t.stage,
        t.cancelled_ms,
        t.completed_ms,
        t.certificate_id,
    ).where(
        t.account_id == account_id,
        t.env == "production",
        t.certificate_id.is_not(None),
    )
    if status == "void":
        stmt = stmt.where(t.cancelled_ms.is_not(None))
    elif status == "completed":
        stmt = stmt.where(t.cancelled_ms.is_(None), t.stage == "completed")
    elif status == "in_progress":
        stmt = stmt.where(t.cancelled_ms.is_(None), t.stage != "completed")
    if after is not None:
        stmt = stmt.where(t.time_ms < after)
    rows = session.execute(stmt.order_by(t.time_ms.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    for r in rows:
        links = urls(base_url, r.certificate_id)
        out.append(
            {
                "certificate_id": r.certificate_id,
                "tracking_id": f"{user_id}-{ms_to_iso(r.time_ms)}",
                "issued_on": ms_to_iso(r.time_ms),
                "completed_on": ms_to_iso(r.completed_ms) if r.completed_ms else None,
                "status": status_of(r),
                "description": describe_impact(r.impact_type, r.amount, r.category),
                "page_url": links.page,
                "image_url": links.image,
                "pdf_url": links.pdf,
            }
        )
    return out, (rows[-1].time_ms if more else None)
