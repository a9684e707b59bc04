"""The email to an account's owners when one of its webhook endpoints is
disabled (it answered 410, or failed every attempt for five days); queued by
webhooks/delivery.py in the transaction that disabled it."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

from openimpact.web import template_environment

TEMPLATES = ("webhook_disabled",)
# The layout of the dashboard users' emails (users/templates/_user_email.html).
_FOLDERS = (
    Path(__file__).parent / "templates",
    Path(__file__).parent.parent / "users" / "templates",
)
_ENV = template_environment(*_FOLDERS)
_TEXT = template_environment(*_FOLDERS)
_TEXT.autoescape = False


def compose(payload: dict[str, Any], mail_from: str) -> EmailMessage:
    if payload.get("template") not in TEMPLATES or not payload.get("to"):
        raise ValueError("not a webhook email, or no recipient")
    facts = {
        "account": " ".join(str(payload.get("account_name") or "Your account").split()),
        "env": payload.get("env", "production"),
        "endpoint_id": payload.get("endpoint_id", ""),
        "url": payload.get("url", ""),
        "reason": payload.get("reason", ""),
    }
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = payload["to"]
    message["Subject"] = f"{facts['account']}: a webhook endpoint was disabled"
    message.set_content(_TEXT.get_template("webhook_disabled.txt").render(facts))
    message.add_alternative(
        _ENV.get_template("webhook_disabled.html").render(facts), subtype="html"
    )
    return message
