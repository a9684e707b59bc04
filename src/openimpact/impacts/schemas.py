"""Wire shapes of the impact endpoints (1ClickImpact API v1)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonDict

from openimpact.kit import INSTANT, NO_CONTROL_PATTERN, SafeStr, WholeNumber

_EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
RESERVED_METADATA_KEYS = frozenset({"gift", "widgetID"})
MAX_UNITS = 10_000_000
MAX_CENTS = 1_000_000_000


def _email(value: str) -> str:
    value = value.strip()
    if len(value) > 254 or not _EMAIL_RE.match(value):
        raise ValueError("must be an email address like jane@example.com")
    return value


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > 20:
        raise ValueError("at most 20 key-value pairs")
    for key, item in value.items():
        if not 1 <= len(key) <= 40:
            raise ValueError(f"key '{key[:40]}' must be 1 to 40 characters")
        if key in RESERVED_METADATA_KEYS:
            raise ValueError(f"key '{key}' is reserved")
        if len(item) > 500:
            raise ValueError(f"value of '{key}' must be at most 500 characters")
    return value


Email = Annotated[
    SafeStr, AfterValidator(_email), Field(json_schema_extra={"format": "email", "maxLength": 254})
]
Metadata = Annotated[
    dict[SafeStr, SafeStr],
    AfterValidator(_metadata),
    # The rules of _metadata, stated in /openapi.json.
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": 20,
            "propertyNames": {
                "minLength": 1,
                "maxLength": 40,
                "pattern": NO_CONTROL_PATTERN,
                "not": {"enum": sorted(RESERVED_METADATA_KEYS)},
            },
            "additionalProperties": {
                "type": "string",
                "maxLength": 500,
                "pattern": NO_CONTROL_PATTERN,
            },
        }
    ),
]


# JSON Schema for the rule of _name_needs_email, so that /openapi.json states it.
_NAME_NEEDS_EMAIL: JsonDict = {
    "if": {"required": ["customer_name"], "properties": {"customer_name": {"type": "string"}}},
    "then": {"required": ["customer_email"], "properties": {"customer_email": {"type": "string"}}},
}


class _ImpactRequestBase(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_NAME_NEEDS_EMAIL)

    customer_email: Email | None = Field(
        default=None,
        description="Create the impact on behalf of this customer (auto-onboards them).",
        examples=["jane@example.com"],
    )
    customer_name: SafeStr | None = Field(
        default=None,
        max_length=200,
        description="Display name of the customer; requires customer_email.",
    )
    notify: StrictBool | None = Field(
        default=None,
        description="Email the customer about this impact (default true; always off in sandbox).",
    )
    metadata: Metadata | None = Field(
        default=None,
        description="Up to 20 string pairs (key ≤ 40, value ≤ 500 chars); 'gift' and 'widgetID' "
        "are reserved.",
    )

    @model_validator(mode="after")
    def _name_needs_email(self) -> _ImpactRequestBase:
        if self.customer_name is not None and self.customer_email is None:
            raise ValueError("customer_name: requires customer_email")
        return self


class PlantTreeRequest(_ImpactRequestBase):
    amount: WholeNumber = Field(ge=1, le=MAX_UNITS, description="Trees to plant (1–10,000,000).")
    category: Literal["food"] | None = Field(
        default=None,
        description='Only "food": food-bearing trees, with live planting sessions.',
    )


class CleanOceanRequest(_ImpactRequestBase):
    amount: WholeNumber = Field(
        ge=1, le=MAX_UNITS, description="Pounds of ocean plastic to remove (1–10,000,000)."
    )


class CaptureCarbonRequest(_ImpactRequestBase):
    amount: WholeNumber = Field(
        ge=1, le=MAX_UNITS, description="Pounds of CO₂ to capture (1–10,000,000)."
    )


class RestoreCoralRequest(_ImpactRequestBase):
    amount: WholeNumber = Field(
        ge=1, le=MAX_UNITS, description="Coral fragments to restore (1–10,000,000)."
    )


class DonateMoneyRequest(_ImpactRequestBase):
    amount: WholeNumber = Field(
        ge=1, le=MAX_CENTS, description="US cents to donate (1–1,000,000,000); 500 = $5.00."
    )
    category: SafeStr | None = Field(
        default=None,
        max_length=40,
        description="Cause to fund, one of the account's allowed causes; the account's default "
        "cause when omitted.",
    )


class CustomerOut(BaseModel):
    customer_id: str = Field(description="Stable id of the customer")
    customer_email: str
    customer_name: str | None = None


class _ImpactResponseBase(BaseModel):
    user_id: str = Field(description="The account's user id")
    time_utc: str = Field(
        description="When the impact was recorded: ISO-8601 UTC with milliseconds. Unique per "
        "account and environment; with user_id it identifies the impact."
    )
    customer: CustomerOut | None = Field(
        default=None, description="Present only for an impact on behalf of a customer"
    )


class PlantTreeResponse(_ImpactResponseBase):
    tree_planted: int
    category: str | None = Field(default=None, description="Present only when given")


class CleanOceanResponse(_ImpactResponseBase):
    waste_removed: int


class CaptureCarbonResponse(_ImpactResponseBase):
    carbon_captured: int


class RestoreCoralResponse(_ImpactResponseBase):
    coral_restored: int


class DonateMoneyResponse(_ImpactResponseBase):
    money_donated: int
    category: str | None = Field(default=None, description="Present only when given")


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: SafeStr = Field(max_length=64, description="user_id of the impact")
    time_utc: SafeStr = Field(
        max_length=64, description="time_utc of the impact", json_schema_extra=INSTANT
    )
    reason: SafeStr | None = Field(default=None, max_length=200, description="Why (≤ 200 chars)")


class ImpactAmounts(BaseModel):
    """An impact's amount under its record key; the other keys are absent."""

    tree_planted: int | None = Field(default=None, description="Trees")
    waste_removed: int | None = Field(default=None, description="Pounds of ocean plastic")
    carbon_captured: int | None = Field(default=None, description="Pounds of CO₂")
    coral_restored: int | None = Field(default=None, description="Coral fragments")
    money_donated: int | None = Field(default=None, description="US cents")


