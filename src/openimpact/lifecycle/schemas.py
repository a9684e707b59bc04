"""Wire shapes of the operator's lifecycle API (/admin/v1)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    WithJsonSchema,
    field_validator,
)
from pydantic.json_schema import SkipJsonSchema

from openimpact.kit import (
    DAY,
    NO_CONTROL_PATTERN,
    RECORD_KEYS,
    RecordKey,
    SafeStr,
    WholeNumber,
    parse_day,
)
from openimpact.lifecycle.service import DEFAULT_CHUNK, MAX_CHUNK, CompleteOptions, Selection
from openimpact.timeutil import datetime_to_ms, parse_iso

Stage = Literal["initiated", "donation_received", "transferred", "completed"]
Env = Literal["production", "sandbox"]


# http(s), a host (ASCII), an optional port, then anything but spaces and
# control characters: what _web_url checks, stated in /openapi.json.
WEB_URL_PATTERN = (
    "^https?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:[0-9]{1,5})?([/?#][^\\u0000-\\u0020\\u007f]*)?$"
)
_WEB_URL = re.compile(WEB_URL_PATTERN)


def _web_url(value: str) -> str:
    if not _WEB_URL.fullmatch(value):
        raise ValueError("must be an http(s) URL")
    return value


WebUrl = Annotated[
    SafeStr, AfterValidator(_web_url), Field(json_schema_extra={"pattern": WEB_URL_PATTERN})
]

# An RFC 3339 date-time in the years 2000 to 2999 (a live session long before
# or after would be a mistake, and years near 1 or 9999 leave what datetime can
# hold once the offset is applied).
LIVE_SESSION_PATTERN = (
    "^2[0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,6})?"
    "(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_LIVE_SESSION = re.compile(LIVE_SESSION_PATTERN)


def _live_session(value: str) -> str:
    if not _LIVE_SESSION.fullmatch(value) or parse_iso(value) is None:
        raise ValueError(
            "must be an ISO-8601 time from the years 2000 to 2999, like 2025-04-16T13:00:00.000Z"
        )
    return value


LiveSession = Annotated[
    str,
    AfterValidator(_live_session),
    Field(json_schema_extra={"format": "date-time", "pattern": LIVE_SESSION_PATTERN}),
]


# A tracking id as track returns it: the user_id, "-", and time_utc as the API
# writes it (YYYY-MM-DDTHH:MM:SS.sssZ). Printable ASCII, so that the largest
# batch the schema allows has a known size (BATCH_BODY_BYTES). One of this shape
# whose time does not exist (2024-02-30...) names no impact: it is reported
# under not_found, like any other that matches none.
TRACKING_ID_PATTERN = (
    "^[!-~]{1,64}-[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$"
)
_TRACKING_ID = re.compile(TRACKING_ID_PATTERN)
MAX_TRACKING_ID = 64 + 1 + 24
MAX_TRACKING_IDS = 10_000


def _tracking_id(value: str) -> str:
    if not _TRACKING_ID.fullmatch(value):
        raise ValueError(
            f"'{value[:80]}' is not a tracking id (user_id-time_utc as track returns it, "
            "e.g. U123-2024-09-16T20:34:04.429Z)"
        )
    return value


TrackingId = Annotated[
    str,
    AfterValidator(_tracking_id),
    Field(json_schema_extra={"pattern": TRACKING_ID_PATTERN, "maxLength": MAX_TRACKING_ID}),
]

# The body limit of the batches (app.BodyLimit): the largest body their schema
# allows must get through, and OPENIMPACT_MAX_BODY_BYTES (64 KiB by default) is
# far too small for it. MAX_TRACKING_IDS of the longest tracking ids (at most 2
# bytes a character in JSON) and every other field at its longest, each
# character a 12-byte escaped surrogate pair, come to about 1.6 MB
# (tests/lifecycle/test_router.py sends it).
BATCH_BODY_BYTES = 2 * 1024 * 1024


# A UTC day; parse_day checks it (to_selection) and names the field.
Day = Annotated[SafeStr, Field(max_length=10, json_schema_extra=DAY)]


def _criterion_or_all(schema: dict[str, Any], model: type[Any]) -> None:
    """The rule of Selection.has_criteria, stated in /openapi.json: at least
    one criterion (a property other than env and all, not null), or all: true."""
    criteria = [name for name in schema.get("properties", {}) if name not in ("env", "all")]
    schema["anyOf"] = [
        *(
            {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
            for name in criteria
        ),
        {"required": ["all"], "properties": {"all": {"const": True}}},
    ]


def _only(stage: Stage) -> WithJsonSchema:
    """The stage an action's selection may name, in /openapi.json: the one it
    moves impacts from (the service refuses any other, saying so)."""
    return WithJsonSchema({"anyOf": [{"type": "string", "enum": [stage]}, {"type": "null"}]})


class SelectionIn(BaseModel):
    """Which impacts to act on; criteria combine with AND. At least one
    criterion is needed, or `all: true`."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_criterion_or_all)

    env: Env = Field(default="production", description="Environment of the impacts")
    user_id: SafeStr | None = Field(
        default=None, min_length=1, max_length=64, description="One account"
    )
    impact_type: RecordKey | None = Field(default=None, description="One impact type")
    category: SafeStr | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description='"food" for food trees; for donations, the cause they fund (e.g. veterans)',
    )
    start_date: Day | None = Field(
        default=None, description="YYYY-MM-DD, initiated on or after (UTC day)"
    )
    end_date: Day | None = Field(
        default=None,
        description="YYYY-MM-DD, initiated on or before (UTC day); not before start_date",
    )
    stage: Stage | None = Field(
        default=None, description="Current stage; must be the stage the action moves from"
    )
    project_id: SafeStr | None = Field(
        default=None, min_length=1, max_length=80, description="Assigned project (complete only)"
    )
    tracking_ids: list[TrackingId] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_TRACKING_IDS,
        description="Exact impacts, as user_id-time_utc (what track returns as tracking_id)",
    )
    all: StrictBool = Field(
        default=False,
        description="Select every impact of the environment; needed when no criterion is given",
    )

    def to_selection(self) -> Selection:
        start = parse_day("selection.start_date", self.start_date)
        end = parse_day("selection.end_date", self.end_date)
        return Selection(
            env=self.env,
            user_id=self.user_id,
            impact_type=self.impact_type,
            category=self.category,
            start=start,
            end=end,
            stage=self.stage,
            project_id=self.project_id,
            tracking_ids=tuple(self.tracking_ids or ()),
            all=self.all,
        )


