"""The error tree and the handlers that give every error one JSON shape.

    OpenImpactError(type, message, status)
     ├── KeyError_            401 key_error
     ├── BudgetExceeded       402 budget_exceeded (budgets/service.py)
     ├── ValidationFailed     400 validation_error
     ├── NotFound             404 not_found
     ├── IdempotencyConflict  409 idempotency_error
     ├── PayloadTooLarge      413 payload_too_large
     ├── RateLimited          429 rate_limit_error (+ Retry-After)
     └── Unavailable          503 unavailable (+ Retry-After): the database
                              failed the whole transaction; nothing was written

The official SDKs call ``.json()`` before they look at the status, so every
answer, a 404 for an unknown path or a 500 included, is ``{"type", "message"}``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    type: str = Field(description="Machine-readable error class, e.g. key_error")
    message: str = Field(description="What went wrong, naming the field or parameter")


class OpenImpactError(Exception):
    type = "error"
    status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        """The error's JSON answer."""
        return error_response(self.status, self.type, self.message, self.headers)


class KeyError_(OpenImpactError):
    type = "key_error"
    status = 401


class Forbidden(OpenImpactError):
    type = "forbidden"
    status = 403


class ValidationFailed(OpenImpactError):
    type = "validation_error"
    status = 400


class NotFound(OpenImpactError):
    type = "not_found"
    status = 404


class IdempotencyConflict(OpenImpactError):
    type = "idempotency_error"
    status = 409


class Conflict(OpenImpactError):
    """The request is well formed but the resource's state does not allow it."""

    type = "conflict"
    status = 409


class PayloadTooLarge(OpenImpactError):
    type = "payload_too_large"
    status = 413


class RateLimited(OpenImpactError):
    type = "rate_limit_error"
    status = 429


class Unavailable(OpenImpactError):
    type = "unavailable"
    status = 503


_STATUS_TYPES = {
    400: "validation_error",
    401: "key_error",
    402: "budget_exceeded",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limit_error",
    503: "unavailable",
}


def error_response(status: int, type_: str, message: str, headers: dict[str, str] | None = None):
    return JSONResponse({"type": type_, "message": message}, status_code=status, headers=headers)


def describe_validation_errors(errors: list[Any]) -> str:
    """One sentence per problem, each naming the field ("amount: ...")."""
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "header", "path")]
        where = ".".join(loc) if loc else _where_from_type(err)
        msg = err.get("msg", "is invalid")
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        parts.append(f"{where}: {msg}" if where else msg)
    if len(errors) > 5:
        parts.append(f"and {len(errors) - 5} more problems")
    return "; ".join(parts)


def _where_from_type(err: dict[str, Any]) -> str:
    if err.get("type") in ("json_invalid", "json_type"):
        return "body"
    loc = err.get("loc") or ("",)
    return "body" if loc[0] == "body" else ""


# Pages (the dashboard) answer errors as pages: a renderer installed in
# ``app.state.html_error_page`` may take an error over; it returns None for
# requests that are not its own, which then get the JSON answer.
HtmlErrorPage = Callable[[Request, int, str, str, Exception], Awaitable[Response | None]]


async def _as_page(
    request: Request, status: int, type_: str, message: str, exc: Exception
) -> Response | None:
    render: HtmlErrorPage | None = getattr(request.app.state, "html_error_page", None)
    return await render(request, status, type_, message, exc) if render is not None else None


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OpenImpactError)
    async def _ours(request: Request, exc: OpenImpactError) -> Response:
        page = await _as_page(request, exc.status, exc.type, exc.message, exc)
        if page is not None:
            return page
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        errors = list(exc.errors())
        page = await _as_page(
            request, 400, "validation_error", describe_validation_errors(errors), exc
        )
        if page is not None:
            return page
        if any(e.get("type") == "json_invalid" for e in errors):
            return error_response(400, "validation_error", "body: is not valid JSON")
        # FastAPI hands the model the raw bytes when the Content-Type is not JSON
        # (text/plain, a form, or none, as with a bare `curl -d`).
        if any(e.get("loc") == ("body",) and isinstance(e.get("input"), bytes) for e in errors):
            return error_response(
                415,
                "unsupported_media_type",
                "body: send JSON with the header Content-Type: application/json",
            )
        return error_response(400, "validation_error", describe_validation_errors(errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI's "There was an error parsing the body": json.loads gave up
            # on invalid UTF-8, nesting too deep or a number too long.
            message = "body: is not valid JSON (bad UTF-8, nested too deep or a number too long)"
        if exc.status_code == 404 and message == "Not Found":
            message = "no such endpoint"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route of the path only;
            # a path with one route per method (GET, PATCH, DELETE) has more.
            headers["Allow"] = ", ".join(_allowed_methods(request))
        type_ = _STATUS_TYPES.get(exc.status_code, "error")
        page = await _as_page(request, exc.status_code, type_, message, exc)
        if page is not None:
            return page
        return error_response(exc.status_code, type_, message, headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        message = "internal error; the request was not applied"
        page = await _as_page(request, 500, "internal_error", message, exc)
        return page or error_response(500, "internal_error", message)
