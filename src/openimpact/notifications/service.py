"""Emails of the outbox: what an email says, and its delivery bookkeeping.

An email is written in the same transaction as the change it reports: the
impact (``impacts/batch.py``: "made on your behalf") or its completion
(``lifecycle/service.py::advance``: "completed, certificate final"); the
worker delivers it later (``worker.py``), through the outbox's leases and
retries (``outbox/service.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.certificates.render import describe_impact
from openimpact.customers.models import Customer
from openimpact.db import table
from openimpact.errors import OpenImpactError
from openimpact.impacts.models import Impact
from openimpact.kit import RECORD_KEYS
from openimpact.lifecycle.assignment import Assigner
from openimpact.outbox import service as outbox
from openimpact.projects.models import Project
from openimpact.public import links
from openimpact.timeutil import parse_iso_ms
from openimpact.web import template_environment

MAX_ATTEMPTS = outbox.MAX_ATTEMPTS
NO_SMTP = outbox.NO_SMTP
EMAIL = "email"

_impacts = table(Impact)
_customers = table(Customer)
_accounts = table(Account)
# Rows per multi-row INSERT: 7 parameters each, well under SQLite's 32,766
# and PostgreSQL's 65,535 bound parameters per statement.
_ROWS_PER_INSERT = 1000


@dataclass(frozen=True, slots=True)
class SmtpTarget:
    host: str
    port: int
    security: str  # "none" | "starttls" | "tls"
    username: str | None
    password: str | None


_SCHEMES = {"smtp": ("none", 25), "smtp+starttls": ("starttls", 587), "smtps": ("tls", 465)}


def parse_smtp_url(url: str) -> SmtpTarget:
    """``smtp://host:25``, ``smtp+starttls://user:pass@host:587`` or
    ``smtps://user:pass@host:465`` (user and password URL-encoded)."""
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        raise ValueError(
            "OPENIMPACT_SMTP_URL must look like smtp://host:25, "
            "smtp+starttls://user:pass@host:587 or smtps://user:pass@host:465"
        )
    security, default_port = _SCHEMES[parts.scheme]
    return SmtpTarget(
        host=parts.hostname,
        port=parts.port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


@dataclass(frozen=True, slots=True)
class Claimed:
    id: int
    attempts: int  # including this one
    payload: dict[str, Any]
    business_name: str


def fail_due(session: Session, now: int, reason: str) -> int:
    """Give up on a chunk of due emails (no way to send any of them); see
    outbox.fail_due."""
    return outbox.fail_due(session, EMAIL, now, reason)


def claim_due(session: Session, now: int, limit: int) -> list[Claimed]:
    leased = outbox.claim_due(session, EMAIL, now, limit)
    claimed = [Claimed(m.id, m.attempts, m.payload, m.account_name or "A business") for m in leased]
    where = {m.id: (m.account_id, m.env) for m in leased}
    return _with_context(session, claimed, where) if claimed else claimed


def record_delivered(session: Session, message_id: int, now: int) -> None:
    outbox.record_delivered(session, message_id, now)


def record_failure(session: Session, message: Claimed, now: int, error: str) -> None:
    outbox.record_failure(session, message.id, message.attempts, now, error)


# What an email shows ---------------------------------------------------------------------------
#
# A message's payload is what its transaction knew; what the email also shows
# is looked up when the message is claimed (in the claim's own transaction) and
# handed to compose_email under SEND_CONTEXT, never stored:
#   - the customer's private page token (made then, on first use: recording an
#     impact stays the statements it was);
#   - the project: the impact's own once it reached a partner, else the one
#     the assignment rules would choose now (lifecycle/assignment.py).

SEND_CONTEXT = "send_context"
CREATED = outbox.IMPACT_CREATED
COMPLETED = outbox.IMPACT_COMPLETED


def _with_context(
    session: Session, claimed: list[Claimed], where: dict[int, tuple[int, str]]
) -> list[Claimed]:
    customer_ids = {
        str((c.payload.get("customer") or {}).get("customer_id") or "") for c in claimed
    } - {""}
    customer_pks: dict[str, int] = (
        dict(
            session.execute(
                select(_customers.c.customer_id, _customers.c.id).where(
                    _customers.c.customer_id.in_(customer_ids)
                )
            ).all()
        )
        if customer_ids
        else {}
    )
    tokens = links.tokens_for(session, list(customer_pks.values()))
    projects = _projects_of(session, claimed, where)
    out = []
    for message in claimed:
        customer_id = str((message.payload.get("customer") or {}).get("customer_id") or "")
        pk = customer_pks.get(customer_id)
        context: dict[str, Any] = {}
        if pk is not None:
            context["page_token"] = tokens[pk]
        if message.id in projects:
            context["project"] = projects[message.id]
        payload = {**message.payload, SEND_CONTEXT: context}
        out.append(Claimed(message.id, message.attempts, payload, message.business_name))
    return out


def _projects_of(
    session: Session, claimed: list[Claimed], where: dict[int, tuple[int, str]]
) -> dict[int, dict[str, str]]:
    """The project each message's impact went to (or will go to)."""
    chosen: dict[int, str] = {}
    assigner: Assigner | None = None
    for message in claimed:
        payload = message.payload
        project_id = payload.get("project_id")
        if project_id is None and message.id in where:
            account_id, env = where[message.id]
            time_ms = parse_iso_ms(str(payload.get("time_utc", "")))
            impact_type = next((key for key in RECORD_KEYS if key in payload), None)
            row = (
                session.execute(
                    select(_impacts.c.project_id, _impacts.c.category, _impacts.c.cause).where(
                        _impacts.c.account_id == account_id,
                        _impacts.c.env == env,
                        _impacts.c.time_ms == time_ms,
                    )
                ).first()
                if time_ms is not None and impact_type is not None
                else None
            )
            if row is not None:
                project_id = row.project_id
                if project_id is None and impact_type is not None:
                    try:
                        assigner = assigner or Assigner(session)
                        project_id = assigner.assign(
                            account_id, impact_type, row.category, row.cause
                        ).project_id
                    except OpenImpactError:
                        project_id = None  # no project can execute it yet: say nothing
        if project_id:
            chosen[message.id] = str(project_id)
    texts = (
        {
            project_id: (i18n, organization)
            for project_id, i18n, organization in session.execute(
                select(Project.project_id, Project.i18n, Project.organization).where(
                    Project.project_id.in_(set(chosen.values()))
                )
            )
        }
        if chosen
        else {}
    )
    out = {}
    for message_id, project_id in chosen.items():
        if project_id not in texts:
            continue
        i18n, organization = texts[project_id]
        english = i18n.get("en") or {}
        out[message_id] = {
            "name": str(english.get("name") or project_id),
            "location": str(english.get("location") or ""),
            "organization": organization,
        }
    return out


# Templates: HTML autoescaped (names are user-supplied); plain text as it is.
_TEMPLATE_DIR = Path(__file__).parent / "templates"
_HTML = template_environment(_TEMPLATE_DIR)
_TEXT = Environment(
    loader=FileSystemLoader(str(_TEMPLATE_DIR)),
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _one_line(text: str) -> str:
    # Header values must not break lines (an account name is free text).
    return " ".join(text.split())


def compose_email(
    payload: dict[str, Any], business_name: str, mail_from: str, public_url: str | None
) -> EmailMessage:
    """A customer notification (seed 001: notify), as plain text and HTML:
    ``impact_created`` when an impact is made on the customer's behalf,
    ``impact_completed`` once it is completed and its certificate final.

    The links (the customer's page, the certificate) need the server's public
    address, OPENIMPACT_PUBLIC_URL: the worker serves no request to learn it
    from. Without it the email says what was done and gives the tracking ID,
    with no links."""
    # Here, not at the top: lifecycle.service queues completion emails
    # through this module.
    from openimpact.lifecycle.service import STAGE_LABELS

    template = payload.get("template") or CREATED
    customer = payload.get("customer") or {}
    to = customer.get("customer_email")
    if not to:
        raise ValueError("the message names no customer email")
    impact_type = next((key for key in RECORD_KEYS if key in payload), None)
    if impact_type is None:
        raise ValueError("the message names no impact")
    if template not in (CREATED, COMPLETED):
        raise ValueError(f"no email template {template!r}")
    context = payload.get(SEND_CONTEXT) or {}
    business = _one_line(business_name) or "A business"
    what = describe_impact(impact_type, int(payload[impact_type]), payload.get("category"))
    tracking_id = f"{payload['user_id']}-{payload['time_utc']}"
    name = customer.get("customer_name")
    base = public_url.rstrip("/") if public_url else None
    facts = {
        "business": business,
        "name": " ".join(str(name).split()) if name else None,
        "what": what,
        "tracking_id": tracking_id,
        "project": context.get("project"),
        "page_url": (
            links.customer_page_url(base, context["page_token"])
            if base and context.get("page_token")
            else None
        ),
        "certificate_url": f"{base}/certificate/{tracking_id}" if base else None,
        "stages": list(STAGE_LABELS.values()),
    }
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = formataddr((_one_line(str(name)), to)) if name else to
    if template == CREATED:
        message["Subject"] = f"{business}: {what} on your behalf"
    else:
        message["Subject"] = f"Completed: {what} on your behalf by {business}"
    message.set_content(_TEXT.get_template(f"{template}.txt").render(facts))
    message.add_alternative(_HTML.get_template(f"{template}.html").render(facts), subtype="html")
    return message
