"""/v1/webhook_endpoints and /v1/events: extensions of v1 with the same key
authentication, errors and validation as the rest of the API."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from openimpact.auth import AccountDep, current_caller
from openimpact.impacts.batch import Outcome
from openimpact.impacts.router import IdempotencyKey, run_idempotent
from openimpact.kit import error_responses
from openimpact.webhooks import delivery, schemas, service

TAG = "webhooks and events (extension of v1)"
router = APIRouter(prefix="/v1", tags=[TAG], dependencies=[Depends(current_caller)])

EndpointId = Annotated[str, Path(min_length=1, max_length=40, pattern="^[a-z0-9_]+$")]
DeliveryId = Annotated[str, Path(min_length=1, max_length=40, pattern="^[a-z0-9_]+$")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=500)]


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhooks_allow_private)


def _page(name: str, found: list[dict[str, Any]], cursor: str | None) -> JSONResponse:
    body: dict[str, Any] = {name: found}
    if cursor is not None:
        body["cursor"] = cursor
    return JSONResponse(body)


@router.post(
    "/webhook_endpoints",
    response_model=schemas.EndpointCreated,
    responses=error_responses(400, 401, 409, 413, 415, 429),
)
async def create_endpoint(
    request: Request,
    caller: AccountDep,
    body: schemas.EndpointCreate,
    key: IdempotencyKey = None,
) -> JSONResponse:
    """Register a URL that receives this environment's events, signed as Standard
    Webhooks. The `secret` is in this answer and in `GET …/secret`, nowhere else."""
    url = await service.check_url(body.url, allow_private=_allow_private(request))
    return await run_idempotent(
        request,
        caller,
        key,
        body,
        lambda s: Outcome(200, service.create_endpoint(s, caller, body, url)),
    )


@router.get(
    "/webhook_endpoints",
    response_model=schemas.EndpointsPage,
    responses=error_responses(400, 401, 429),
)
async def list_endpoints(
    request: Request, caller: AccountDep, limit: Limit = 20, cursor: Cursor = None
) -> JSONResponse:
    """The environment's endpoints, oldest first."""
    found, next_cursor = await request.app.state.db.run(
        service.list_endpoints, caller, limit, cursor or None, request.app.state.cursor_codec
    )
    return _page("webhook_endpoints", found, next_cursor)


@router.get(
    "/webhook_endpoints/{endpoint_id}",
    response_model=schemas.EndpointOut,
    responses=error_responses(400, 401, 404, 429),
)
async def get_endpoint(request: Request, caller: AccountDep, endpoint_id: EndpointId) -> Any:
    return JSONResponse(
        await request.app.state.db.run(
            lambda s: service.endpoint_out(service.find_endpoint(s, caller, endpoint_id))
        )
    )


@router.patch(
    "/webhook_endpoints/{endpoint_id}",
    response_model=schemas.EndpointOut,
    responses=error_responses(400, 401, 404, 413, 415, 429),
)
async def update_endpoint(
    request: Request, caller: AccountDep, endpoint_id: EndpointId, body: schemas.EndpointPatch
) -> Any:
    """Change the URL, description or event types; `enabled: false` stops deliveries
    and `true` resumes them (`…/recover` then resends what was missed)."""
    url = None
    if body.url is not None:
        url = await service.check_url(body.url, allow_private=_allow_private(request))
    return JSONResponse(
        await request.app.state.db.run(
            lambda s: service.update_endpoint(s, caller, endpoint_id, body, url), write=True
        )
    )


@router.delete(
    "/webhook_endpoints/{endpoint_id}",
    response_model=schemas.EndpointDeleted,
    responses=error_responses(400, 401, 404, 429),
)
async def delete_endpoint(request: Request, caller: AccountDep, endpoint_id: EndpointId) -> Any:
    return JSONResponse(
        await request.app.state.db.run(service.delete_endpoint, caller, endpoint_id, write=True)
    )


