"""The emails to an account's owners when a month's budget comes close (80 %)
and when it is reached; queued by budgets/service.py in the transaction that
spent it, composed and sent by the worker."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

from openimpact.budgets.service import dollars
from openimpact.web import template_environment

TEMPLATES = ("budget_threshold", "budget_exceeded")
# The layout of the dashboard users' emails (users/templates/_user_email.html).
_FOLDERS = (
    Path(__file__).parent / "templates",
    Path(__file__).parent.parent / "users" / "templates",
)
_ENV = template_environment(*_FOLDERS)
_TEXT = template_environment(*_FOLDERS)
_TEXT.autoescape = False
_SUBJECTS = {
    "budget_threshold": "{account}: 80% of this month's impact budget is spent",
    "budget_exceeded": "{account}: this month's impact budget is reached; new impacts are refused",
}


def compose(payload: dict[str, Any], mail_from: str) -> EmailMessage:
    template = payload.get("template")
    if template not in TEMPLATES or not payload.get("to"):
        raise ValueError("not a budget email, or no recipient")
    facts = {
        "account": " ".join(str(payload.get("account_name") or "Your account").split()),
        "env": payload.get("env", "production"),
        "month": payload.get("month", ""),
        "cap": dollars(int(payload.get("monthly_cents") or 0)),
        "spent": dollars(int(payload.get("spent_cents") or 0)),
        "resets_on": payload.get("resets_on", ""),
    }
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = payload["to"]
    message["Subject"] = _SUBJECTS[template].format(account=facts["account"])
    message.set_content(_TEXT.get_template(f"{template}.txt").render(facts))
    message.add_alternative(_ENV.get_template(f"{template}.html").render(facts), subtype="html")
    return message