class _NoProjectSelection(SelectionIn):
    # Only complete selects by project: impacts get theirs when transferred.
    # Not in the schema; refused, even as null, with a message that says why.
    project_id: SkipJsonSchema[SafeStr | None] = None

    @field_validator("project_id", mode="before")
    @classmethod
    def _no_project(cls, value: Any) -> Any:
        raise ValueError(
            "impacts get their project when transferred; only complete can select by project"
        )


class ReceiveSelection(_NoProjectSelection):
    stage: Annotated[Stage | None, _only("initiated")] = Field(
        default=None, description="Current stage: initiated, the stage receive moves from"
    )


class TransferSelection(_NoProjectSelection):
    stage: Annotated[Stage | None, _only("donation_received")] = Field(
        default=None,
        description="Current stage: donation_received, the stage transfer moves from",
    )


class CompleteSelection(SelectionIn):
    stage: Annotated[Stage | None, _only("transferred")] = Field(
        default=None, description="Current stage: transferred, the stage complete moves from"
    )


class BatchBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    selection: SelectionIn
    dry_run: StrictBool = Field(
        default=False, description="Only count what would change; change nothing"
    )
    chunk_size: WholeNumber = Field(
        default=DEFAULT_CHUNK,
        ge=1,
        le=MAX_CHUNK,
        description="Impacts per transaction; each chunk commits on its own",
    )


class BatchIn(BatchBase):
    """A receive batch."""

    selection: ReceiveSelection


class TransferIn(BatchBase):
    selection: TransferSelection
    project_id: SafeStr | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description="Assign this project instead of the assignment rules; it must execute "
        "every selected impact type",
    )


class CompleteIn(BatchBase):
    selection: CompleteSelection
    impact_video: WebUrl | None = Field(
        default=None, max_length=500, description="Video of the work, or of the live session"
    )
    live_session_date: LiveSession | None = Field(
        default=None,
        max_length=40,
        description="RFC 3339 time of the live planting session (projects with live "
        "sessions, i.e. food trees), in the years 2000 to 2999; by default the next "
        "Saturday 13:00 UTC",
    )
    notes: SafeStr | None = Field(
        default=None, max_length=2000, description="Completion notes from the partner"
    )

    def options(self) -> CompleteOptions:
        live = parse_iso(self.live_session_date) if self.live_session_date is not None else None
        return CompleteOptions(
            impact_video=self.impact_video,
            # Whole milliseconds, as every time is stored.
            live_session_ms=datetime_to_ms(live) if live is not None else None,
            notes=self.notes,
        )


