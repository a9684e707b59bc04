"""Wire shapes of the operator's lifecycle API (/admin/v1)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from openimpact.errors import ValidationFailed
from openimpact.kit import RecordKey, SafeStr, WholeNumber, parse_day
from openimpact.lifecycle.service import DEFAULT_CHUNK, MAX_CHUNK, CompleteOptions, Selection
from openimpact.timeutil import parse_iso_ms

Stage = Literal["initiated", "donation_received", "transferred", "completed"]
Env = Literal["production", "sandbox"]


def _web_url(value: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("must be an http(s) URL")
    return value


WebUrl = Annotated[SafeStr, AfterValidator(_web_url)]


class SelectionIn(BaseModel):
    """Which impacts to act on; criteria combine with AND."""

    model_config = ConfigDict(extra="forbid")

    env: Env = Field(default="production", description="Environment of the impacts")
    user_id: SafeStr | None = Field(default=None, max_length=64, description="One account")
    impact_type: RecordKey | None = Field(default=None, description="One impact type")
    category: SafeStr | None = Field(
        default=None,
        max_length=40,
        description='"food" for food trees; for donations, the cause they fund (e.g. veterans)',
    )
    start_date: SafeStr | None = Field(
        default=None, max_length=10, description="YYYY-MM-DD, initiated on or after (UTC day)"
    )
    end_date: SafeStr | None = Field(
        default=None, max_length=10, description="YYYY-MM-DD, initiated on or before (UTC day)"
    )
    stage: Stage | None = Field(
        default=None, description="Current stage; must be the stage the action moves from"
    )
    project_id: SafeStr | None = Field(
        default=None, max_length=80, description="Assigned project (complete only)"
    )
    tracking_ids: list[Annotated[SafeStr, Field(max_length=120)]] | None = Field(
        default=None,
        max_length=10_000,
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


class BatchIn(BaseModel):
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


class TransferIn(BatchIn):
    project_id: SafeStr | None = Field(
        default=None,
        max_length=80,
        description="Assign this project instead of the assignment rules; it must execute "
        "every selected impact type",
    )


class CompleteIn(BatchIn):
    impact_video: WebUrl | None = Field(
        default=None, max_length=500, description="Video of the work, or of the live session"
    )
    live_session_date: SafeStr | None = Field(
        default=None,
        max_length=40,
        description="ISO-8601 UTC time of the live planting session (projects with live "
        "sessions, i.e. food trees); by default the next Saturday 13:00 UTC",
    )
    notes: SafeStr | None = Field(
        default=None, max_length=2000, description="Completion notes from the partner"
    )

    def options(self) -> CompleteOptions:
        live_ms = None
        if self.live_session_date is not None:
            live_ms = parse_iso_ms(self.live_session_date)
            if live_ms is None:
                raise ValidationFailed(
                    "live_session_date: must be an ISO-8601 UTC timestamp like "
                    "2025-04-16T13:00:00.000Z"
                )
        return CompleteOptions(
            impact_video=self.impact_video, live_session_ms=live_ms, notes=self.notes
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


class ProjectOverridesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    project_overrides: dict[
        Annotated[SafeStr, Field(max_length=80)], Annotated[SafeStr, Field(max_length=80)]
    ] = Field(
        max_length=50,
        description='Replaces all overrides, e.g. {"tree_planted": "mangroves-menabe-madagascar", '
        '"tree_planted:food": "...", "money_donated:veterans": "..."}; {} clears them',
    )


class ProjectOverridesOut(BaseModel):
    user_id: str
    project_overrides: dict[str, str]