@router.get(
    "/webhook_endpoints/{endpoint_id}/secret",
    response_model=schemas.SecretOut,
    responses=error_responses(400, 401, 404, 429),
)
async def get_secret(request: Request, caller: AccountDep, endpoint_id: EndpointId) -> Any:
    """The signing secret (and, after a rotation, until when the old one still signs)."""
    return JSONResponse(await request.app.state.db.run(service.reveal_secret, caller, endpoint_id))


@router.post(
    "/webhook_endpoints/{endpoint_id}/rotate_secret",
    response_model=schemas.SecretOut,
    responses=error_responses(400, 401, 404, 429),
)
async def rotate_secret(request: Request, caller: AccountDep, endpoint_id: EndpointId) -> Any:
    """A new secret; for 24 hours deliveries carry a signature with each."""
    return JSONResponse(
        await request.app.state.db.run(service.rotate_secret, caller, endpoint_id, write=True)
    )


@router.post(
    "/webhook_endpoints/{endpoint_id}/test",
    response_model=schemas.TestOut,
    responses=error_responses(400, 401, 404, 409, 429),
)
async def test_endpoint(request: Request, caller: AccountDep, endpoint_id: EndpointId) -> Any:
    """Send a `ping` event now and answer with the attempt; a failed ping is retried
    like any event."""
    db = request.app.state.db
    settings = request.app.state.settings
    ping: service.TestPing = await db.run(
        service.queue_test, caller, endpoint_id, settings.webhook_lease_seconds, write=True
    )
    await delivery.deliver_now(db, settings, ping.message_pk, ping.lease)
    attempt = await db.run(service.attempt_of_message, ping.message_pk)
    return JSONResponse(
        {"endpoint_id": ping.endpoint_id, "event_id": ping.event_id, "delivery": attempt}
    )


@router.get(
    "/webhook_endpoints/{endpoint_id}/deliveries",
    response_model=schemas.DeliveriesPage,
    responses=error_responses(400, 401, 404, 429),
)
async def list_deliveries(
    request: Request,
    caller: AccountDep,
    endpoint_id: EndpointId,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONResponse:
    """Every attempt, newest first: time, status code, latency, the first bytes of the
    answer."""
    found, next_cursor = await request.app.state.db.run(
        service.list_deliveries,
        caller,
        endpoint_id,
        limit,
        cursor or None,
        request.app.state.cursor_codec,
    )
    return _page("deliveries", found, next_cursor)


@router.post(
    "/webhook_endpoints/{endpoint_id}/deliveries/{delivery_id}/resend",
    response_model=schemas.Queued,
    status_code=202,
    responses=error_responses(400, 401, 404, 409, 429),
)
async def resend(
    request: Request, caller: AccountDep, endpoint_id: EndpointId, delivery_id: DeliveryId
) -> Any:
    """Send that attempt's event again (same `webhook-id`), on a fresh retry schedule."""
    return JSONResponse(
        await request.app.state.db.run(
            service.resend, caller, endpoint_id, delivery_id, write=True
        ),
        status_code=202,
    )


@router.post(
    "/webhook_endpoints/{endpoint_id}/recover",
    response_model=schemas.RecoverOut,
    status_code=202,
    responses=error_responses(400, 401, 404, 409, 413, 415, 429),
)
async def recover(
    request: Request, caller: AccountDep, endpoint_id: EndpointId, body: schemas.RecoverIn
) -> Any:
    """Resend every event since `since` (at most 30 days ago) that this endpoint
    subscribes to and has not received."""
    return JSONResponse(
        await request.app.state.db.run(
            service.recover, caller, endpoint_id, body.since, write=True
        ),
        status_code=202,
    )


@router.get("/events", response_model=schemas.EventsPage, responses=error_responses(400, 401, 429))
async def list_events(
    request: Request,
    caller: AccountDep,
    type: Annotated[schemas.EventType | None, Query()] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONResponse:
    """This environment's events of the last 30 days, oldest first, with the ids and
    payloads the webhooks carry: a client catches up with `cursor`, no receiver needed."""
    found, next_cursor = await request.app.state.db.run(
        service.list_events, caller, type, limit, cursor or None, request.app.state.cursor_codec
    )
    return _page("events", found, next_cursor)
