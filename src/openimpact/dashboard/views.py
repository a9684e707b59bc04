"""What each dashboard page needs, gathered from the services the API uses.

Every function here takes a database session and the signed-in member and
returns plain data for a template. Nothing here is a second copy of a rule:
totals come from stats.service, records from impacts.queries, the track view
from impacts.tracking (the same function /v1/track answers with), cancelling
from impacts.service, keys from accounts.service, users from users.service,
webhook endpoints and their delivery log from webhooks.service.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pydantic import ValidationError
from sqlalchemy.orm import Session

from openimpact.accounts import service as accounts
from openimpact.accounts.models import ENVIRONMENTS, Account
from openimpact.budgets import service as budget_service
from openimpact.certificates import service as certificates
from openimpact.certificates.render import describe_impact, share_links
from openimpact.customers import service as customers
from openimpact.customers.models import Customer
from openimpact.dashboard.security import caller_of
from openimpact.errors import NotFound, ValidationFailed, describe_validation_errors
from openimpact.impacts import service as impacts
from openimpact.impacts.models import STAGES, Impact
from openimpact.impacts.queries import ImpactQuery, ImpactRow, impact_page, list_impacts
from openimpact.impacts.tracking import track_view
from openimpact.lifecycle import sandbox
from openimpact.lifecycle.service import STAGE_LABELS, parse_tracking_id
from openimpact.outbox.service import Events
from openimpact.pagination import CursorCodec
from openimpact.plans import service as plan_service
from openimpact.projects.models import Partner, Project
from openimpact.public import service as public
from openimpact.schedules import service as schedule_service
from openimpact.schedules.schemas import ScheduleCreate, SchedulePatch
from openimpact.stats import service as stats
from openimpact.timeutil import ms_to_iso, now_ms
from openimpact.users import service as users
from openimpact.users.service import Member
from openimpact.webhooks import guard
from openimpact.webhooks import service as webhook_service
from openimpact.webhooks.schemas import EndpointCreate, EndpointPatch

# Wording of the five impact types on pages.
TYPE_LABELS = {
    "tree_planted": "Trees planted",
    "waste_removed": "Ocean plastic removed",
    "carbon_captured": "Carbon captured",
    "coral_restored": "Coral restored",
    "money_donated": "Donated",
}
TYPE_UNITS = {
    "tree_planted": "trees",
    "waste_removed": "lbs",
    "carbon_captured": "lbs CO₂",
    "coral_restored": "coral fragments",
    "money_donated": "USD",
}
STATUS_LABELS = {"active": "Active", "cancelled": "Cancelled"}
LATEST = 10
PAGE_SIZE = 50


def figure(impact_type: str, amount: int | None) -> str:
    """An exact figure for a total: 4,321, or $43.21 for donations (cents)."""
    amount = amount or 0
    if impact_type == "money_donated":
        sign = "-" if amount < 0 else ""
        return f"{sign}${abs(amount) // 100:,}.{abs(amount) % 100:02d}"
    return f"{amount:,}"


def when(iso: str | None) -> str:
    """2026-11-22T09:14:03.271Z → 2026-11-22 09:14 UTC."""
    if not iso:
        return ""
    return f"{iso[:10]} {iso[11:16]} UTC"


def describe(row: ImpactRow) -> str:
    return describe_impact(row.impact_type, row.amount, row.category)


# Overview ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DateRange:
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


def default_range(today: date | None = None) -> DateRange:
    today = today or date.fromisoformat(ms_to_iso(now_ms())[:10])
    return DateRange(today - timedelta(days=29), today)


def overview(session: Session, member: Member, span: DateRange, metric: str) -> dict[str, Any]:
    caller = caller_of(member)
    totals = stats.totals(session, caller)
    series = stats.daily(session, caller, span.start, span.end)["daily_impact"]
    by_day = {row["date"]: row for row in series}
    days = [(span.start + timedelta(days=n)).isoformat() for n in range(span.days)]
    chart = {
        "metric": metric,
        "label": TYPE_LABELS[metric],
        "unit": TYPE_UNITS[metric],
        "days": days,
        "values": [by_day.get(day, {}).get(metric, 0) for day in days],
    }
    latest, _ = impact_page(session, caller, ImpactQuery(limit=LATEST), None)
    return {
        "totals": totals,
        "chart": chart,
        "chart_rows": [(day, by_day[day]) for day in days if day in by_day],
        "latest": latest,
        "span": span,
        "metric": metric,
        "budget_banner": budget_banner(session, member),
    }


# Impacts -----------------------------------------------------------------------------------


def impacts_page(
    session: Session, member: Member, query: ImpactQuery, cursor: str | None, codec: CursorCodec
) -> dict[str, Any]:
    rows, next_cursor = list_impacts(session, caller_of(member), query, cursor, codec)
    return {
        "rows": rows,
        "next_cursor": next_cursor,
        "budget_banner": budget_banner(session, member),
    }


def csv_page(
    session: Session, member: Member, query: ImpactQuery, after: int | None
) -> tuple[list[ImpactRow], int | None]:
    return impact_page(session, caller_of(member), query, after)


_YOUTUBE = re.compile(r"^(?:www\.|m\.)?(?:youtube\.com|youtube-nocookie\.com)$")
_VIDEO_ID = re.compile(r"^[A-Za-z0-9_-]{6,20}$")


def video_embed(url: str | None) -> str | None:
    """An embeddable player URL for a YouTube or Vimeo link, else None (the
    page then shows a plain link)."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    video_id = None
    if _YOUTUBE.match(host):
        if parts.path == "/watch":
            video_id = next(iter(parse_qs(parts.query).get("v", [])), None)
        elif parts.path.startswith(("/embed/", "/shorts/", "/live/")):
            video_id = parts.path.split("/")[2]
        if video_id and _VIDEO_ID.match(video_id):
            return f"https://www.youtube-nocookie.com/embed/{video_id}"
    elif host == "youtu.be":
        video_id = parts.path.lstrip("/").split("/")[0]
        if _VIDEO_ID.match(video_id):
            return f"https://www.youtube-nocookie.com/embed/{video_id}"
    elif host in ("vimeo.com", "www.vimeo.com", "player.vimeo.com"):
        digits = [p for p in parts.path.split("/") if p.isdigit()]
        if digits:
            return f"https://player.vimeo.com/video/{digits[0]}"
    return None


