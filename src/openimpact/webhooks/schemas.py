"""Wire shapes of /v1/webhook_endpoints and /v1/events (extensions of v1)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool
from pydantic.json_schema import SkipJsonSchema

from openimpact.kit import INSTANT, SafeStr
from openimpact.webhooks.guard import MAX_URL_LENGTH

EventType = Literal[
    "impact.initiated",
    "impact.donation_received",
    "impact.transferred",
    "impact.completed",
    "impact.cancelled",
    "schedule.impact_created",
    "budget.threshold_reached",
    "budget.exceeded",
]
_TYPES_DOC = "The event types to send; leave out (or null) for every type"


# http(s), a host, an optional port, then no spaces: what the guard checks
# first (guard.check_syntax); where the host leads is checked after.
URL_PATTERN = r"^https?://(\[[0-9A-Fa-f:.]+\]|[^\s/?#@:\[\]]+)(:[0-9]{1,5})?([/?#][^\s]*)?$"


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="https:// (or http://) URL that receives the events; it must reach a "
        "public address",
    )
    description: SafeStr | None = Field(default=None, max_length=500)
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, max_length=20, description=_TYPES_DOC
    )


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Left out: unchanged; null is not a URL (and not in the schema).
    url: (
        Annotated[str, Field(min_length=1, max_length=MAX_URL_LENGTH, pattern=URL_PATTERN)]
        | SkipJsonSchema[None]
    ) = None
    description: SafeStr | None = Field(default=None, max_length=500)
    event_types: list[EventType] | None = Field(
        default=None, min_length=1, max_length=20, description=_TYPES_DOC
    )
    enabled: StrictBool | SkipJsonSchema[None] = Field(
        default=None, description="false stops deliveries; true resumes them"
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str] | None = Field(description="null: every event type")
    enabled: bool
    disabled_reason: str | None = None
    created_on: str
    updated_on: str


class EndpointCreated(EndpointOut):
    secret: str = Field(description="whsec_…: verifies the webhook-signature header")


class EndpointsPage(BaseModel):
    webhook_endpoints: list[EndpointOut]
    cursor: str | None = None


class EndpointDeleted(BaseModel):
    id: str
    deleted: bool


class SecretOut(BaseModel):
    secret: str
    previous_secret_expires_on: str | None = Field(
        default=None, description="Until then, deliveries are signed with the old secret too"
    )


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    attempted_on: str
    trigger: Literal["first", "retry", "resend", "recover", "test"]
    succeeded: bool
    status_code: int | None = None
    latency_ms: int
    response: str | None = Field(default=None, description="The first bytes of the answer")
    error: str | None = None


class DeliveriesPage(BaseModel):
    deliveries: list[DeliveryOut]
    cursor: str | None = None


class Queued(BaseModel):
    endpoint_id: str
    event_id: str
    status: Literal["queued"]


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: str = Field(
        json_schema_extra=INSTANT,
        description="Resend every event since then (at most 30 days ago) that this endpoint "
        "has not received",
    )


class RecoverOut(BaseModel):
    endpoint_id: str
    queued: int


class TestOut(BaseModel):
    endpoint_id: str
    event_id: str
    delivery: DeliveryOut


class EventOut(BaseModel):
    id: str
    type: str
    timestamp: str
    data: dict[str, Any]


class EventsPage(BaseModel):
    events: list[EventOut]
    cursor: str | None = None