class ChunkOut(BaseModel):
    chunk: int
    changed: int


class BatchReport(BaseModel):
    action: Literal["receive", "transfer", "complete"]
    from_stage: Stage
    to_stage: Stage
    env: Env
    dry_run: bool
    matched: int = Field(description="Impacts the selection matched, in any stage")
    would_change: int | None = Field(default=None, description="Dry run: impacts that would move")
    changed: int | None = Field(default=None, description="Impacts this batch moved")
    by_type: dict[str, int] = Field(description="Moved (or would move) per impact type")
    by_project: dict[str, int] | None = Field(default=None, description="Transfer: per project")
    skipped: dict[str, int] = Field(
        description="Matched but not moved, by current stage, or 'cancelled'"
    )
    batch_id: str | None = Field(default=None, description="Shared by every transition it made")
    chunks: list[ChunkOut] | None = Field(default=None, description="What each transaction moved")
    not_found: list[str] | None = Field(
        default=None, description="Tracking ids that matched no impact (first 100)"
    )
    not_found_count: int | None = None
    elapsed_ms: int


class OldestOut(BaseModel):
    model_config = ConfigDict(extra="allow")  # plus "<record key>": amount

    tracking_id: str
    since: str = Field(description="When it entered the stage")
    waiting_seconds: int


class StageCountOut(BaseModel):
    stage: Stage
    label: str
    total: int
    by_type: dict[str, int]
    oldest: OldestOut | None = Field(
        default=None, description="The impact waiting longest in this stage (open stages)"
    )


class CancelledCountOut(BaseModel):
    total: int
    by_type: dict[str, int]


class StatusOut(BaseModel):
    env: Env
    stages: list[StageCountOut]
    cancelled: CancelledCountOut = Field(description="Cancelled impacts (never advance)")


class TransitionOut(BaseModel):
    at: str = Field(description="When the impact reached to_stage")
    actor: str = Field(description="admin-api, cli:<user>, sandbox, demo")
    from_stage: Stage
    to_stage: Stage
    batch_id: str


class HistoryOut(BaseModel):
    tracking_id: str
    env: Env
    stage: Stage
    transitions: list[TransitionOut]
    cancelled_on: str | None = None
    completion_notes: str | None = None


# An override's key: an impact type, tree_planted:food, or money_donated:<cause>.
# Which causes exist is the catalogue's business: set_overrides checks that.
_SAFE_CHAR = NO_CONTROL_PATTERN.removeprefix("^").removesuffix("*$")
OVERRIDE_KEY_PATTERN = (
    "^(" + "|".join(RECORD_KEYS) + f"|tree_planted:food|money_donated:{_SAFE_CHAR}{{1,40}})$"
)
_OVERRIDE_KEY = re.compile(OVERRIDE_KEY_PATTERN)
MAX_OVERRIDES = 50


def _override_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not _OVERRIDE_KEY.fullmatch(key):
            raise ValueError(
                f"unknown key '{key[:60]}'; use an impact type (tree_planted, ...), "
                "tree_planted:food or money_donated:<cause>"
            )
    return value


ProjectOverrides = Annotated[
    dict[SafeStr, Annotated[SafeStr, Field(max_length=80)]],
    AfterValidator(_override_keys),
    Field(max_length=MAX_OVERRIDES),
    # The rules above, stated in /openapi.json (Pydantic would write the keys'
    # pattern as patternProperties, which leaves every other key unconstrained).
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_OVERRIDES,
            "propertyNames": {"pattern": OVERRIDE_KEY_PATTERN},
            "additionalProperties": {
                "type": "string",
                "maxLength": 80,
                "pattern": NO_CONTROL_PATTERN,
            },
        }
    ),
]


class ProjectOverridesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_overrides: ProjectOverrides = Field(
        description='Replaces all overrides, e.g. {"tree_planted": "mangroves-menabe-madagascar", '
        '"tree_planted:food": "...", "money_donated:veterans": "..."}; {} clears them',
    )


class ProjectOverridesOut(BaseModel):
    user_id: str
    project_overrides: dict[str, str]