def _map_url(url: str | None) -> str | None:
    # Only a Google Maps embed goes into the iframe (the CSP allows no other).
    if url and url.startswith(("https://www.google.com/maps/embed", "https://maps.google.com/")):
        return url
    return None


def _web_url(url: str | None) -> str | None:
    return url if url and urlsplit(url).scheme in ("http", "https") else None


@dataclass
class TrackModal:
    tracking_id: str
    track: dict[str, Any]
    headline: str
    stage: str
    stages: list[dict[str, Any]]
    cancelled: bool
    cancellable: bool
    sandbox: bool
    map_url: str | None
    partner: dict[str, Any] | None
    project: dict[str, Any] | None
    video_url: str | None
    video_embed: str | None
    live_session: str | None
    certificate: dict[str, Any] | None
    customer: dict[str, Any] | None
    metadata: dict[str, Any]
    message: str | None = None
    errors: dict[str, str] = field(default_factory=dict)
    reason: str = ""


def _impact(session: Session, member: Member, tracking_id: str) -> Impact:
    # Another account's impact and one that does not exist are the same 404,
    # message included (find_impact words its own for the API's parameters).
    parsed = parse_tracking_id(tracking_id)
    if parsed is not None and parsed[0] == member.account_user_id:
        try:
            return impacts.find_impact(session, caller_of(member), parsed[0], ms_to_iso(parsed[1]))
        except NotFound:
            pass
    raise NotFound("no impact with this tracking id")


