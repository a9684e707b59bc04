"""The impact endpoints: the five impact POSTs, cancel, records and track."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from openimpact.auth import AccountDep, Caller, current_caller, key_cache
from openimpact.errors import KeyError_, ValidationFailed
from openimpact.impacts import schemas, service
from openimpact.impacts.batch import NewImpact, Outcome, Pending
from openimpact.impacts.queries import RecordQuery, list_records
from openimpact.impacts.tracking import track_view
from openimpact.kit import (
    DAY,
    FILTER_BY_PATTERN,
    INSTANT,
    email_from_query,
    error_responses,
    parse_day,
    parse_filter_by,
)
from openimpact.lifecycle import sandbox
from openimpact.outbox.service import Events
from openimpact.responses import FastJSONResponse
from openimpact.timeutil import now_ms

router = APIRouter(prefix="/v1", dependencies=[Depends(current_caller)])

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        # Printable ASCII, as the IETF draft's sf-string (a UUID is the usual
        # choice): other octets are a 400, not a key stored as Latin-1 guesswork.
        pattern="^[ -~]+$",
        description="1–255 printable ASCII characters. A retry with the same key and body "
        "returns the stored answer (header Idempotent-Replayed: true) and creates nothing; the "
        "same key with a different body is a 409. Kept at least 24 hours.",
    ),
]
# OpenAPI links (https://spec.openapis.org/oas/v3.1.0#link-object): an impact's
# user_id and time_utc name it in track and cancel_impact. Client generators and
# the stateful fuzzer (tests/reliability) follow them.
_IMPACT_LINKS = {
    "TrackImpact": {
        "operationId": "track_v1_track_get",
        "parameters": {
            "user_id": "$response.body#/user_id",
            "time_utc": "$response.body#/time_utc",
        },
    },
    "CancelImpact": {
        "operationId": "cancel_impact_v1_cancel_impact_post",
        "requestBody": {
            "user_id": "$response.body#/user_id",
            "time_utc": "$response.body#/time_utc",
        },
    },
}
_IMPACT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The impact as recorded", "links": _IMPACT_LINKS},
    **error_responses(400, 401, 402, 409, 413, 415, 429, 503),
}
_GET_ERRORS = error_responses(400, 401, 429)


async def run_idempotent(
    request: Request, caller: Caller, key: str | None, body: BaseModel, work: Any
) -> JSONResponse:
    """Run ``work(session)`` once per Idempotency-Key, replaying stored answers."""
    db = request.app.state.db
    req_hash = service.request_hash(
        request.url.path, body.model_dump(mode="json", exclude_unset=True)
    )

    def run(session: Any) -> Outcome:
        if key is not None:
            stored = service.find_replay(session, caller, key, req_hash)
            if stored is not None:
                return stored
        outcome: Outcome = work(session)
        if key is not None:
            service.remember(session, caller, key, req_hash, outcome)
        return outcome

    try:
        outcome = await db.run(run, write=True)
    except service.IdempotencyRace:
        outcome = await db.run(run, write=True)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return FastJSONResponse(outcome.body, status_code=outcome.status, headers=headers)


# The five impact POSTs: path (under /v1) → impact type and body model. The
# fast path (impacts/fastpath.py) serves the same paths from this table.
IMPACTS: dict[str, tuple[str, type[BaseModel]]] = {
    "/plant_tree": ("tree_planted", schemas.PlantTreeRequest),
    "/clean_ocean": ("waste_removed", schemas.CleanOceanRequest),
    "/capture_carbon": ("carbon_captured", schemas.CaptureCarbonRequest),
    "/restore_coral": ("coral_restored", schemas.RestoreCoralRequest),
    "/donate_money": ("money_donated", schemas.DonateMoneyRequest),
}


def _new(impact_type: str, body: Any) -> NewImpact:
    return NewImpact(
        impact_type=impact_type,
        amount=body.amount,
        category=getattr(body, "category", None),
        customer_email=body.customer_email,
        customer_name=body.customer_name,
        notify=body.notify,
        metadata=body.metadata,
    )


async def create_impact(
    request: Request, caller: Caller, key: str | None, impact_type: str, body: Any
) -> JSONResponse:
    """Hand the impact to the group-commit writer (impacts/writer.py)."""
    req_hash = (
        # scope["path"] is request.url.path for these literal paths, without
        # building the whole URL.
        service.request_hash(
            request.scope["path"], body.model_dump(mode="json", exclude_unset=True)
        )
        if key is not None
        else None
    )
    pending = Pending(
        caller,
        _new(impact_type, body),
        key,
        req_hash,
        confirm_key=True,
        base_url=public_base_url(request),
    )
    try:
        outcome = await request.app.state.writer.submit(pending)
    except KeyError_:
        key_cache(request).discard(caller.key_hash)
        raise
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    return FastJSONResponse(outcome.body, status_code=outcome.status, headers=headers)


@router.post("/plant_tree", response_model=schemas.PlantTreeResponse, responses=_IMPACT_RESPONSES)
async def plant_tree(
    request: Request, caller: AccountDep, body: schemas.PlantTreeRequest, key: IdempotencyKey = None
) -> JSONResponse:
    """Plant trees, for the organization or on behalf of a customer. One unit is one tree;
    `category: "food"` plants food-bearing trees."""
    return await create_impact(request, caller, key, "tree_planted", body)


@router.post("/clean_ocean", response_model=schemas.CleanOceanResponse, responses=_IMPACT_RESPONSES)
async def clean_ocean(
    request: Request,
    caller: AccountDep,
    body: schemas.CleanOceanRequest,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Remove ocean plastic waste, in pounds."""
    return await create_impact(request, caller, key, "waste_removed", body)


