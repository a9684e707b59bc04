"""Wire shapes of /v1/schedules (an extension of v1)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)
from pydantic.json_schema import JsonDict, SkipJsonSchema

from openimpact.impacts.schemas import _NAME_NEEDS_EMAIL, MAX_CENTS, MAX_UNITS, Email, Metadata
from openimpact.kit import DAY, SafeStr, WholeNumber, integral

ImpactType = Literal[
    "tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"
]
Status = Literal["active", "paused"]


def check_amount(impact_type: str, amount: int) -> None:
    limit = MAX_CENTS if impact_type == "money_donated" else MAX_UNITS
    if amount > limit:
        raise ValueError(f"amount: at most {limit:,} for {impact_type}")


def check_category(impact_type: str, category: str | None) -> None:
    if category is None or impact_type == "money_donated":
        return
    if impact_type == "tree_planted":
        if category != "food":
            raise ValueError('category: only "food" for tree_planted')
        return
    raise ValueError(f"category: not used with {impact_type}")


def _when(impact_types: list[str], then: JsonDict) -> JsonDict:
    types: list[JsonValue] = list(impact_types)
    return {
        "if": {"required": ["impact_type"], "properties": {"impact_type": {"enum": types}}},
        "then": {"properties": then},
    }


# The rules of check_amount and check_category, stated in /openapi.json.
_UNITS = ["tree_planted", "waste_removed", "carbon_captured", "coral_restored"]
_SCHEDULE_RULES: JsonDict = {
    "allOf": [
        _NAME_NEEDS_EMAIL,
        _when(_UNITS, {"amount": {"maximum": MAX_UNITS}}),
        _when(["tree_planted"], {"category": {"enum": ["food", None]}}),
        _when(_UNITS[1:], {"category": {"type": "null"}}),
    ]
}


class ScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_SCHEDULE_RULES)

    impact_type: ImpactType = Field(description="The impact to create every month")
    amount: WholeNumber = Field(
        ge=1,
        le=MAX_CENTS,
        description="Units per month (1–10,000,000), or US cents for money_donated "
        "(1–1,000,000,000)",
    )
    day_of_month: WholeNumber = Field(ge=1, le=28, description="Day of the month (UTC), 1–28")
    starts_on: str = Field(
        json_schema_extra=DAY, description="First day a period may fall on, YYYY-MM-DD"
    )
    ends_on: str | None = Field(
        default=None, json_schema_extra=DAY, description="Last day a period may fall on"
    )
    category: SafeStr | None = Field(
        default=None,
        max_length=40,
        description='"food" for tree_planted; for money_donated, one of the account\'s causes',
    )
    customer_email: Email | None = Field(
        default=None, description="Create each impact on behalf of this customer"
    )
    customer_name: SafeStr | None = Field(default=None, max_length=200)
    metadata: Metadata | None = Field(default=None, description="Copied onto every impact")

    @model_validator(mode="after")
    def _rules(self) -> ScheduleCreate:
        if self.customer_name is not None and self.customer_email is None:
            raise ValueError("customer_name: requires customer_email")
        check_amount(self.impact_type, self.amount)
        check_category(self.impact_type, self.category)
        return self


class SchedulePatch(BaseModel):
    """Pause or resume, change the amount or the end date (null: no end)."""

    model_config = ConfigDict(extra="forbid")

    status: Status | SkipJsonSchema[None] = Field(
        default=None, description="paused stops new periods"
    )
    # The bounds inside, the conversion outside: the other way round they
    # would leave /openapi.json as "ge"/"le" instead of minimum/maximum.
    amount: (
        Annotated[Annotated[int, Field(strict=True, ge=1, le=MAX_CENTS)], BeforeValidator(integral)]
        | SkipJsonSchema[None]
    ) = Field(
        default=None,
        description="Per month; at most 10,000,000 unless the schedule donates money",
    )
    ends_on: str | None = Field(default=None, json_schema_extra=DAY)


class ScheduleOut(BaseModel):
    id: str = Field(description="The schedule's id; impacts it made show it on track")
    status: Status
    impact_type: ImpactType
    amount: int
    day_of_month: int
    starts_on: str
    ends_on: str | None = None
    category: str | None = None
    customer_email: str | None = None
    customer_name: str | None = None
    metadata: dict[str, str] | None = None
    next_run_on: str | None = Field(
        default=None, description="The day of the next period, while one is still to come"
    )
    next_period: str | None = Field(default=None, description="YYYY-MM of that period")
    created_on: str
    updated_on: str


class SchedulesPage(BaseModel):
    schedules: list[ScheduleOut]
    cursor: str | None = Field(default=None, description="Present only when another page exists")


class ScheduleDeleted(BaseModel):
    id: str
    deleted: bool = True


class ScheduleRun(BaseModel):
    as_of: str
    created: int = Field(description="Impacts created by this pass")
    refused: int = Field(description="Periods refused (their reason is kept with the period)")