def track_modal(
    session: Session,
    member: Member,
    tracking_id: str,
    base_url: str,
    stage_seconds: int,
    events: Events,
) -> TrackModal:
    """The track view of one impact: /v1/track's own view, plus what the page
    shows beside it (partner, customer, metadata, certificate addresses)."""
    impact = _impact(session, member, tracking_id)
    if sandbox.is_due(impact, now_ms(), stage_seconds):
        sandbox.catch_up(session, impact, now_ms(), stage_seconds, events)
    caller = caller_of(member)
    track = track_view(session, impact, caller.user_id, base_url)
    stage_times = {
        "initiated": track.get("impact_initiated"),
        "donation_received": track.get("donation_available"),
        "transferred": track.get("donation_sent"),
        "completed": track.get("impact_completed"),
    }
    stages = [
        {"stage": s, "label": STAGE_LABELS[s], "at": stage_times[s], "when": when(stage_times[s])}
        for s in STAGES
    ]
    partner = None
    if impact.partner_id:
        row = session.get(Partner, impact.partner_id)
        if row is not None:
            partner = {
                "name": row.name,
                "description": row.description,
                "website": _web_url(row.website),
                "logo_url": _web_url(row.logo_url),
            }
    if partner is None and impact.assigned_agent:
        partner = {
            "name": impact.assigned_agent,
            "description": "",
            "website": None,
            "logo_url": None,
        }
    project = None
    if impact.project_id and impact.donation_sent_ms is not None:
        row_p = session.get(Project, impact.project_id)
        text = row_p.i18n.get("en", {}) if row_p is not None else {}
        project = {
            "project_id": impact.project_id,
            "name": text.get("name"),
            "location": impact.project_location or text.get("location"),
        }
    certificate = None
    if impact.env == "production" and impact.certificate_id:
        links = certificates.urls(base_url, impact.certificate_id)
        headline_text = describe_impact(impact.impact_type, impact.amount, impact.category)
        certificate = {
            "status": certificates.status_of(impact),
            "page": links.page,
            "image": links.image,
            "pdf": links.pdf,
            "share": share_links(links.page, f"{member.account_name}: {headline_text}"),
        }
    customer = None
    if impact.customer_pk is not None:
        c = session.get(Customer, impact.customer_pk)
        if c is not None:
            customer = {"customer_id": c.customer_id, "email": c.email, "name": c.name}
    cancelled = impact.cancelled_ms is not None
    return TrackModal(
        tracking_id=track["tracking_id"],
        track=track,
        headline=describe_impact(impact.impact_type, impact.amount, impact.category),
        stage=impact.stage,
        stages=stages,
        cancelled=cancelled,
        cancellable=not cancelled and impact.stage in impacts.CANCELLABLE_STAGES,
        sandbox=impact.env == "sandbox",
        map_url=_map_url(impact.location_map),
        partner=partner,
        project=project,
        video_url=_web_url(impact.impact_video),
        video_embed=video_embed(impact.impact_video),
        live_session=track.get("live_session_date"),
        certificate=certificate,
        customer=customer,
        metadata=dict(impact.meta or {}),
    )


def cancel(
    session: Session,
    member: Member,
    tracking_id: str,
    reason: str | None,
    stage_seconds: int,
    events: Events,
) -> str:
    """Cancel through the API's own service (same rules, totals and messages)."""
    impact = _impact(session, member, tracking_id)
    outcome = impacts.cancel_impact(
        session,
        caller_of(member),
        member.account_user_id,
        ms_to_iso(impact.time_ms),
        reason,
        stage_seconds=stage_seconds,
        events=events,
    )
    return str(outcome.body["message"])


# Customers ---------------------------------------------------------------------------------


def customers_page(
    session: Session, member: Member, text: str | None, cursor: str | None, codec: CursorCodec
) -> dict[str, Any]:
    rows, next_cursor = customers.search_customers(
        session, caller_of(member), text, PAGE_SIZE, cursor, codec
    )
    return {"rows": rows, "next_cursor": next_cursor}


def customer_page(
    session: Session, member: Member, customer_id: str, cursor: str | None, codec: CursorCodec
) -> dict[str, Any]:
    caller = caller_of(member)
    customer = customers.customer_by_id(session, caller, customer_id)
    rows, next_cursor = list_impacts(
        session, caller, ImpactQuery(customer_email=customer.email), cursor, codec
    )
    return {
        "customer": {
            "customer_id": customer.customer_id,
            "email": customer.email,
            "name": customer.name,
            "onboarded_on": ms_to_iso(customer.onboarded_ms),
        },
        "totals": customers.customer_totals(session, customer),
        "rows": rows,
        "next_cursor": next_cursor,
    }


# Certificates ------------------------------------------------------------------------------


def certificates_page(
    session: Session, member: Member, status: str | None, after: int | None, base_url: str
) -> dict[str, Any]:
    rows, next_after = certificates.list_certificates(
        session, member.account_id, member.account_user_id, status, after, PAGE_SIZE, base_url
    )
    return {"rows": rows, "next_after": next_after}


# Developers --------------------------------------------------------------------------------


def _account(session: Session, member: Member) -> Account:
    account = session.get(Account, member.account_id)
    if account is None:
        raise NotFound("no such account")
    return account


