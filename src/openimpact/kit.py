"""Small shared pieces: safe strings, impact kinds, and OpenAPI error docs."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from openimpact.errors import ErrorBody, ValidationFailed

RecordKey = Literal[
    "tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"
]
RECORD_KEYS: tuple[str, ...] = (
    "tree_planted",
    "waste_removed",
    "carbon_captured",
    "coral_restored",
    "money_donated",
)

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _safe_text(value: str) -> str:
    # PostgreSQL cannot store NUL, and a lone surrogate cannot be encoded at
    # all: both would surface as a 500 deep in the driver, so refuse them here.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


SafeStr = Annotated[str, AfterValidator(_safe_text)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad input; the message names the field or parameter and the rule",
        401: "Missing, unknown or revoked x-api-key",
        403: "Not allowed",
        404: "Not found (also for another account's data)",
        409: "Idempotency-Key reused with a different request",
        413: "Request body too large",
        429: "Rate limit exceeded; see Retry-After",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_day(name: str, value: str | None) -> date | None:
    if value is None or value == "":
        return None
    if not _DATE_RE.match(value):
        raise ValidationFailed(f"{name}: must be a date in YYYY-MM-DD format")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{name}: {value} is not a real calendar date") from None


def parse_filter_by(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable ``filter_by``; a comma-separated list is read the same way."""
    if not values:
        return ()
    keys: list[str] = []
    for raw in values:
        for part in raw.split(","):
            part = part.strip()
            if not part:
                continue
            if part not in RECORD_KEYS:
                raise ValidationFailed(
                    f"filter_by: '{part[:40]}' is not one of {', '.join(RECORD_KEYS)}"
                )
            if part not in keys:
                keys.append(part)
    return tuple(keys)


def email_from_query(value: str | None) -> str | None:
    """The official SDK does not URL-encode query values, so ``a+b@x.com``
    arrives as ``a b@x.com``. Emails hold no spaces: read them back as ``+``."""
    if value is None:
        return None
    return value.replace(" ", "+").strip()
