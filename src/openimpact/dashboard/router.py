"""The merchant dashboard: HTTP only. What a page shows comes from views.py,
which calls the same services as the API; security.py holds sessions, CSRF
and sign-in throttling.

    /dashboard/login, /logout, /forgot, /reset/{token}, /invite/{token}
    /dashboard                       overview: totals, daily chart, latest impacts
    /dashboard/impacts               every impact, filters, keyset pages, CSV export
    /dashboard/impacts/{tracking_id} the track view (a modal over the list)
    /dashboard/customers[/{id}]      customers and one customer's impact
    /dashboard/certificates          every certificate with its page, PNG and PDF
    /dashboard/profile               the public profile, the widget builder and badges
    /dashboard/developers            API keys, base URL, quickstart
    /dashboard/team                  users of the account; owners invite and remove
    /dashboard/webhooks[/{id}]       webhook endpoints, their secrets, test and delivery log
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from jinja2_fragments import render_block

from openimpact.dashboard import views
from openimpact.dashboard.security import (
    ANON_CSRF_COOKIE,
    SESSION_COOKIE,
    MemberDep,
    OwnerDep,
    SignInRequired,
    client_ip,
    cookie_secure,
    csrf_guard,
    login_url,
    new_anonymous_csrf,
    safe_next,
    session_limits,
    signed_in,
)
from openimpact.errors import Conflict, NotFound, ValidationFailed
from openimpact.impacts.models import STAGES
from openimpact.impacts.queries import ImpactQuery
from openimpact.kit import RECORD_KEYS, email_from_query, parse_day
from openimpact.lifecycle.service import STAGE_LABELS
from openimpact.outbox.service import EVENT_TYPES, Events
from openimpact.public import service as public
from openimpact.timeutil import ms_to_iso, now_ms
from openimpact.users import service as users
from openimpact.users.service import Member
from openimpact.web import (
    EMBED_SOURCES,
    content_security_policy,
    html_page,
    template_environment,
)
from openimpact.webhooks import delivery
from openimpact.webhooks import service as webhook_service
from openimpact.webhooks.guard import MAX_URL_LENGTH

router = APIRouter(prefix="/dashboard", include_in_schema=False, dependencies=[Depends(csrf_guard)])

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = template_environment(HERE / "templates")
templates.globals.update(
    TYPE_LABELS=views.TYPE_LABELS,
    TYPE_UNITS=views.TYPE_UNITS,
    STAGE_LABELS=STAGE_LABELS,
    STAGES=STAGES,
    RECORD_KEYS=RECORD_KEYS,
    figure=views.figure,
    when=views.when,
    describe=views.describe,
    ENVIRONMENTS=views.env_choices(),
)
templates.filters["wordinitials"] = lambda text: "".join(
    w[:1] for w in str(text).split()[:2]
).upper()


def _base_url(request: Request) -> str:
    return (request.app.state.settings.public_url or str(request.base_url)).rstrip("/")


def _events(request: Request) -> Events:
    """How a change made from the dashboard records its events."""
    return Events.of_server(request.app.state.settings, _base_url(request))


def _is_fragment(request: Request, target: str) -> bool:
    """An htmx request that swaps only ``target`` (history restores get the page)."""
    return (
        request.headers.get("hx-request") == "true"
        and request.headers.get("hx-target") == target
        and request.headers.get("hx-history-restore-request") != "true"
    )


# A form sent back with its errors is an answer of its own (200): htmx swaps
# only 2xx answers, and a browser reports any 4xx page load as a console error.
def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    *,
    block: str | None = None,
    status_code: int = 200,
    csrf: str | None = None,
) -> Response:
    member: Member | None = getattr(request.state, "member", None)
    ctx = {
        "request": request,
        "member": member,
        "csrf": csrf or (member.csrf_token if member else ""),
        "path": request.url.path,
        "full_path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        "base_url": _base_url(request),
        **context,
    }
    if block is not None:
        html = render_block(templates, template, block, **ctx)
    else:
        html = templates.get_template(template).render(**ctx)
    return html_page(html, status_code=status_code, frame_src=EMBED_SOURCES)


def _redirect(request: Request, url: str) -> Response:
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


async def error_page(
    request: Request, status: int, type_: str, message: str, exc: Exception
) -> Response | None:
    """Errors of dashboard pages as pages (errors.HtmlErrorPage)."""
    path = request.url.path
    if not path.startswith("/dashboard") or path.startswith("/dashboard/static"):
        return None
    if not isinstance(exc, SignInRequired) and status < 500:
        # An address no route matched was never asked who is signed in; the
        # page of the signed-in dashboard says "not found", not "sign in".
        await signed_in(request)
    if isinstance(exc, SignInRequired):
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = _redirect(request, login_url(target if request.method == "GET" else None))
        response.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return response
    titles = {403: "Not allowed", 404: "Not found", 429: "Too many attempts"}
    title = titles.get(status, "Something went wrong" if status >= 500 else "Bad request")
    headers = getattr(exc, "headers", None) or {}
    response = render(
        request,
        "error.html",
        {"status": status, "title": title, "message": message},
        status_code=status,
    )
    response.headers.update({k: v for k, v in headers.items() if k.lower() == "retry-after"})
    return response


def _anonymous_csrf(request: Request) -> tuple[str, bool]:
    token = request.cookies.get(ANON_CSRF_COOKIE)
    if token and 16 <= len(token) <= 64:
        return token, False
    return new_anonymous_csrf(), True


def _anonymous_page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    token, fresh = _anonymous_csrf(request)
    response = render(request, template, context, status_code=status_code, csrf=token)
    if fresh:
        response.set_cookie(
            ANON_CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=cookie_secure(request.app.state.settings),
            path="/dashboard",
        )
    return response


async def _start_session(request: Request, user_pk: int, destination: str) -> Response:
    """Sign in: always a brand-new session id (no fixation), cookie set."""
    settings = request.app.state.settings
    _, max_ms = session_limits(settings)
    token = await request.app.state.db.run(
        lambda s: users.start_session(s, user_pk, max_ms=max_ms), write=True
    )
    response = RedirectResponse(destination, status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_ms // 1000,
        httponly=True,
        samesite="lax",
        secure=cookie_secure(settings),
        path="/dashboard",
    )
    response.delete_cookie(ANON_CSRF_COOKIE, path="/dashboard")
    return response


# Sign-in, sign-out, links ------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str | None = None) -> Response:
    if await signed_in(request) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _anonymous_page(request, "login.html", {"next": safe_next(next), "email": ""})


@router.post("/login")
async def login(
    request: Request,
    email: Annotated[str, Form(max_length=320)] = "",
    password: Annotated[str, Form(max_length=2000)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    context: dict[str, Any] = {"next": safe_next(next), "email": email}
    wait = await request.app.state.signin_throttle.check(email, client_ip(request))
    if wait is not None:
        minutes = max(1, round(wait / 60))
        context["error"] = (
            f"Too many sign-in attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}."
        )
        response = _anonymous_page(request, "login.html", context, status_code=429)
        response.headers["Retry-After"] = str(wait)
        return response
    user = await request.app.state.db.run(users.authenticate, email, password, write=True)
    if user is None:
        context["error"] = "The email or password is not right. Check them and try again."
        return _anonymous_page(request, "login.html", context)
    return await _start_session(request, user.id, safe_next(next))


@router.post("/logout")
async def logout(request: Request, member: MemberDep) -> Response:
    await request.app.state.db.run(users.end_session, member.session_id, write=True)
    response = _redirect(request, "/dashboard/login?signed_out=1")
    response.delete_cookie(SESSION_COOKIE, path="/dashboard")
    return response


@router.get("/forgot")
async def forgot_form(request: Request) -> Response:
    return _anonymous_page(request, "forgot.html", {"email": ""})


@router.post("/forgot")
async def forgot(request: Request, email: Annotated[str, Form(max_length=320)] = "") -> Response:
    context: dict[str, Any] = {"email": email}
    try:
        users.normalize_email(email)
    except ValidationFailed:
        context["errors"] = {"email": "Enter an email address like name@example.com"}
        return _anonymous_page(request, "forgot.html", context)
    wait = await request.app.state.signin_throttle.check(email, client_ip(request))
    if wait is None:
        base = _base_url(request)
        await request.app.state.db.run(
            lambda s: users.send_reset(s, email, base, request.app.state.settings), write=True
        )
    # The same answer whether or not the address has a user, and when throttled.
    context["sent"] = True
    return _anonymous_page(request, "forgot.html", context)


def _link_page(request: Request, purpose: str, token: str, **context: Any) -> Response:
    return _anonymous_page(
        request, "set_password.html", {"purpose": purpose, "token": token, **context}
    )


async def _link_form(request: Request, purpose: str, token: str) -> Response:
    user = await request.app.state.db.run(users.token_user, token, purpose)
    if user is None:
        return _anonymous_page(request, "link_expired.html", {"purpose": purpose}, status_code=404)
    return _link_page(request, purpose, token, email=user.email)


async def _link_submit(request: Request, purpose: str, token: str, password: str) -> Response:
    try:
        user = await request.app.state.db.run(users.use_token, token, purpose, password, write=True)
    except NotFound:
        return _anonymous_page(request, "link_expired.html", {"purpose": purpose}, status_code=404)
    except ValidationFailed as exc:
        found = await request.app.state.db.run(users.token_user, token, purpose)
        return _link_page(
            request,
            purpose,
            token,
            email=found.email if found else "",
            errors={"password": exc.message.split(": ", 1)[-1].capitalize()},
        )
    return await _start_session(request, user.id, "/dashboard")


@router.get("/invite/{token}")
async def invite_form(request: Request, token: str) -> Response:
    return await _link_form(request, "invite", token)


@router.post("/invite/{token}")
async def invite_accept(
    request: Request, token: str, password: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    return await _link_submit(request, "invite", token, password)


@router.get("/reset/{token}")
async def reset_form(request: Request, token: str) -> Response:
    return await _link_form(request, "reset", token)


@router.post("/reset/{token}")
async def reset_submit(
    request: Request, token: str, password: Annotated[str, Form(max_length=2000)] = ""
) -> Response:
    return await _link_submit(request, "reset", token, password)


@router.post("/env")
async def switch_env(
    request: Request,
    member: MemberDep,
    env: Annotated[str, Form(max_length=20)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    await request.app.state.db.run(users.switch_env, member.session_id, env, write=True)
    destination = safe_next(next)
    # A page about one impact or customer belongs to the other environment.
    for section in ("/dashboard/impacts/", "/dashboard/customers/"):
        if destination.startswith(section):
            destination = section.rstrip("/")
    return _redirect(request, destination)


# Overview ------------------------------------------------------------------------------------


def _range(start: str | None, end: str | None) -> tuple[views.DateRange, dict[str, str]]:
    errors: dict[str, str] = {}
    default = views.default_range()
    try:
        first = parse_day("start", start or None) or default.start
    except ValidationFailed as exc:
        errors["start"], first = exc.message.split(": ", 1)[-1], default.start
    try:
        last = parse_day("end", end or None) or default.end
    except ValidationFailed as exc:
        errors["end"], last = exc.message.split(": ", 1)[-1], default.end
    if first > last:
        errors["start"] = "must not be after the end date"
        first, last = default.start, default.end
    elif (last - first).days > 366 * 2:
        errors["start"] = "the range can be at most two years"
        first = date.fromordinal(last.toordinal() - 366 * 2)
    return views.DateRange(first, last), errors


@router.get("")
async def overview(
    request: Request,
    member: MemberDep,
    start: Annotated[str | None, Query(max_length=20)] = None,
    end: Annotated[str | None, Query(max_length=20)] = None,
    metric: Annotated[str | None, Query(max_length=20)] = None,
) -> Response:
    span, errors = _range(start, end)
    chosen = metric if metric in RECORD_KEYS else "tree_planted"
    data = await request.app.state.db.run(views.overview, member, span, chosen)
    context = {"nav": "overview", "errors": errors, **data}
    if _is_fragment(request, "chart-card"):
        return render(request, "overview.html", context, block="chart_card")
    return render(request, "overview.html", context)


# Impacts ---------------------------------------------------------------------------------------


def _impact_query(params: dict[str, str | None]) -> tuple[ImpactQuery, dict[str, str]]:
    """The filters of the impacts page (and its CSV export), with a message
    per field for the ones that are not right."""
    errors: dict[str, str] = {}
    kind = params.get("type") or None
    if kind is not None and kind not in RECORD_KEYS:
        errors["type"], kind = "choose one of the impact types", None
    dates: dict[str, date | None] = {}
    for name in ("start", "end"):
        try:
            dates[name] = parse_day(name, params.get(name) or None)
        except ValidationFailed as exc:
            errors[name], dates[name] = exc.message.split(": ", 1)[-1], None
    if dates["start"] and dates["end"] and dates["start"] > dates["end"]:
        errors["start"] = "must not be after the end date"
    stage = params.get("stage") or None
    if stage is not None and stage not in STAGES:
        errors["stage"], stage = "choose one of the stages", None
    status = params.get("status") or None
    if status is not None and status not in views.STATUS_LABELS:
        errors["status"], status = "choose Active or Cancelled", None
    email = email_from_query(params.get("customer") or None) or None
    if email is not None and ("@" not in email or len(email) > 254):
        errors["customer"] = "enter a customer's full email address"
    order = params.get("order") or "desc"
    if order not in ("asc", "desc"):
        errors["order"], order = "choose newest or oldest first", "desc"
    query = ImpactQuery(
        types=(kind,) if kind else (),
        start=dates["start"] if "start" not in errors else None,
        end=dates["end"] if "end" not in errors else None,
        customer_email=email if "customer" not in errors else None,
        stage=stage,
        status=status,
        descending=order == "desc",
        limit=views.PAGE_SIZE,
    )
    return query, errors


_FILTERS = ("type", "start", "end", "customer", "stage", "status", "order")
Filter = Annotated[str | None, Query(max_length=320)]


def _filters(**values: str | None) -> dict[str, str | None]:
    return {name: values.get(name) for name in _FILTERS}


def impact_filters(
    type: Filter = None,
    start: Filter = None,
    end: Filter = None,
    customer: Filter = None,
    stage: Filter = None,
    status: Filter = None,
    order: Filter = None,
) -> dict[str, str | None]:
    """The impacts page's filters, as the page and its CSV export read them."""
    return _filters(
        type=type, start=start, end=end, customer=customer, stage=stage, status=status, order=order
    )


