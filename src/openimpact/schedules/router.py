"""/v1/schedules: monthly impact, an extension of v1 with the same key
authentication, errors, idempotency and validation as the impact POSTs."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from openimpact.auth import AccountDep, current_caller
from openimpact.impacts.batch import Outcome
from openimpact.impacts.router import IdempotencyKey, run_idempotent
from openimpact.kit import error_responses
from openimpact.schedules import schemas, service

TAG = "schedules (extension of v1)"
router = APIRouter(prefix="/v1", tags=[TAG], dependencies=[Depends(current_caller)])

ScheduleId = Annotated[str, Path(min_length=1, max_length=32, pattern="^[A-Za-z0-9]+$")]


@router.post(
    "/schedules",
    response_model=schemas.ScheduleOut,
    responses=error_responses(400, 401, 409, 413, 415, 429),
)
async def create_schedule(
    request: Request,
    caller: AccountDep,
    body: schemas.ScheduleCreate,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Create an impact every month on `day_of_month`: the worker creates each due
    period's impact exactly once, with `schedule_id` and `period` on track. A donation's
    `category` must be one of the account's causes."""
    return await run_idempotent(
        request,
        caller,
        key,
        body,
        lambda s: Outcome(200, service.create_schedule(s, caller, body)),
    )


@router.get(
    "/schedules", response_model=schemas.SchedulesPage, responses=error_responses(400, 401, 429)
)
async def list_schedules(
    request: Request,
    caller: AccountDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> JSONResponse:
    """The environment's schedules, oldest first."""
    found, next_cursor = await request.app.state.db.run(
        service.list_schedules, caller, limit, cursor or None, request.app.state.cursor_codec
    )
    body: dict[str, Any] = {"schedules": found}
    if next_cursor is not None:
        body["cursor"] = next_cursor
    return JSONResponse(body)


@router.get(
    "/schedules/{schedule_id}",
    response_model=schemas.ScheduleOut,
    responses=error_responses(400, 401, 404, 429),
)
async def get_schedule(request: Request, caller: AccountDep, schedule_id: ScheduleId) -> Any:
    def read(session: Any) -> dict[str, Any]:
        found = service.find_schedule(session, caller, schedule_id)
        day = service.today()
        made = service.made_periods(session, [found.id], day).get(found.id, frozenset())
        return service.schedule_out(found, day, made)

    return JSONResponse(await request.app.state.db.run(read))


@router.patch(
    "/schedules/{schedule_id}",
    response_model=schemas.ScheduleOut,
    responses=error_responses(400, 401, 404, 413, 415, 429),
)
async def update_schedule(
    request: Request, caller: AccountDep, schedule_id: ScheduleId, body: schemas.SchedulePatch
) -> Any:
    """Pause (`"status": "paused"`: no periods while paused, and those months are
    skipped), resume, change the amount or the end date (`null` removes it)."""
    return JSONResponse(
        await request.app.state.db.run(
            service.update_schedule, caller, schedule_id, body, write=True
        )
    )


@router.delete(
    "/schedules/{schedule_id}",
    response_model=schemas.ScheduleDeleted,
    responses=error_responses(400, 401, 404, 429),
)
async def delete_schedule(request: Request, caller: AccountDep, schedule_id: ScheduleId) -> Any:
    """Stop the schedule for good; the impacts it made stay as they are."""
    return JSONResponse(
        await request.app.state.db.run(service.delete_schedule, caller, schedule_id, write=True)
    )
