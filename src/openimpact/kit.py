"""Small shared pieces: safe strings, impact kinds, random ids, and OpenAPI error docs."""

from __future__ import annotations

import math
import re
import secrets
import time
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, StrictInt

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


# The same rule as _CONTROL, as a JSON Schema (ECMA-262) pattern for /openapi.json.
NO_CONTROL_PATTERN = "^[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f]*$"

SafeStr = Annotated[
    str, AfterValidator(_safe_text), Field(json_schema_extra={"pattern": NO_CONTROL_PATTERN})
]


def integral(value: Any) -> Any:
    # JSON Schema counts 5.0 as the integer 5 (a number with a zero fractional
    # part), so the API does too; 5.5, "5" and true stay refused (StrictInt).
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


# A JSON integer, as JSON Schema defines one: 5 and 5.0 alike.
WholeNumber = Annotated[StrictInt, BeforeValidator(integral)]


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Bad input; the message names the field or parameter and the rule",
        401: "Missing, unknown or revoked x-api-key",
        403: "Not allowed",
        404: "Not found (also for another account's data)",
        402: "The account's monthly budget would be exceeded; nothing was created",
        409: "Idempotency-Key reused with a different request, or a state that does not "
        "allow the request (e.g. a disabled webhook endpoint)",
        413: "Request body too large",
        415: "Request body is not JSON (Content-Type must be application/json)",
        429: "Rate limit exceeded; see Retry-After",
        503: "The database failed the write; nothing was recorded. Retry (with the same "
        "Idempotency-Key); see Retry-After",
    }
    return {s: {"model": ErrorBody, "description": descriptions[s]} for s in statuses}


def json_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """error_responses for a route whose own answer is not JSON (a page, an
    image, a PDF): its errors still are, and the schema says so (FastAPI would
    file them under the route's media type)."""
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        status: {
            "description": entry["description"],
            "content": {"application/json": {"schema": ref}},
        }
        for status, entry in error_responses(*statuses).items()
    }


# The OpenAPI formats (RFC 3339 full-date and date-time) of values that the
# server parses itself, so that the schema says what is accepted while the
# error message still names the parameter in our own words.
DAY: dict[str, Any] = {"format": "date"}
INSTANT: dict[str, Any] = {"format": "date-time"}

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_day(name: str, value: str | None) -> date | None:
    # An empty value is not a date (the schema says format: date); clients
    # that mean "no bound" leave the parameter out, as the official SDK does.
    if value is None:
        return None
    if not _DATE_RE.match(value):
        raise ValidationFailed(f"{name}: must be a date in YYYY-MM-DD format")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValidationFailed(f"{name}: {value} is not a real calendar date") from None


# One ``filter_by`` value: record keys separated by commas (spaces around them
# allowed), or nothing. /openapi.json states it and the parser holds to it.
_ANY_KEY = "(" + "|".join(RECORD_KEYS) + ")"
FILTER_BY_PATTERN = f"^ *({_ANY_KEY} *(, *{_ANY_KEY} *)*)?$"
_FILTER_BY = re.compile(FILTER_BY_PATTERN)


def parse_filter_by(values: list[str] | None) -> tuple[str, ...]:
    """Repeatable ``filter_by``; a comma-separated list is read the same way."""
    if not values:
        return ()
    keys: list[str] = []
    for raw in values:
        parts = [part.strip(" ") for part in raw.split(",")]
        if not _FILTER_BY.fullmatch(raw):
            bad = next((part for part in parts if part not in RECORD_KEYS), raw)
            raise ValidationFailed(
                f"filter_by: '{bad[:40]}' is not one of {', '.join(RECORD_KEYS)}"
            )
        for part in parts:
            if part and part not in keys:
                keys.append(part)
    return tuple(keys)


def email_from_query(value: str | None) -> str | None:
    """The official SDK does not URL-encode query values, so ``a+b@x.com``
    arrives as ``a b@x.com``. Emails hold no spaces: read them back as ``+``."""
    if value is None:
        return None
    return value.replace(" ", "+").strip()


# Base32 (RFC 4648's alphabet, lower case) ten bits at a time: the same text
# as base64.b32encode of the same random bytes, without its per-character
# Python loop (several ids are made per impact on the write path).
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def random_b32(bits: int = 120) -> str:
    """``bits`` (a multiple of 10) random bits from ``secrets``, in lower-case
    base32: 24 characters for the default 120."""
    assert bits % 10 == 0
    return _b32(secrets.randbits(bits), bits)


def _b32(n: int, bits: int) -> str:
    return "".join(_B32_PAIRS[(n >> shift) & 1023] for shift in range(bits - 10, -1, -10))


CLOCK_BITS = 40  # milliseconds, modulo about 34.8 years


def clock_ordered_b32(random_bits: int = 80) -> str:
    """The wall clock's milliseconds (modulo 2**40), then ``random_bits`` (a
    multiple of 10) random bits, in lower-case base32: 24 characters for the
    default 80. Ids made later sort after earlier ones, so a unique index of
    them grows at its end, like a sequence's, instead of taking a write to a
    random page of the index for each new id (measured on SQLite: a batch of
    31 impacts wrote 30 to 40 % less to the WAL with the certificate and
    customer ids made so)."""
    clock = (time.time_ns() // 1_000_000) & ((1 << CLOCK_BITS) - 1)
    return _b32(clock, CLOCK_BITS) + random_b32(random_bits)


def clock_ordered_hex(random_bytes: int = 8) -> str:
    """As :func:`clock_ordered_b32`, in hexadecimal: 10 digits of the clock,
    then ``random_bytes`` random bytes (26 digits for the default 8)."""
    clock = (time.time_ns() // 1_000_000) & ((1 << CLOCK_BITS) - 1)
    return f"{clock:010x}" + secrets.token_hex(random_bytes)