@router.post(
    "/capture_carbon", response_model=schemas.CaptureCarbonResponse, responses=_IMPACT_RESPONSES
)
async def capture_carbon(
    request: Request,
    caller: AccountDep,
    body: schemas.CaptureCarbonRequest,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Capture CO₂, in pounds."""
    return await create_impact(request, caller, key, "carbon_captured", body)


@router.post(
    "/restore_coral", response_model=schemas.RestoreCoralResponse, responses=_IMPACT_RESPONSES
)
async def restore_coral(
    request: Request,
    caller: AccountDep,
    body: schemas.RestoreCoralRequest,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Restore coral reefs, in coral fragments."""
    return await create_impact(request, caller, key, "coral_restored", body)


@router.post(
    "/donate_money", response_model=schemas.DonateMoneyResponse, responses=_IMPACT_RESPONSES
)
async def donate_money(
    request: Request,
    caller: AccountDep,
    body: schemas.DonateMoneyRequest,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Donate money, in US cents, to one of the account's causes (its default cause when
    `category` is omitted)."""
    return await create_impact(request, caller, key, "money_donated", body)


@router.post(
    "/cancel_impact",
    response_model=schemas.CancelResponse,
    responses=error_responses(400, 401, 404, 409, 413, 415, 429),
)
async def cancel_impact(
    request: Request, caller: AccountDep, body: schemas.CancelRequest, key: IdempotencyKey = None
) -> JSONResponse:
    """Cancel and reverse an impact (refund flow). Idempotent: a second call answers
    "impact was already cancelled" and reverses nothing. Impacts already transferred to
    the partner or completed can no longer be cancelled (400); sandbox impacts get
    there on their compressed schedule."""
    return await run_idempotent(
        request,
        caller,
        key,
        body,
        lambda s: service.cancel_impact(
            s,
            caller,
            body.user_id,
            body.time_utc,
            body.reason,
            stage_seconds=request.app.state.settings.sandbox_stage_seconds,
            events=events_of(request),
        ),
    )


def _record_query(
    customers: bool,
    filter_by: list[str] | None,
    start_date: str | None,
    end_date: str | None,
    limit: int,
    cursor: str | None,
    sort_order: str,
    customer_email: str | None = None,
) -> RecordQuery:
    start = parse_day("start_date", start_date)
    end = parse_day("end_date", end_date)
    if start and end and start > end:
        raise ValidationFailed("start_date: must not be after end_date")
    return RecordQuery(
        customers=customers,
        filter_by=parse_filter_by(filter_by),
        start=start,
        end=end,
        limit=limit,
        descending=sort_order == "desc",
        cursor=cursor or None,
        customer_email=customer_email,
    )


FilterBy = Annotated[
    list[Annotated[str, Field(json_schema_extra={"pattern": FILTER_BY_PATTERN})]] | None,
    Query(
        description="Repeatable: tree_planted, waste_removed, carbon_captured, coral_restored, "
        "money_donated",
        max_length=10,
    ),
]
StartDate = Annotated[
    str | None,
    Query(description="YYYY-MM-DD, inclusive (UTC day)", max_length=10, json_schema_extra=DAY),
]
EndDate = Annotated[
    str | None,
    Query(description="YYYY-MM-DD, inclusive (UTC day)", max_length=10, json_schema_extra=DAY),
]
Limit = Annotated[int, Query(ge=0, le=1000, description="Records per page, 0–1000")]
Cursor = Annotated[
    str | None, Query(description="From the previous page's response", max_length=500)
]
SortOrder = Annotated[str, Query(pattern="^(asc|desc)$", description="asc (default) or desc")]


def _page_response(key: str, records: list[dict[str, Any]], cursor: str | None) -> JSONResponse:
    body: dict[str, Any] = {key: records}
    if cursor is not None:
        body["cursor"] = cursor
    return FastJSONResponse(body)


@router.get("/records", response_model=schemas.RecordsPage, responses=_GET_ERRORS)
async def records(
    request: Request,
    caller: AccountDep,
    filter_by: FilterBy = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    limit: Limit = 10,
    cursor: Cursor = None,
    sort_order: SortOrder = "asc",
) -> JSONResponse:
    """The organization's own impacts (not those on behalf of customers), by `time_utc`."""
    query = _record_query(False, filter_by, start_date, end_date, limit, cursor, sort_order)
    found, next_cursor = await request.app.state.db.run(
        list_records, caller, query, request.app.state.cursor_codec
    )
    return _page_response("user_records", found, next_cursor)


@router.get("/customer_records", response_model=schemas.CustomerRecordsPage, responses=_GET_ERRORS)
async def customer_records(
    request: Request,
    caller: AccountDep,
    customer_email: Annotated[str | None, Query(max_length=254)] = None,
    filter_by: FilterBy = None,
    start_date: StartDate = None,
    end_date: EndDate = None,
    limit: Limit = 10,
    cursor: Cursor = None,
    sort_order: SortOrder = "asc",
) -> JSONResponse:
    """Impacts made on behalf of customers, each with its nested `customer`; optionally for
    one customer."""
    query = _record_query(
        True,
        filter_by,
        start_date,
        end_date,
        limit,
        cursor,
        sort_order,
        email_from_query(customer_email) or None,
    )
    found, next_cursor = await request.app.state.db.run(
        list_records, caller, query, request.app.state.cursor_codec
    )
    return _page_response("customer_records", found, next_cursor)


def public_base_url(request: Request) -> str:
    """The configured public URL, or the base URL the request came to."""
    configured = request.app.state.settings.public_url
    if configured:
        return configured
    scope = request.scope
    host = next((value for name, value in scope["headers"] if name == b"host"), None)
    server = scope.get("server")
    return _base_url(
        scope.get("scheme", "http"),
        host,
        tuple(server) if server is not None else None,
        scope.get("app_root_path", scope.get("root_path", "")),
    )


@functools.lru_cache(maxsize=64)
def _base_url(
    scheme: str, host: bytes | None, server: tuple[str, int] | None, root_path: str
) -> str:
    # Request.base_url, built once per host a server is reached by (building
    # a URL took a few percent of an impact POST).
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "root_path": root_path,
        "path": "",
        "query_string": b"",
        "headers": [(b"host", host)] if host is not None else [],
    }
    return str(Request(scope).base_url)


