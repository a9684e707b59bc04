"""The impact POSTs' fast path: a valid request skips FastAPI's routing.

The five impact POSTs are what checkout calls, in bursts. Routing a request
through FastAPI (its exception and exit-stack middlewares, the route walk, and
solving the route's parameters and dependencies on every call) cost more than
the rest of the request outside the database on the bench machine (issue 10).
This middleware, innermost of the application's own, answers a request to one
of those paths itself when it can do so exactly as the route would:

- a JSON body (``Content-Type: application/json``) that the route's own body
  model accepts, and an ``Idempotency-Key`` that the route's header rule
  accepts, or none: then the caller is authenticated with the route's own
  dependency (:func:`openimpact.auth.authenticate`) and the impact handed to
  the route's own code (:func:`~openimpact.impacts.router.create_impact`);
- anything else (a body that is not JSON or fails validation, another
  content type, a header the rule refuses) goes on to the route, unchanged,
  which gives it its usual answer. Nothing has happened to such a request yet:
  it is checked before its caller is counted by the rate limiter.

Errors of the caller and of the write are the route's own errors, answered
with the same JSON; anything unexpected goes on up to the server's error
handler like a route's.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from openimpact.asgi import replay_body
from openimpact.auth import authenticate
from openimpact.errors import OpenImpactError
from openimpact.impacts.router import IMPACTS, create_impact
from openimpact.impacts.router import router as impacts_router

_ROUTES: dict[str, tuple[str, type[BaseModel]]] = {
    impacts_router.prefix + path: target for path, target in IMPACTS.items()
}
_WANTED = (b"content-type", b"x-api-key", b"idempotency-key")


def _idempotency_key_ok(key: str) -> bool:
    # The route's rule (router.IdempotencyKey): 1 to 255 printable ASCII characters.
    return 0 < len(key) <= 255 and key.isascii() and key.isprintable()


def _is_json(content_type: str) -> bool:
    # application/json with or without parameters; other JSON types
    # (application/*+json) are the route's to parse.
    return content_type.partition(";")[0].strip().lower() == "application/json"


class ImpactFastPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = (
            _ROUTES.get(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")
            else None
        )
        if target is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # gone before its body arrived: nobody to answer
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replay = replay_body(body, receive)
        parsed = _parse(scope, body, target[1])
        if parsed is None:
            await self.app(scope, replay, send)
            return
        api_key, idempotency_key, model = parsed
        request = Request(scope, replay)
        try:
            caller = await authenticate(request, api_key)
            response = await create_impact(request, caller, idempotency_key, target[0], model)
        except OpenImpactError as exc:
            response = exc.response()
        await response(scope, replay, send)


def _parse(
    scope: Scope, body: bytes, model: type[BaseModel]
) -> tuple[str | None, str | None, BaseModel] | None:
    """The API key, the Idempotency-Key and the body, or None where the route
    is to answer. Headers are read as Starlette reads them: the first of a
    name, decoded as Latin-1."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    content_type = found.get(b"content-type")
    if content_type is None or not _is_json(content_type):
        return None
    idempotency_key = found.get(b"idempotency-key")
    if idempotency_key is not None and not _idempotency_key_ok(idempotency_key):
        return None
    try:
        data: Any = json.loads(body)  # as Starlette's Request.json()
        return found.get(b"x-api-key"), idempotency_key, model.model_validate(data)
    except (ValueError, RecursionError, ValidationError):
        # Not JSON (JSONDecodeError and UnicodeDecodeError are ValueErrors),
        # nested too deep, or refused by the model: the route says how.
        return None