def api_keys(session: Session, member: Member) -> list[dict[str, Any]]:
    return [
        {
            "prefix": key.prefix,
            "env": key.env,
            "created_on": ms_to_iso(key.created_ms),
            "revoked_on": ms_to_iso(key.revoked_ms) if key.revoked_ms else None,
        }
        for key in accounts.list_keys(session, _account(session, member))
    ]


def create_key(session: Session, member: Member, env: str) -> accounts.IssuedKey:
    return accounts.create_key(session, _account(session, member), env)


def revoke_key(session: Session, member: Member, prefix: str) -> None:
    # Only a key of this account: another's is the same 404 as none at all.
    key = next(
        (k for k in accounts.list_keys(session, _account(session, member)) if k.prefix == prefix),
        None,
    )
    if key is None:
        raise NotFound("no such key")
    accounts.revoke_key(session, prefix)


# Team ----------------------------------------------------------------------------------------


def team(session: Session, member: Member) -> list[dict[str, Any]]:
    return [
        users.describe(user)
        | {"created_on": ms_to_iso(user.created_ms), "you": user.id == member.user_pk}
        for user in users.users_of(session, member.account_id)
    ]


def invite(session: Session, member: Member, email: str, role: str) -> users.Invitation:
    return users.invite(session, _account(session, member), email, role)


def remove_user(session: Session, member: Member, user_pk: int) -> None:
    users.remove(
        session, member.account_id, users.user_of_account(session, member.account_id, user_pk)
    )


def env_choices() -> tuple[str, ...]:
    # Production first: it is the real thing (issue 8).
    return tuple(sorted(ENVIRONMENTS, key=lambda env: env != "production"))


# Public profile ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Builder:
    """The widget builder's choices (from the page's query string)."""

    types: tuple[str, ...] = ("tree_planted", "waste_removed")
    theme: str = "light"
    locale: str = "en"
    badge_type: str = "tree_planted"


def profile(session: Session, member: Member, builder: Builder, base_url: str) -> dict[str, Any]:
    settings = public.profile_settings(session, member.account_id)
    snippets = None
    if settings.slug:
        snippets = public.embed_snippets(
            base_url,
            settings.slug,
            types=builder.types,
            theme=builder.theme,
            locale=builder.locale,
            badge_type=builder.badge_type,
        )
    return {"settings": settings, "snippets": snippets, "builder": builder}


def save_profile(
    session: Session, member: Member, slug: str, name: str, logo_url: str, enabled: bool
) -> public.ProfileSettings:
    return public.update_profile(
        session, member.account_id, slug=slug, name=name, logo_url=logo_url, enabled=enabled
    )


def customer_page_link(
    session: Session, member: Member, customer_id: str, base_url: str, *, rotate: bool = False
) -> public.CustomerPageLink | None:
    """The customer's private page (production customers only: the page shows
    real impact)."""
    if member.env != "production":
        if rotate:
            # No page to rotate: the same 404 as the customer's own page here,
            # not "rotated" for a customer the sandbox does not have.
            raise NotFound(f"no production customer with id {customer_id[:40]}")
        return None
    if rotate:
        return public.rotate_customer_page_link(session, member.account_id, customer_id, base_url)
    return public.customer_page_link(session, member.account_id, customer_id, base_url)


# Schedules ---------------------------------------------------------------------------------------


def schedules(session: Session, member: Member, codec: Any) -> list[dict[str, Any]]:
    """Every schedule of the environment, through the API's own listing."""
    caller = caller_of(member)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = schedule_service.list_schedules(session, caller, 100, cursor, codec)
        rows.extend(page)
        if cursor is None:
            return rows


def create_schedule(session: Session, member: Member, fields: dict[str, Any]) -> dict[str, Any]:
    """The form's fields through the API's schema and service: a ValidationFailed
    names the field ("amount: ...")."""
    try:
        body = ScheduleCreate.model_validate(fields)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_errors(list(exc.errors()))) from None
    return schedule_service.create_schedule(session, caller_of(member), body)


def change_schedule(
    session: Session, member: Member, schedule_id: str, status: str | None, delete: bool = False
) -> None:
    caller = caller_of(member)
    if delete:
        schedule_service.delete_schedule(session, caller, schedule_id)
        return
    patch = SchedulePatch.model_validate({"status": status})
    schedule_service.update_schedule(session, caller, schedule_id, patch)


# Plan and budget ---------------------------------------------------------------------------------


def budget_banner(session: Session, member: Member) -> budget_service.BudgetView | None:
    """This month's budget when it is close (80 % or more): the pages' banner."""
    view = budget_service.budget_view(session, member.account_id, member.env)
    return view if view.close else None


