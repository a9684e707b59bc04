"""The operator's API: report lifecycle progress in batches, watch the pipeline,
and choose projects per account.

Every route needs the operator token (``Authorization: Bearer
$OPENIMPACT_ADMIN_TOKEN``); account API keys are never accepted here, and the
operator token is never accepted as an account key.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from openimpact.auth import OperatorDep
from openimpact.impacts.router import events_of
from openimpact.kit import error_responses
from openimpact.lifecycle import assignment, schemas
from openimpact.lifecycle.service import (
    CompleteOptions,
    impact_history,
    lifecycle_status,
    run_batch,
)

ACTOR = "admin-api"

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[OperatorDep])

_BATCH_ERRORS = error_responses(400, 401, 403, 413)


async def _batch(
    request: Request,
    action: str,
    body: schemas.BatchBase,
    project_id: str | None = None,
    options: CompleteOptions | None = None,
) -> JSONResponse:
    selection = body.selection.to_selection()
    db = request.app.state.db
    # A batch commits chunk by chunk and may take seconds: keep the event loop free.
    report = await anyio.to_thread.run_sync(
        lambda: run_batch(
            db,
            action,
            selection,
            actor=ACTOR,
            dry_run=body.dry_run,
            chunk_size=body.chunk_size,
            project_id=project_id,
            options=options,
            events=events_of(request),
        )
    )
    return JSONResponse(report)


@router.post("/lifecycle/receive", response_model=schemas.BatchReport, responses=_BATCH_ERRORS)
async def receive(request: Request, body: schemas.BatchIn) -> JSONResponse:
    """Donation Received: the funds for the selected Initiated impacts arrived
    (sets `donation_available`). Impacts in other stages, and cancelled ones, are skipped
    and counted under `skipped`."""
    return await _batch(request, "receive", body)


@router.post("/lifecycle/transfer", response_model=schemas.BatchReport, responses=_BATCH_ERRORS)
async def transfer(request: Request, body: schemas.TransferIn) -> JSONResponse:
    """Transferred to Partner: the funds went to the partner executing each impact
    (sets `donation_sent`, `project_id`, `assigned_agent`, `project_location`,
    `location_map`). The project comes from `project_id` or the assignment rules
    (account override, food trees, the donation's cause, the impact type)."""
    return await _batch(request, "transfer", body, project_id=body.project_id)


@router.post("/lifecycle/complete", response_model=schemas.BatchReport, responses=_BATCH_ERRORS)
async def complete(request: Request, body: schemas.CompleteIn) -> JSONResponse:
    """Completed: the partner executed and verified the work (sets `impact_completed`,
    optionally `impact_video`; food-tree impacts get `live_session_date`). Their
    certificates become final."""
    return await _batch(request, "complete", body, options=body.options())


EnvQuery = Annotated[schemas.Env, Query(description="production (default) or sandbox")]


@router.get(
    "/lifecycle/status",
    response_model=schemas.StatusOut,
    responses=error_responses(400, 401, 403),
)
async def status(request: Request, env: EnvQuery = "production") -> JSONResponse:
    """Impacts per stage and type, and the one waiting longest in each open stage."""
    return JSONResponse(await request.app.state.db.run(lifecycle_status, env))


@router.get(
    "/impacts/{tracking_id}/transitions",
    response_model=schemas.HistoryOut,
    responses=error_responses(400, 401, 403, 404),
)
async def transitions(
    request: Request,
    tracking_id: Annotated[str, Path(max_length=120, description="user_id-time_utc")],
    env: EnvQuery = "production",
) -> JSONResponse:
    """The append-only log of one impact's stage changes: when, who, from → to, batch."""
    return JSONResponse(await request.app.state.db.run(impact_history, tracking_id, env))


UserIdPath = Annotated[str, Path(max_length=64)]


@router.get(
    "/accounts/{user_id}/projects",
    response_model=schemas.ProjectOverridesOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_project_overrides(request: Request, user_id: UserIdPath) -> dict[str, Any]:
    """The account's project overrides (see PUT)."""
    found = await request.app.state.db.run(assignment.get_overrides, user_id)
    return {"user_id": user_id, "project_overrides": found}


@router.put(
    "/accounts/{user_id}/projects",
    response_model=schemas.ProjectOverridesOut,
    responses=error_responses(400, 401, 403, 404, 413),
)
async def put_project_overrides(
    request: Request, user_id: UserIdPath, body: schemas.ProjectOverridesIn
) -> dict[str, Any]:
    """Choose the project for this account's future transfers, per impact type
    (`tree_planted`), food trees (`tree_planted:food`) or donation cause
    (`money_donated:veterans`). The project must execute that kind of impact."""
    found = await request.app.state.db.run(
        assignment.set_overrides, user_id, dict(body.project_overrides), write=True
    )
    return {"user_id": user_id, "project_overrides": found}