def events_of(request: Request) -> Events:
    """How a change made by this request records its events."""
    return Events.of_server(request.app.state.settings, public_base_url(request))


@router.get(
    "/track", response_model=schemas.TrackResponse, responses=error_responses(400, 401, 404, 429)
)
async def track(
    request: Request,
    caller: AccountDep,
    user_id: Annotated[str, Query(max_length=64)],
    time_utc: Annotated[str, Query(max_length=64, json_schema_extra=INSTANT)],
) -> JSONResponse:
    """Lifecycle of one impact: fields appear as its stages are reached."""
    base = public_base_url(request)
    stage_seconds = request.app.state.settings.sandbox_stage_seconds

    def view(session: Any, catch_up: bool) -> dict[str, Any] | None:
        impact = service.find_impact(session, caller, user_id, time_utc.replace(" ", "+"))
        # Sandbox impacts follow their compressed schedule whether or not a
        # worker runs (lifecycle/sandbox.py); only then is a write needed.
        if sandbox.is_due(impact, now_ms(), stage_seconds):
            if not catch_up:
                return None
            sandbox.catch_up(session, impact, now_ms(), stage_seconds, events_of(request))
        return track_view(session, impact, caller.user_id, base)

    db = request.app.state.db
    found = await db.run(view, False)
    if found is None:
        found = await db.run(view, True, write=True)
    return JSONResponse(found)