def plan_and_budget(session: Session, member: Member) -> dict[str, Any]:
    view = budget_service.budget_view(session, member.account_id, member.env)
    return {
        "plan": plan_service.plan_of(session, member.account_id),
        "budget": view,
        "budget_banner": view if view.close else None,
        "prices": budget_service.unit_prices(session),
    }


def set_budget(session: Session, member: Member, dollars: str | None) -> None:
    """The form's cap in dollars ("500", "1,250.50"), or None to remove it."""
    cents = None
    if dollars is not None:
        text = dollars.strip().replace(",", "").removeprefix("$")
        if not re.fullmatch(r"[0-9]{1,11}(\.[0-9]{1,2})?", text):
            raise ValidationFailed("monthly: enter an amount in dollars, like 500 or 1250.50")
        whole, _, part = text.partition(".")
        cents = int(whole) * 100 + int((part + "00")[:2])
        if cents < 1:
            raise ValidationFailed("monthly: the budget must be at least $0.01")
    budget_service.set_budget(session, member.account_id, member.env, cents)


# Webhooks ----------------------------------------------------------------------------------------

WEBHOOK_LOG_SIZE = 20


def webhook_endpoints(session: Session, member: Member, codec: CursorCodec) -> list[dict[str, Any]]:
    """Every endpoint of the environment, through the API's own listing."""
    caller = caller_of(member)
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page, cursor = webhook_service.list_endpoints(session, caller, 100, cursor, codec)
        rows.extend(page)
        if cursor is None:
            return rows


def webhook_form(fields: dict[str, Any]) -> EndpointCreate:
    """The form's fields through the API's schema: a ValidationFailed names
    the field ("url: ..."); the guard's syntax check comes first, for its
    words about what is wrong with a URL."""
    if isinstance(fields.get("url"), str):
        guard.check_syntax(fields["url"])
    try:
        return EndpointCreate.model_validate(fields)
    except ValidationError as exc:
        raise ValidationFailed(describe_validation_errors(list(exc.errors()))) from None


def create_webhook(
    session: Session, member: Member, body: EndpointCreate, url: webhook_service.CheckedUrl
) -> dict[str, Any]:
    """Through the API's service, with the URL the SSRF guard passed."""
    return webhook_service.create_endpoint(session, caller_of(member), body, url)


def webhook_page(
    session: Session, member: Member, endpoint_id: str, cursor: str | None, codec: CursorCodec
) -> dict[str, Any]:
    """One endpoint and a page of its delivery log, newest first."""
    caller = caller_of(member)
    endpoint = webhook_service.find_endpoint(session, caller, endpoint_id)
    rows, next_cursor = webhook_service.list_deliveries(
        session, caller, endpoint_id, WEBHOOK_LOG_SIZE, cursor, codec
    )
    return {
        "endpoint": webhook_service.endpoint_out(endpoint),
        "deliveries": rows,
        "next_cursor": next_cursor,
    }


def reveal_webhook_secret(session: Session, member: Member, endpoint_id: str) -> dict[str, Any]:
    return webhook_service.reveal_secret(session, caller_of(member), endpoint_id)


def rotate_webhook_secret(session: Session, member: Member, endpoint_id: str) -> dict[str, Any]:
    return webhook_service.rotate_secret(session, caller_of(member), endpoint_id)


def set_webhook_enabled(
    session: Session, member: Member, endpoint_id: str, enabled: bool
) -> dict[str, Any]:
    return webhook_service.update_endpoint(
        session, caller_of(member), endpoint_id, EndpointPatch(enabled=enabled)
    )


def delete_webhook(session: Session, member: Member, endpoint_id: str) -> None:
    webhook_service.delete_endpoint(session, caller_of(member), endpoint_id)


def queue_webhook_test(
    session: Session, member: Member, endpoint_id: str, lease_seconds: int
) -> webhook_service.TestPing:
    return webhook_service.queue_test(session, caller_of(member), endpoint_id, lease_seconds)


def webhook_test_result(session: Session, message_pk: int) -> dict[str, Any] | None:
    return webhook_service.attempt_of_message(session, message_pk)


def resend_webhook(
    session: Session, member: Member, endpoint_id: str, delivery_id: str
) -> dict[str, Any]:
    return webhook_service.resend(session, caller_of(member), endpoint_id, delivery_id)
