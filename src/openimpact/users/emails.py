"""The emails of dashboard users: an invitation, a password reset.

Queued in the outbox by users/service.py (``send_invite``, ``send_reset``) in
the transaction that made the link; the worker composes and sends them.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path
from typing import Any

from openimpact.web import template_environment

TEMPLATES = ("user_invite", "user_reset")
_ENV = template_environment(Path(__file__).parent / "templates")
# Plain text is not HTML: the text parts are rendered without escaping.
_TEXT = template_environment(Path(__file__).parent / "templates")
_TEXT.autoescape = False


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def compose(payload: dict[str, Any], mail_from: str) -> EmailMessage:
    template = payload.get("template")
    if template not in TEMPLATES:
        raise ValueError(f"no user email template {template!r}")
    to = payload.get("to")
    url = payload.get("url")
    if not to or not url:
        raise ValueError("the message names no recipient or link")
    facts = {
        "account": _one_line(payload.get("account_name") or "your account"),
        "role": payload.get("role") or "member",
        "url": url,
    }
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    if template == "user_invite":
        message["Subject"] = f"You are invited to the OpenImpact dashboard of {facts['account']}"
    else:
        message["Subject"] = "Set a new password for your OpenImpact dashboard"
    message.set_content(_TEXT.get_template(f"{template}.txt").render(facts))
    message.add_alternative(_ENV.get_template(f"{template}.html").render(facts), subtype="html")
    return message