class CancelResponse(ImpactAmounts):
    user_id: str
    time_utc: str
    cancelled_on: str = Field(description="When the impact was cancelled (first call)")
    message: str = Field(description='"impact cancelled" or "impact was already cancelled"')
    reason: str | None = None
    category: str | None = None


class Record(ImpactAmounts):
    user_id: str
    time_utc: str = Field(description="ISO-8601 UTC with milliseconds")
    category: str | None = None
    metadata: dict[str, str] | None = None
    cancelled_on: str | None = Field(default=None, description="Present once cancelled")


class CustomerRecord(Record):
    customer: CustomerOut


class RecordsPage(BaseModel):
    user_records: list[Record]
    cursor: str | None = Field(default=None, description="Present only when another page exists")


class CustomerRecordsPage(BaseModel):
    customer_records: list[CustomerRecord]
    cursor: str | None = Field(default=None, description="Present only when another page exists")


class TrackResponse(ImpactAmounts):
    """Lifecycle fields appear once their stage is reached and are absent before."""

    tracking_id: str = Field(description="user_id + '-' + time_utc")
    impact_initiated: str
    category: str | None = None
    donation_available: str | None = None
    donation_sent: str | None = None
    assigned_agent: str | None = None
    project_location: str | None = None
    location_map: str | None = Field(default=None, description="Google Maps embed URL")
    impact_completed: str | None = None
    project_id: str | None = None
    donation_category: str | None = None
    certificate: str | None = Field(default=None, description="Certificate URL (production)")
    impact_video: str | None = None
    live_session_date: str | None = None
    is_test_transaction: bool | None = None
    is_bonus_impact: bool | None = Field(
        default=None, description="A bonus impact from the account's plan"
    )
    schedule_id: str | None = Field(
        default=None, description="The monthly schedule that made it (extension of v1)"
    )
    period: str | None = Field(
        default=None, description="The schedule's period it belongs to, YYYY-MM (extension of v1)"
    )
    cancelled_on: str | None = None
    cancellation_reason: str | None = None