FiltersDep = Annotated[dict[str, str | None], Depends(impact_filters)]


@router.get("/impacts")
async def impacts(
    request: Request,
    member: MemberDep,
    params: FiltersDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    return await _impacts_page(request, member, params, cursor)


async def _impacts_page(
    request: Request,
    member: Member,
    params: dict[str, str | None],
    cursor: str | None,
    modal: views.TrackModal | None = None,
) -> Response:
    query, errors = _impact_query(params)
    if errors:
        cursor = None
    try:
        data = await request.app.state.db.run(
            views.impacts_page, member, query, cursor, request.app.state.cursor_codec
        )
    except ValidationFailed:
        # A cursor of other filters (or altered): start again from the first page.
        data = await request.app.state.db.run(
            views.impacts_page, member, query, None, request.app.state.cursor_codec
        )
        errors["cursor"] = "that page is no longer available; showing the first page"
    kept = {k: v for k, v in params.items() if v}
    context = {
        "nav": "impacts",
        "filters": params,
        "errors": errors,
        "query_string": urlencode(kept),
        "modal": modal,
        **data,
    }
    if _is_fragment(request, "impact-results"):
        return render(request, "impacts.html", context, block="results")
    return render(request, "impacts.html", context)


_CSV_COLUMNS = (
    "tracking_id",
    "time_utc",
    "impact_type",
    "amount",
    "unit",
    "category",
    "stage",
    "cancelled_on",
    "cancellation_reason",
    "customer_id",
    "customer_email",
    "customer_name",
    "project_id",
    "certificate_url",
    "metadata",
)


def _cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/impacts.csv")
async def impacts_csv(request: Request, member: MemberDep, params: FiltersDep) -> Response:
    """Exactly the filtered set, streamed a page at a time: each page is its
    own short read (keyset on time_ms), so a million rows never sit in memory
    and no transaction stays open while the client reads."""
    query, errors = _impact_query(params)
    if errors:
        raise ValidationFailed("; ".join(f"{k}: {v}" for k, v in errors.items()))
    query = ImpactQuery(**{**query.__dict__, "limit": 1000})
    db = request.app.state.db
    base = _base_url(request)

    async def rows() -> AsyncIterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(_CSV_COLUMNS)
        after: int | None = None
        while True:
            page, after = await db.run(views.csv_page, member, query, after)
            for row in page:
                customer_info = row.customer or {}
                writer.writerow(
                    [
                        _cell(v)
                        for v in (
                            row.tracking_id,
                            row.time_utc,
                            row.impact_type,
                            row.amount,
                            views.TYPE_UNITS[row.impact_type]
                            if row.impact_type != "money_donated"
                            else "US cents",
                            row.category,
                            row.stage,
                            row.cancelled_on,
                            row.cancellation_reason,
                            customer_info.get("customer_id"),
                            customer_info.get("customer_email"),
                            customer_info.get("customer_name"),
                            row.project_id,
                            f"{base}/certificates/{row.certificate_id}"
                            if row.certificate_id
                            else None,
                            json.dumps(row.metadata, ensure_ascii=False) if row.metadata else None,
                        )
                    ]
                )
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            if after is None:
                return

    stamp = ms_to_iso(now_ms())[:10]
    filename = f"openimpact-{member.env}-impacts-{stamp}.csv"
    return StreamingResponse(
        rows(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


def _stage_seconds(request: Request) -> int:
    return int(request.app.state.settings.sandbox_stage_seconds)


@router.get("/impacts/{tracking_id}")
async def impact_detail(request: Request, member: MemberDep, tracking_id: str) -> Response:
    modal = await request.app.state.db.run(
        views.track_modal,
        member,
        tracking_id,
        _base_url(request),
        _stage_seconds(request),
        _events(request),
        write=member.env == "sandbox",
    )
    if _is_fragment(request, "track-dialog-content"):
        return render(request, "impacts.html", {"modal": modal}, block="track")
    return await _impacts_page(request, member, _filters(), None, modal=modal)


@router.post("/impacts/{tracking_id}/cancel")
async def impact_cancel(
    request: Request,
    member: MemberDep,
    tracking_id: str,
    reason: Annotated[str, Form(max_length=5000)] = "",
) -> Response:
    db = request.app.state.db
    reason = reason.strip()
    errors: dict[str, str] = {}
    message = None
    if len(reason) > 200:
        errors["reason"] = "The reason can be at most 200 characters"
    else:
        try:
            message = await db.run(
                views.cancel,
                member,
                tracking_id,
                reason or None,
                _stage_seconds(request),
                _events(request),
                write=True,
            )
        except ValidationFailed as exc:
            errors["reason"] = exc.message[:1].upper() + exc.message[1:]
    modal = await db.run(
        views.track_modal,
        member,
        tracking_id,
        _base_url(request),
        _stage_seconds(request),
        _events(request),
    )
    modal.errors = errors
    modal.reason = reason
    if message:
        modal.message = (
            "Impact cancelled." if message == "impact cancelled" else message.capitalize() + "."
        )
    if _is_fragment(request, "track-dialog-content"):
        response = render(request, "impacts.html", {"modal": modal}, block="track")
        if message:
            # The list behind the modal is stale now: dashboard.js reloads it on close.
            response.headers["HX-Trigger"] = "impactChanged"
        return response
    return await _impacts_page(request, member, _filters(), None, modal=modal)


# Customers ---------------------------------------------------------------------------------------


@router.get("/customers")
async def customers(
    request: Request,
    member: MemberDep,
    email: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    text = email_from_query(email)
    errors: dict[str, str] = {}
    codec = request.app.state.cursor_codec
    try:
        data = await request.app.state.db.run(views.customers_page, member, text, cursor, codec)
    except ValidationFailed:
        data = await request.app.state.db.run(views.customers_page, member, text, None, codec)
        errors["cursor"] = "that page is no longer available; showing the first page"
    context = {"nav": "customers", "email": text or "", "errors": errors, **data}
    if _is_fragment(request, "customer-results"):
        return render(request, "customers.html", context, block="results")
    return render(request, "customers.html", context)


@router.get("/customers/{customer_id}")
async def customer(
    request: Request,
    member: MemberDep,
    customer_id: str,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    codec = request.app.state.cursor_codec
    db = request.app.state.db
    try:
        data = await db.run(views.customer_page, member, customer_id, cursor, codec)
    except ValidationFailed:
        data = await db.run(views.customer_page, member, customer_id, None, codec)
    link = await db.run(
        views.customer_page_link, member, customer_id, _base_url(request), write=True
    )
    return render(request, "customer.html", {"nav": "customers", "customer_page": link, **data})


@router.post("/customers/{customer_id}/rotate-link")
async def customer_rotate_link(request: Request, member: OwnerDep, customer_id: str) -> Response:
    """A new private page link for the customer; the old one stops working."""
    db = request.app.state.db
    await db.run(
        lambda s: views.customer_page_link(s, member, customer_id, _base_url(request), rotate=True),
        write=True,
    )
    return _redirect(request, f"/dashboard/customers/{quote(customer_id)}?rotated=1")


# Certificates ----------------------------------------------------------------------------------


@router.get("/certificates")
async def certificates(
    request: Request,
    member: MemberDep,
    status: Annotated[str | None, Query(max_length=20)] = None,
    after: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    chosen = status if status in ("in_progress", "completed", "void") else None
    data: dict[str, Any] = {"rows": [], "next_after": None}
    if member.env == "production":
        data = await request.app.state.db.run(
            views.certificates_page, member, chosen, after, _base_url(request)
        )
    return render(
        request, "certificates.html", {"nav": "certificates", "status": chosen or "", **data}
    )


# Public profile --------------------------------------------------------------------------


def _builder(request: Request) -> tuple[views.Builder, dict[str, str]]:
    params = request.query_params
    errors: dict[str, str] = {}
    default = views.Builder()
    types: tuple[str, ...] = default.types
    if "types" in params or "theme" in params:
        try:
            types = public.parse_types(params.getlist("types")) or default.types
        except ValidationFailed as exc:
            errors["types"] = exc.message.split(": ", 1)[-1]
    theme = params.get("theme") if params.get("theme") in ("light", "dark") else default.theme
    locale = params.get("locale") if params.get("locale") in ("en", "de") else default.locale
    badge = params.get("badge_type")
    badge_type = badge if badge in RECORD_KEYS else default.badge_type
    return views.Builder(types, str(theme), str(locale), str(badge_type)), errors


async def _profile_page(
    request: Request, member: Member, *, form: dict[str, Any] | None = None, **context: Any
) -> Response:
    builder, errors = _builder(request)
    data = await request.app.state.db.run(views.profile, member, builder, _base_url(request))
    settings = data["settings"]
    form = form or {
        "slug": settings.slug,
        "name": settings.name,
        "logo_url": settings.logo_url,
        "enabled": settings.enabled,
    }
    errors = {**errors, **context.pop("errors", {})}
    ctx = {"nav": "profile", "form": form, "errors": errors, **data, **context}
    block = "builder" if _is_fragment(request, "widget-builder") else None
    response = render(request, "profile.html", ctx, block=block)
    # The preview frames this server's own counter page, nothing else.
    response.headers["Content-Security-Policy"] = content_security_policy(frame_src=("'self'",))
    return response


@router.get("/profile")
async def profile(request: Request, member: MemberDep) -> Response:
    return await _profile_page(request, member, saved=bool(request.query_params.get("saved")))


@router.post("/profile")
async def save_profile(
    request: Request,
    member: OwnerDep,
    slug: Annotated[str, Form(max_length=200)] = "",
    name: Annotated[str, Form(max_length=1000)] = "",
    logo_url: Annotated[str, Form(max_length=2000)] = "",
    enabled: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    form = {"slug": slug, "name": name, "logo_url": logo_url, "enabled": enabled == "on"}
    db = request.app.state.db
    before = await db.run(public.profile_settings, member.account_id)
    try:
        after = await db.run(
            views.save_profile, member, slug, name, logo_url, enabled == "on", write=True
        )
    except ValidationFailed as exc:
        field, _, text = exc.message.partition(": ")
        return await _profile_page(
            request, member, form=form, errors={field: text[:1].upper() + text[1:]}
        )
    cache = getattr(request.app.state, "published_cache", None)
    if cache is not None:
        cache.forget(before.slug, after.slug)
    return _redirect(request, "/dashboard/profile?saved=1")


# Developers ----------------------------------------------------------------------------------


async def _developers(
    request: Request, member: Member, *, new_key: Any = None, errors: dict[str, str] | None = None
) -> Response:
    keys = await request.app.state.db.run(views.api_keys, member)
    return render(
        request,
        "developers.html",
        {"nav": "developers", "keys": keys, "new_key": new_key, "errors": errors or {}},
    )


@router.get("/developers")
async def developers(request: Request, member: MemberDep) -> Response:
    return await _developers(request, member)


@router.post("/developers/keys")
async def create_key(
    request: Request, member: OwnerDep, env: Annotated[str, Form(max_length=20)] = ""
) -> Response:
    try:
        issued = await request.app.state.db.run(views.create_key, member, env, write=True)
    except ValidationFailed:
        return await _developers(request, member, errors={"env": "Choose Production or Sandbox"})
    return await _developers(request, member, new_key=issued)


@router.post("/developers/keys/{prefix}/revoke")
async def revoke_key(request: Request, member: OwnerDep, prefix: str) -> Response:
    await request.app.state.db.run(views.revoke_key, member, prefix, write=True)
    return _redirect(request, "/dashboard/developers?revoked=" + prefix)


# Team --------------------------------------------------------------------------------------------


async def _team(request: Request, member: Member, **context: Any) -> Response:
    people = await request.app.state.db.run(views.team, member)
    errors = context.get("errors") or {}
    return render(
        request,
        "team.html",
        {"nav": "team", "people": people, "errors": errors, **context},
    )


@router.get("/team")
async def team(request: Request, member: MemberDep) -> Response:
    return await _team(request, member)


@router.post("/team/invite")
async def team_invite(
    request: Request,
    member: OwnerDep,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[str, Form(max_length=20)] = "member",
) -> Response:
    base = _base_url(request)
    settings = request.app.state.settings
    try:
        invitation = await request.app.state.db.run(
            lambda s: users.send_invite(s, views._account(s, member), email, role, base, settings),
            write=True,
        )
    except ValidationFailed as exc:
        field, _, text = exc.message.partition(": ")
        return await _team(
            request, member, errors={field: text[:1].upper() + text[1:]}, invite_email=email
        )
    return await _team(request, member, invited=invitation)


@router.post("/team/{user_pk}/remove")
async def team_remove(request: Request, member: OwnerDep, user_pk: int) -> Response:
    try:
        await request.app.state.db.run(views.remove_user, member, user_pk, write=True)
    except ValidationFailed as exc:
        return await _team(request, member, errors={"remove": exc.message.split(": ", 1)[-1]})
    if user_pk == member.user_pk:
        response = _redirect(request, "/dashboard/login")
        response.delete_cookie(SESSION_COOKIE, path="/dashboard")
        return response
    return _redirect(request, "/dashboard/team?removed=1")


@router.post("/team/password")
async def change_password(
    request: Request,
    member: MemberDep,
    current_password: Annotated[str, Form(max_length=2000)] = "",
    new_password: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    # The current password is checked like a sign-in, and throttled like one:
    # a session left open must not be a way to guess the password.
    wait = await request.app.state.signin_throttle.check(member.email, client_ip(request))
    if wait is not None:
        minutes = max(1, round(wait / 60))
        plural = "s" if minutes > 1 else ""
        held = f"Too many attempts. Try again in {minutes} minute{plural}."
        response = await _team(request, member, errors={"current_password": held})
        response.status_code = 429
        response.headers["Retry-After"] = str(wait)
        return response
    try:
        await request.app.state.db.run(
            users.change_password, member.user_pk, current_password, new_password, write=True
        )
    except ValidationFailed as exc:
        field, _, text = exc.message.partition(": ")
        return await _team(request, member, errors={field: text[:1].upper() + text[1:]})
    # Every session ended with the change; this browser gets a fresh one.
    return await _start_session(request, member.user_pk, "/dashboard/team?password_changed=1")


# Schedules ---------------------------------------------------------------------------------------

_SCHEDULE_FIELDS = (
    "impact_type",
    "amount",
    "day_of_month",
    "starts_on",
    "ends_on",
    "category",
    "customer_email",
    "customer_name",
)


async def _schedules(request: Request, member: Member, **context: Any) -> Response:
    rows = await request.app.state.db.run(views.schedules, member, request.app.state.cursor_codec)
    context["budget_banner"] = await request.app.state.db.run(views.budget_banner, member)
    return render(
        request,
        "schedules.html",
        {
            "nav": "schedules",
            "schedules": rows,
            "errors": context.pop("errors", {}),
            "form": context.pop("form", {}),
            "types": views.TYPE_LABELS,
            "units": views.TYPE_UNITS,
            **context,
        },
    )


@router.get("/schedules")
async def schedules(request: Request, member: MemberDep) -> Response:
    return await _schedules(request, member)


@router.post("/schedules")
async def create_schedule(request: Request, member: OwnerDep) -> Response:
    form = await request.form()
    raw = {name: str(form.get(name) or "").strip()[:300] for name in _SCHEDULE_FIELDS}
    fields: dict[str, Any] = {k: v for k, v in raw.items() if v}
    errors: dict[str, str] = {}
    for name in ("amount", "day_of_month"):
        if name in fields:
            try:
                fields[name] = int(fields[name].replace(",", ""))
            except ValueError:
                errors[name] = "Enter a whole number"
    for name in ("amount", "day_of_month", "starts_on", "impact_type"):
        if name not in fields and name not in errors:
            errors[name] = "Required"
    if not errors:
        try:
            made = await request.app.state.db.run(views.create_schedule, member, fields, write=True)
        except ValidationFailed as exc:
            fields_ = "|".join(_SCHEDULE_FIELDS)
            for part in re.split(rf"; (?=(?:{fields_}): )", exc.message):
                field, _, text = part.partition(": ")
                errors[field if field in _SCHEDULE_FIELDS else "form"] = (
                    text[:1].upper() + text[1:] if text else part
                )
        else:
            return _redirect(request, "/dashboard/schedules?created=" + made["id"])
    return await _schedules(request, member, errors=errors, form=raw)


@router.post("/schedules/{schedule_id}/{action}")
async def change_schedule(
    request: Request, member: OwnerDep, schedule_id: str, action: str
) -> Response:
    statuses = {"pause": "paused", "resume": "active"}
    if action not in (*statuses, "delete"):
        raise NotFound("no such action")
    await request.app.state.db.run(
        views.change_schedule,
        member,
        schedule_id[:32],
        statuses.get(action),
        action == "delete",
        write=True,
    )
    return _redirect(request, f"/dashboard/schedules?{action}d=" + quote(schedule_id[:32]))


# Plan and budget -------------------------------------------------------------------------------


async def _budget(request: Request, member: Member, **context: Any) -> Response:
    data = await request.app.state.db.run(views.plan_and_budget, member)
    return render(
        request,
        "budget.html",
        {
            "nav": "budget",
            "errors": context.pop("errors", {}),
            "types": views.TYPE_LABELS,
            "units": views.TYPE_UNITS,
            **data,
            **context,
        },
    )


@router.get("/budget")
async def budget(request: Request, member: MemberDep) -> Response:
    return await _budget(request, member)


@router.post("/budget")
async def set_budget(
    request: Request,
    member: OwnerDep,
    monthly: Annotated[str, Form(max_length=40)] = "",
    remove: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    try:
        await request.app.state.db.run(
            views.set_budget, member, None if remove else monthly, write=True
        )
    except ValidationFailed as exc:
        text = exc.message.partition(": ")[2] or exc.message
        return await _budget(
            request, member, errors={"monthly": text[:1].upper() + text[1:]}, entered=monthly
        )
    return _redirect(request, "/dashboard/budget?" + ("removed=1" if remove else "saved=1"))


# Webhooks ----------------------------------------------------------------------------------------

_WEBHOOK_FIELDS = ("url", "description", "event_types")
# Ids are short ([a-z0-9_]); anything longer is no endpoint of anyone's (404).
_ID_LENGTH = 40


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhooks_allow_private)


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _refusal(exc: Conflict | ValidationFailed) -> str:
    """A service's refusal as a sentence of the page ("the endpoint is disabled;
    ..."), without a field name or the API's own hint of which request to send."""
    text = re.sub(r" \((?:PATCH|POST|GET|DELETE) [^)]*\)", "", exc.message)
    text = re.sub(r"^[a-z_.]+: ", "", text)
    return _sentence(text.rstrip(".")) + "."


# A message of the schema's URL pattern names the regular expression, not the rule.
_URL_RULE = "must be an https:// (or http://) address like https://example.com/webhooks"


async def _webhooks(request: Request, member: Member, **context: Any) -> Response:
    rows = await request.app.state.db.run(
        views.webhook_endpoints, member, request.app.state.cursor_codec
    )
    return render(
        request,
        "webhooks.html",
        {
            "nav": "webhooks",
            "endpoints": rows,
            "endpoint": None,
            "errors": context.pop("errors", {}),
            "form": context.pop("form", {"event_types": []}),
            "event_types": EVENT_TYPES,
            **context,
        },
    )


async def _webhook(
    request: Request,
    member: Member,
    endpoint_id: str,
    cursor: str | None = None,
    **context: Any,
) -> Response:
    """One endpoint's page: its settings, secret, test button and delivery log."""
    db = request.app.state.db
    codec = request.app.state.cursor_codec
    try:
        data = await db.run(views.webhook_page, member, endpoint_id, cursor, codec)
    except ValidationFailed:
        # A cursor of another endpoint (or altered): start again from the first page.
        data = await db.run(views.webhook_page, member, endpoint_id, None, codec)
        context["problem"] = "That page of the log is no longer available; showing the newest."
        cursor = None
    return render(
        request,
        "webhooks.html",
        {"nav": "webhooks", "cursor": cursor, "event_types": EVENT_TYPES, **data, **context},
    )


def _back(request: Request, endpoint_id: str, back: str, flag: str) -> Response:
    if back == "endpoint":
        return _redirect(request, f"/dashboard/webhooks/{quote(endpoint_id)}?{flag}=1")
    return _redirect(request, f"/dashboard/webhooks?{flag}=" + quote(endpoint_id))


@router.get("/webhooks")
async def webhooks(request: Request, member: MemberDep) -> Response:
    return await _webhooks(request, member)


@router.post("/webhooks")
async def create_webhook(request: Request, member: OwnerDep) -> Response:
    form = await request.form()
    raw = {
        # One character over each limit, so that too long is refused, not cut.
        "url": str(form.get("url") or "").strip()[: MAX_URL_LENGTH + 1],
        "description": str(form.get("description") or "").strip()[:501],
        "event_types": [str(v)[:100] for v in form.getlist("event_types")][:50],
    }
    fields: dict[str, Any] = {k: v for k, v in raw.items() if v}
    errors: dict[str, str] = {}
    if not raw["url"]:
        errors["url"] = "Enter the address that receives the events, like https://example.com/hooks"
    else:
        try:
            body = views.webhook_form(fields)
            url = await webhook_service.check_url(body.url, allow_private=_allow_private(request))
            made = await request.app.state.db.run(
                lambda s: views.create_webhook(s, member, body, url), write=True
            )
        except Conflict as exc:  # the environment's limit of endpoints
            errors["url"] = _refusal(exc)
        except ValidationFailed as exc:
            names = "|".join(_WEBHOOK_FIELDS)
            for part in re.split(rf"; (?=(?:{names})[.:])", exc.message):
                where, _, text = part.partition(": ")
                field = where.split(".")[0]
                if text.startswith("String should match pattern"):
                    text = _URL_RULE
                errors[field if field in _WEBHOOK_FIELDS else "form"] = (
                    _sentence(text) if text else part
                )
        else:
            return _redirect(request, f"/dashboard/webhooks/{quote(made['id'])}?created=1")
    return await _webhooks(request, member, errors=errors, form=raw)


@router.get("/webhooks/{endpoint_id}")
async def webhook(
    request: Request,
    member: MemberDep,
    endpoint_id: str,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    return await _webhook(request, member, endpoint_id[:_ID_LENGTH], cursor or None)


@router.post("/webhooks/{endpoint_id}/secret")
async def webhook_secret(request: Request, member: OwnerDep, endpoint_id: str) -> Response:
    """The signing secret, shown on the answer to this POST only (never in a
    page a GET, a cache or the history can bring back)."""
    endpoint_id = endpoint_id[:_ID_LENGTH]
    secret = await request.app.state.db.run(views.reveal_webhook_secret, member, endpoint_id)
    return await _webhook(request, member, endpoint_id, secret=secret)


@router.post("/webhooks/{endpoint_id}/rotate-secret")
async def webhook_rotate_secret(request: Request, member: OwnerDep, endpoint_id: str) -> Response:
    endpoint_id = endpoint_id[:_ID_LENGTH]
    secret = await request.app.state.db.run(
        views.rotate_webhook_secret, member, endpoint_id, write=True
    )
    return await _webhook(request, member, endpoint_id, secret=secret, rotated=True)


@router.post("/webhooks/{endpoint_id}/test")
async def webhook_test(request: Request, member: OwnerDep, endpoint_id: str) -> Response:
    """Send a ``ping`` now (as POST /v1/webhook_endpoints/{id}/test does) and show the attempt."""
    endpoint_id = endpoint_id[:_ID_LENGTH]
    db = request.app.state.db
    try:
        settings = request.app.state.settings
        ping = await db.run(
            views.queue_webhook_test,
            member,
            endpoint_id,
            settings.webhook_lease_seconds,
            write=True,
        )
    except (Conflict, ValidationFailed) as exc:
        return await _webhook(request, member, endpoint_id, problem=_refusal(exc))
    await delivery.deliver_now(db, settings, ping.message_pk, ping.lease)
    attempt = await db.run(views.webhook_test_result, ping.message_pk)
    return await _webhook(
        request, member, endpoint_id, test={"event_id": ping.event_id, "attempt": attempt}
    )


@router.post("/webhooks/{endpoint_id}/enable")
async def webhook_enable(
    request: Request,
    member: OwnerDep,
    endpoint_id: str,
    back: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    return await _webhook_enabled(request, member, endpoint_id[:_ID_LENGTH], True, back)


@router.post("/webhooks/{endpoint_id}/disable")
async def webhook_disable(
    request: Request,
    member: OwnerDep,
    endpoint_id: str,
    back: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    return await _webhook_enabled(request, member, endpoint_id[:_ID_LENGTH], False, back)


async def _webhook_enabled(
    request: Request, member: Member, endpoint_id: str, enabled: bool, back: str
) -> Response:
    await request.app.state.db.run(
        lambda s: views.set_webhook_enabled(s, member, endpoint_id, enabled), write=True
    )
    return _back(request, endpoint_id, back, "enabled" if enabled else "disabled")


@router.post("/webhooks/{endpoint_id}/delete")
async def webhook_delete(request: Request, member: OwnerDep, endpoint_id: str) -> Response:
    endpoint_id = endpoint_id[:_ID_LENGTH]
    await request.app.state.db.run(views.delete_webhook, member, endpoint_id, write=True)
    return _redirect(request, "/dashboard/webhooks?deleted=" + quote(endpoint_id))


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend")
async def webhook_resend(
    request: Request, member: OwnerDep, endpoint_id: str, delivery_id: str
) -> Response:
    endpoint_id = endpoint_id[:_ID_LENGTH]
    try:
        queued = await request.app.state.db.run(
            views.resend_webhook, member, endpoint_id, delivery_id[:_ID_LENGTH], write=True
        )
    except (Conflict, ValidationFailed) as exc:
        return await _webhook(request, member, endpoint_id, problem=_refusal(exc))
    return _redirect(
        request, f"/dashboard/webhooks/{quote(endpoint_id)}?resent=" + quote(queued["event_id"])
    )
