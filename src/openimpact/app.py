"""create_app(): lifespan, middleware, routers and error handlers."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from openimpact import __version__
from openimpact.accounts.router import router as accounts_router
from openimpact.accounts.service import server_secret
from openimpact.asgi import replay_body
from openimpact.budgets.router import router as budget_router
from openimpact.certificates.router import router as certificates_router
from openimpact.config import Settings, get_settings
from openimpact.customers.router import router as customers_router
from openimpact.dashboard.router import STATIC_DIR as DASHBOARD_STATIC
from openimpact.dashboard.router import error_page as dashboard_error_page
from openimpact.dashboard.router import router as dashboard_router
from openimpact.dashboard.security import make_throttle
from openimpact.db import Database
from openimpact.errors import error_response, install_error_handlers
from openimpact.impacts.fastpath import ImpactFastPath
from openimpact.impacts.router import router as impacts_router
from openimpact.impacts.writer import Writer
from openimpact.lifecycle.router import router as lifecycle_router
from openimpact.lifecycle.schemas import BATCH_BODY_BYTES
from openimpact.migrate import prepare_database
from openimpact.outbox.service import Events
from openimpact.pagination import CursorCodec
from openimpact.projects.router import router as projects_router
from openimpact.public.router import router as public_router
from openimpact.ratelimit import make_limiter
from openimpact.redact import redact_logs
from openimpact.schedules.router import router as schedules_router
from openimpact.stats.router import router as stats_router
from openimpact.webhooks.router import router as webhooks_router
from openimpact.worker import run_in_background

log = logging.getLogger(__name__)


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with a JSON 413, reading at most
    that much, whether or not the client sent Content-Length. Paths under a
    prefix of ``larger`` have that limit instead (the operator's batches, whose
    schema allows bodies far over the default)."""

    def __init__(self, app: ASGIApp, max_bytes: int, larger: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}

    def _limit(self, path: str) -> int:
        for prefix, limit in self.larger.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        # The length check first: int() refuses strings of over 4300 digits.
        if declared is not None and (
            not declared.isdigit() or len(declared) > 18 or int(declared) > limit
        ):
            await self._too_large(scope, receive, send, limit)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._too_large(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay_body(b"".join(chunks), receive), send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(
            413, "payload_too_large", f"request body must be at most {limit} bytes"
        )
        await response(scope, receive, send)


def _is_utf8(url_part: bytes) -> bool:
    try:
        unquote_to_bytes(url_part).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class UrlGuard:
    """Refuse, with a JSON 400, URLs that no parameter of this API can use:

    - a NUL character in the path or the query: PostgreSQL cannot even compare
      text holding one, so it would surface as a 500 from the driver;
    - more than ``max_params`` query parameters (the longest real query has
      about twenty), so that a parameter repeated thousands of times costs
      nothing to parse;
    - bytes that are not UTF-8 once percent-decoded (Starlette would quietly
      turn them into U+FFFD and answer for a value nobody sent).
    """

    def __init__(self, app: ASGIApp, max_params: int = 100) -> None:
        self.app = app
        self.max_params = max_params

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope["query_string"]
            message = None
            if "\x00" in scope["path"] or b"%00" in query or b"\x00" in query:
                message = "the URL must not contain NUL characters"
            elif query.count(b"&") >= self.max_params:
                message = f"at most {self.max_params} query parameters are allowed"
            elif not _is_utf8(query) or not _is_utf8(scope.get("raw_path") or b""):
                message = "the URL must be UTF-8 once percent-decoded"
            if message is not None:
                await error_response(400, "validation_error", message)(scope, receive, send)
                return
        await self.app(scope, receive, send)


# UrlGuard's rule, for the schema of every text parameter of the URL that
# does not already exclude a NUL by its pattern, enum or format.
_NO_NUL = "^[^\\u0000]*$"


def _forbid_nul(schema: dict[str, Any]) -> None:
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "array":
            _forbid_nul(branch.get("items", {}))
        elif branch.get("type") == "string" and not {"pattern", "enum", "const", "format"} & {
            *branch,
            *schema,
        }:
            branch["pattern"] = _NO_NUL


def _describe_real_errors(app: FastAPI) -> None:
    """Make /openapi.json tell the truth: validation errors are 400 ``{type,
    message}`` here (the SDKs expect that), never FastAPI's default 422, and
    no URL parameter can hold a NUL (UrlGuard)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        for path_item in schema.get("paths", {}).values():
            for operation in path_item.values():
                responses = operation.get("responses", {})
                responses.pop("422", None)
                for parameter in operation.get("parameters", []):
                    if parameter.get("in") in ("path", "query"):
                        _forbid_nul(parameter.get("schema", {}))
        components = schema.get("components", {}).get("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _telemetry(enabled: bool) -> dict[str, Any]:
    """FastAPI's native OpenTelemetry (in the releases that have it) unless
    the operator asks for it: on, every request asks the OpenTelemetry API
    whether an SDK is configured, which took about 5% of an impact POST."""
    if enabled or "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


# The cyclic garbage collector's first threshold while a server runs (see
# the lifespan below); measured on the write bench: 3 to 9% more POSTs
# per second on both databases than with Python's default of 700.
GC_YOUNG_OBJECTS = 10_000


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    redact_logs(settings.admin_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.sqlalchemy_url
        prepare_database(url)
        db = Database(url)
        for warning in db.settings_warnings():
            log.warning("%s", warning)
        app.state.db = db
        app.state.cursor_codec = CursorCodec(db.run_sync(server_secret, "cursor", write=True))
        app.state.limiter = make_limiter(settings.rate_limit, settings.redis_url)
        writer = app.state.writer = Writer(
            db,
            max_batch=settings.writer_max_batch,
            max_wait_ms=settings.writer_max_wait_ms,
            in_flight=settings.writer_in_flight,
            events=Events.of_server(settings),
        )
        writer.start()
        stop = asyncio.Event()
        worker_task = (
            asyncio.create_task(run_in_background(db, settings, stop))
            if settings.background_worker
            else None
        )
        # Everything built so far lives as long as the server: out of the
        # cyclic collector's sight, a full collection no longer walks it, which
        # took p99 of a 1000-record page from ~60 ms to ~8 ms (issue 4).
        gc.freeze()
        # A request's objects are freed by their reference counts, but while
        # 32 requests are in flight, 700 of them alive at once (the default)
        # start a collection: on the write bench, about 100 young and two
        # full ones (5 ms each, the event loop stopped) per second. At 10,000
        # a collection is rare and garbage cycles are still collected.
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_OBJECTS, *thresholds[1:])
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()  # collectable again (tests start many apps in one process)
            stop.set()
            await writer.close()
            if worker_task is not None:
                await worker_task
            db.dispose()

    app = FastAPI(
        **_telemetry(settings.opentelemetry),
        title="OpenImpact",
        version=__version__,
        summary="Open, self-hostable server for the 1ClickImpact API v1.",
        description=(
            "Authenticate with the `x-api-key` header. Every error is JSON: "
            '`{"type": "...", "message": "..."}`. Times are ISO-8601 UTC with milliseconds.'
        ),
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.signin_throttle = make_throttle(settings)
    app.state.html_error_page = dashboard_error_page
    install_error_handlers(app)
    for router in (
        accounts_router,
        impacts_router,
        stats_router,
        # Route matching walks this list in order (each router passed costs a
        # public read tens of microseconds): after the API's hot paths, ahead
        # of the rest, since widgets on other sites make these frequent.
        public_router,
        customers_router,
        schedules_router,
        budget_router,
        webhooks_router,
        projects_router,
        lifecycle_router,
        certificates_router,
        dashboard_router,
    ):
        app.include_router(router)
    app.mount("/dashboard/static", StaticFiles(directory=DASHBOARD_STATIC), name="dashboard-static")

    _describe_real_errors(app)

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/dashboard", status_code=303)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    # Innermost of the application's middlewares: the body limit and the URL
    # guard apply to the fast path's requests too.
    app.add_middleware(ImpactFastPath)
    batches = max(settings.max_body_bytes, BATCH_BODY_BYTES)
    app.add_middleware(
        BodyLimit, max_bytes=settings.max_body_bytes, larger={"/admin/v1/lifecycle/": batches}
    )
    app.add_middleware(UrlGuard)
    return app
