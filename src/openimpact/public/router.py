"""Public impact over HTTP. No API key: these are meant to be embedded and shared.

    /impact/{slug}                         profile page (en, de) with Open Graph tags
    /impact/{slug}/share.png               its 1200x630 share image
    /widget.js                             the Impact Counter script
    /widget/{slug}/counter                 the same counter as an iframe page
    /badge/{slug}/{type}.svg | .json       badge, and shields.io endpoint JSON
    /public/v1/profiles/{slug}             the JSON behind them
    /my-impact/{token}                     one customer's private impact page
    /public/static/{file}                  the pages' stylesheets

All but the script and the stylesheets are rate limited per client address
(``OPENIMPACT_PUBLIC_RATE_LIMIT``) before they read anything. An unknown
slug and a profile that is off are the same 404 everywhere. Embeddable answers
(JSON, badges, the script) are open to every origin (CORS ``*``,
``Cross-Origin-Resource-Policy: cross-origin``), carry an ETag and answer a
matching ``If-None-Match`` with 304.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode, urlsplit

import anyio.to_thread
import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response
from limits.errors import StorageError

from openimpact.certificates.service import UNITS, urls
from openimpact.errors import NotFound, OpenImpactError, RateLimited
from openimpact.kit import RECORD_KEYS, error_responses, json_error_responses
from openimpact.public import badges, i18n, service
from openimpact.public.look import ACCENTS, ICON_PATHS
from openimpact.public.schemas import EndpointBadge, PublicProfileOut
from openimpact.public.service import MISS, PublishedCache, PublishedProfile
from openimpact.public.share import render_share_png
from openimpact.ratelimit import Limiter, make_limiter
from openimpact.timeutil import ms_to_datetime
from openimpact.web import content_security_policy, html_page, template_environment

log = logging.getLogger(__name__)

router = APIRouter(tags=["public"])

_HERE = Path(__file__).parent
_CACHE = "public, max-age=60"
_EMBEDDABLE = {
    "Access-Control-Allow-Origin": "*",
    "Cross-Origin-Resource-Policy": "cross-origin",
    "X-Content-Type-Options": "nosniff",
}

LocaleQuery = Annotated[
    str | None,
    Query(description="en or de; otherwise Accept-Language decides, and en is the fallback"),
]


@dataclass(frozen=True, slots=True)
class _Body:
    data: bytes
    etag: str


def _body(data: bytes) -> _Body:
    return _Body(data, '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"')


# Static files, read once -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Asset:
    body: _Body
    media_type: str
    version: str


def _asset(text: str, media_type: str) -> _Asset:
    body = _body(text.encode("utf-8"))
    return _Asset(body, media_type, body.etag.strip('"')[:12])


def _widget_source(counter_css: str) -> str:
    """widget.js with its strings, styles and icons filled in, from the same
    sources as the pages (i18n.py, counter.css, look.py)."""
    source = (_HERE / "static" / "widget.js").read_text(encoding="utf-8")
    for placeholder, value in (
        ('"__OPENIMPACT_STRINGS__"', i18n.widget_strings()),
        ('"__OPENIMPACT_CSS__"', counter_css),
        ('"__OPENIMPACT_ICONS__"', ICON_PATHS),
    ):
        if placeholder not in source:
            raise RuntimeError(f"widget.js lost its placeholder {placeholder}")
        source = source.replace(placeholder, json.dumps(value, ensure_ascii=False))
    return source


def _load_assets() -> dict[str, _Asset]:
    counter_css = (_HERE / "static" / "counter.css").read_text(encoding="utf-8")
    return {
        "public.css": _asset(
            (_HERE / "static" / "public.css").read_text(encoding="utf-8"), "text/css"
        ),
        "counter.css": _asset(counter_css, "text/css"),
        "widget.js": _asset(_widget_source(counter_css), "text/javascript"),
    }


_ASSETS = _load_assets()


def _static_url(name: str) -> str:
    # Versioned, so the pages can let browsers keep the file for a day.
    return f"/public/static/{name}?v={_ASSETS[name].version}"


_TEMPLATES = template_environment(_HERE / "templates")
_TEMPLATES.globals.update(
    icons=ICON_PATHS,
    static=_static_url,
    fmt=i18n,
    locales=i18n.LOCALES,
    language_names={locale: i18n.text(locale, "language_name") for locale in i18n.LOCALES},
)


# Shared pieces -----------------------------------------------------------------------------


# Building request.base_url costs tens of microseconds, a fair share of a
# cached public answer; it only depends on these parts of the request, so each
# is built once (at most _MAX_BASES of them: the Host header is the client's).
_BASES: dict[tuple[Any, ...], str] = {}
_MAX_BASES = 256


def _base_url(request: Request) -> str:
    configured: str | None = request.app.state.settings.public_url
    if configured:
        return configured.rstrip("/")
    scope = request.scope
    host = request.headers.get("host")
    key = (scope["scheme"], host, scope.get("root_path", ""), None if host else scope.get("server"))
    base = _BASES.get(key)
    if base is None:
        base = str(request.base_url).rstrip("/")
        if len(_BASES) < _MAX_BASES:
            _BASES[key] = base
    return base


def _client_address(request: Request) -> str:
    """Whom a request counts against: its IP address, or for IPv6 its /64
    (one subscriber's whole network, which a single host can roam freely)."""
    host = request.client.host if request.client else "unknown"
    if ":" not in host:
        return host[:64]  # IPv4 (or a name a test client gives): as it is
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:64]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)  # a dual-stack socket's IPv4 client
    return str(ipaddress.ip_network(f"{address}/64", strict=False))


def _limiter(request: Request) -> Limiter | None:
    state = request.app.state
    if not hasattr(state, "public_limiter"):
        settings = state.settings
        state.public_limiter = make_limiter(settings.public_rate_limit, settings.redis_url)
    limiter: Limiter | None = state.public_limiter
    return limiter


async def limit_by_address(request: Request) -> None:
    """The per-address budget of the public endpoints (``limits``, in memory
    or in Redis like the API keys' budget, under a namespace of its own)."""
    limiter = _limiter(request)
    if limiter is None:
        return
    who = _client_address(request)
    try:
        if await limiter.strategy.hit(limiter.item, "public", who):
            return
        stats = await limiter.strategy.get_window_stats(limiter.item, "public", who)
    except StorageError as exc:
        # As for API keys: a lost counter must not take the pages down.
        log.warning("rate limit storage unavailable, request not limited: %s", exc)
        return
    retry_after = max(1, math.ceil(stats.reset_time - time.time()))
    item = limiter.item
    per = (
        f"{item.multiples} {item.GRANULARITY.name}s"
        if item.multiples > 1
        else item.GRANULARITY.name
    )
    raise RateLimited(
        f"rate limit of {item.amount} requests per {per} exceeded for this address; "
        f"retry after {retry_after}s",
        headers={"Retry-After": str(retry_after), "Access-Control-Allow-Origin": "*"},
    )


_LIMITED = [Depends(limit_by_address)]


def _cache(request: Request) -> PublishedCache:
    state = request.app.state
    if not hasattr(state, "published_cache"):
        state.published_cache = PublishedCache()
    cache: PublishedCache = state.published_cache
    return cache


@contextmanager
def _readable_errors() -> Iterator[None]:
    """Errors of the embeddable answers carry CORS too, so a script on another
    site (the widget) can read the 404 or 400 instead of a network error."""
    try:
        yield
    except OpenImpactError as exc:
        exc.headers = {**exc.headers, "Access-Control-Allow-Origin": "*"}
        raise


async def _published(request: Request, slug: str) -> PublishedProfile:
    key = service.normalize_slug(slug)
    if key is None:
        raise NotFound(service.NO_PROFILE)
    cache = _cache(request)
    found = cache.get(key)
    if found is MISS:
        try:
            found = await request.app.state.db.run(service.published_profile, key)
        except NotFound:
            found = None
        cache.put(key, found)
    if found is None:
        raise NotFound(service.NO_PROFILE)
    assert isinstance(found, PublishedProfile)
    return found


def _matches(request: Request, etag: str) -> bool:
    header = request.headers.get("if-none-match")
    if not header:
        return False
    # RFC 9110 §13.1.2: weak comparison, a list of tags, or "*".
    tags = {tag.strip().removeprefix("W/") for tag in header[:2000].split(",")}
    return "*" in tags or etag in tags


def _cacheable(
    request: Request,
    body: _Body,
    media_type: str,
    *,
    cache_control: str = _CACHE,
    headers: dict[str, str] | None = None,
) -> Response:
    all_headers = {
        **_EMBEDDABLE,
        "Cache-Control": cache_control,
        "ETag": body.etag,
        **(headers or {}),
    }
    if _matches(request, body.etag):
        return Response(status_code=304, headers=all_headers)
    return Response(body.data, media_type=media_type, headers=all_headers)


def _profile_url(base: str, slug: str) -> str:
    return f"{base}/impact/{slug}"


def _profile_body(profile: PublishedProfile, base: str) -> dict[str, Any]:
    return {
        "slug": profile.slug,
        "name": profile.name,
        "logo_url": profile.logo_url,
        "profile_url": _profile_url(base, profile.slug),
        "totals": dict(profile.totals),
        "units": UNITS,
    }


# The answers are pure functions of the snapshot and the request's options,
# and are asked for far more often than the snapshot changes: each is built
# (and hashed for its ETag) once.
@lru_cache(maxsize=1024)
def _profile_json(profile: PublishedProfile, base: str) -> _Body:
    return _body(orjson.dumps(_profile_body(profile, base)))


def _locale(request: Request, requested: str | None) -> str:
    return i18n.pick_locale(requested, request.headers.get("accept-language"))


_JSON_304: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"}
}


# The public JSON ---------------------------------------------------------------------------


@router.get(
    "/public/v1/profiles/{slug}",
    response_model=PublicProfileOut,
    responses=error_responses(400, 404, 429) | _JSON_304,
    dependencies=_LIMITED,
)
async def public_profile(request: Request, slug: str) -> Response:
    """A public profile and its lifetime production totals (direct plus on
    behalf of customers, cancelled impacts excluded). Open to every origin;
    `Cache-Control: public, max-age=60`, an ETag, and 304 for a matching
    `If-None-Match`. A change shows within a few seconds. An unknown slug and
    a profile that is off are the same 404."""
    with _readable_errors():
        profile = await _published(request, slug)
    return _cacheable(request, _profile_json(profile, _base_url(request)), "application/json")


@router.options("/public/v1/profiles/{slug}", include_in_schema=False)
@router.options("/badge/{slug}/{name}", include_in_schema=False)
async def preflight(request: Request) -> Response:
    """CORS preflight, for browser code that revalidates with If-None-Match."""
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Origin": "*",
            "Access-Control-Allow-Methods": "GET, HEAD",
            "Access-Control-Allow-Headers": "If-None-Match",
            "Access-Control-Max-Age": "86400",
        },
    )


# Badges ------------------------------------------------------------------------------------


def _badge_type(name: str) -> str:
    if name not in RECORD_KEYS:
        raise NotFound(f"no badge for type '{name[:40]}'; types: {', '.join(RECORD_KEYS)}")
    return name


@dataclass(frozen=True, slots=True)
class _Badge:
    label: str
    message: str
    fill: str
    json_color: str


@lru_cache(maxsize=1024)
def _badge(
    profile: PublishedProfile, kind: str, label: str | None, color: str | None, locale: str | None
) -> _Badge:
    loc = i18n.pick_locale(locale, None)
    shown_label = badges.check_label(label) if label is not None else i18n.badge_label(kind, loc)
    if color is not None:
        fill, json_color = badges.parse_color(color)
    else:
        fill = ACCENTS[kind]
        json_color = fill.removeprefix("#")
    message = i18n.badge_message(kind, profile.total(kind), loc)
    return _Badge(shown_label, message, fill, json_color)


@lru_cache(maxsize=1024)
def _badge_svg(badge: _Badge) -> _Body:
    return _body(badges.badge_svg(badge.label, badge.message, badge.fill).encode("utf-8"))


@lru_cache(maxsize=1024)
def _badge_json(badge: _Badge) -> _Body:
    return _body(
        orjson.dumps(
            {
                "schemaVersion": 1,
                "label": badge.label,
                "message": badge.message,
                "color": badge.json_color,
            }
        )
    )


# The badges read their three options from the query string themselves:
# FastAPI's per-parameter machinery cost more than the rest of a cached badge
# (about 80 µs a parameter, measured with bench/), and badges are the most
# requested public answer after the JSON. The schema still states them.
_BADGE_OPTIONS = {
    "parameters": [
        {
            "name": "label",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": badges.MAX_LABEL},
            "description": "The left-hand text; the type's name by default, empty for none",
        },
        {
            "name": "color",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "A shields.io colour name (brightgreen, blue, ...) or a hex colour",
        },
        {
            "name": "locale",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "en or de (default en)",
        },
    ]
}


def _badge_options(request: Request) -> tuple[str | None, str | None, str | None]:
    query = request.query_params
    return query.get("label"), query.get("color"), query.get("locale")


_SVG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/svg+xml": {}}, "description": "A shields.io-style SVG badge"}
}


@router.get(
    "/badge/{slug}/{impact_type}.svg",
    response_class=Response,
    responses=_SVG_RESPONSE | json_error_responses(400, 404, 429) | _JSON_304,
    dependencies=_LIMITED,
    openapi_extra=_BADGE_OPTIONS,
)
async def badge_svg(request: Request, slug: str, impact_type: str) -> Response:
    """A badge with one lifetime total, e.g. `trees planted | 1,234`. An
    unknown type is a 404 (there is no such badge), a bad `color` or `label` a 400."""
    with _readable_errors():
        kind = _badge_type(impact_type)
        profile = await _published(request, slug)
        badge = _badge(profile, kind, *_badge_options(request))
    return _cacheable(
        request,
        _badge_svg(badge),
        "image/svg+xml; charset=utf-8",
        # Opened on its own, the SVG is a document: nothing in it may run.
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"},
    )


@router.get(
    "/badge/{slug}/{impact_type}.json",
    response_model=EndpointBadge,
    responses=error_responses(400, 404, 429) | _JSON_304,
    dependencies=_LIMITED,
    openapi_extra=_BADGE_OPTIONS,
)
async def badge_json(request: Request, slug: str, impact_type: str) -> Response:
    """The badge in shields.io's endpoint schema, for
    `https://img.shields.io/endpoint?url=<this URL>`."""
    with _readable_errors():
        kind = _badge_type(impact_type)
        profile = await _published(request, slug)
        badge = _badge(profile, kind, *_badge_options(request))
    return _cacheable(request, _badge_json(badge), "application/json")


# Pages -------------------------------------------------------------------------------------

_HTML: dict[int | str, dict[str, Any]] = {200: {"content": {"text/html": {}}}}


_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "1200x630 PNG"}
}


def _share_links(profile_url: str, title: str) -> dict[str, str]:
    def encode(params: dict[str, str]) -> str:
        return urlencode(params, quote_via=quote)

    return {
        "LinkedIn": "https://www.linkedin.com/sharing/share-offsite/?"
        + encode({"url": profile_url}),
        "X": "https://twitter.com/intent/tweet?" + encode({"url": profile_url, "text": title}),
        "Facebook": "https://www.facebook.com/sharer/sharer.php?" + encode({"u": profile_url}),
    }


def _date(locale: str) -> Callable[[int], str]:
    return lambda ms: i18n.long_date(ms_to_datetime(ms), locale)


def _page_headers_with_logo(logo_url: str | None) -> dict[str, str]:
    """An http:// logo is allowed (logo_url accepts http and https), and the
    default img-src only allows https: so such a logo's origin is added."""
    if not logo_url or not logo_url.lower().startswith("http:"):
        return {}
    parts = urlsplit(logo_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return {
        "Content-Security-Policy": content_security_policy(
            img_src=("'self'", "data:", "https:", origin)
        )
    }


@router.get(
    "/impact/{slug}",
    response_class=HTMLResponse,
    responses=_HTML | json_error_responses(400, 404, 429),
    dependencies=_LIMITED,
)
async def profile_page(request: Request, slug: str, locale: LocaleQuery = None) -> HTMLResponse:
    """The public impact profile: name and logo, lifetime totals per type,
    the projects that received them and the latest completed certificates."""
    profile = await _published(request, slug)
    loc = _locale(request, locale)
    page: service.ProfilePage = await request.app.state.db.run(service.profile_page, profile, loc)
    base = _base_url(request)
    profile_url = _profile_url(base, profile.slug)
    shown = [(kind, amount) for kind, amount in profile.totals if amount > 0]
    summary = ", ".join(i18n.amount(kind, amount, loc) for kind, amount in shown)
    title = i18n.text(loc, "share_title", name=profile.name)
    description = (
        i18n.text(loc, "share_description", totals=summary, name=profile.name)
        if summary
        else i18n.text(loc, "share_nothing", name=profile.name)
    )
    html = _TEMPLATES.get_template("profile.html").render(
        page=page,
        locale=loc,
        t=i18n.translator(loc),
        date=_date(loc),
        shown=shown,
        profile_url=profile_url,
        image_url=f"{profile_url}/share.png" + (f"?locale={loc}" if loc != "en" else ""),
        share_title=title,
        description=description,
        share_links=_share_links(profile_url, title),
        certificate_url=lambda certificate_id: urls(base, certificate_id).page,
    )
    return html_page(
        html,
        private=False,
        headers={
            "Cache-Control": _CACHE,
            "Vary": "Accept-Language",
            **_page_headers_with_logo(profile.logo_url),
        },
    )


@lru_cache(maxsize=256)
def _share_png(name: str, totals: tuple[tuple[str, int], ...], address: str, locale: str) -> bytes:
    return render_share_png(name, totals, address, locale)


@router.get(
    "/impact/{slug}/share.png",
    response_class=Response,
    responses=_PNG | json_error_responses(400, 404, 429),
    dependencies=_LIMITED,
)
async def profile_share_image(request: Request, slug: str, locale: LocaleQuery = None) -> Response:
    """The profile's 1200x630 share image (og:image, twitter:image)."""
    profile = await _published(request, slug)
    loc = i18n.pick_locale(locale, None)
    address = _profile_url(_base_url(request), profile.slug).split("://", 1)[-1]
    data = await anyio.to_thread.run_sync(_share_png, profile.name, profile.totals, address, loc)
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": _CACHE, "Cross-Origin-Resource-Policy": "cross-origin"},
    )


@router.get(
    "/widget/{slug}/counter",
    response_class=HTMLResponse,
    responses=_HTML | json_error_responses(400, 404, 429),
    dependencies=_LIMITED,
)
async def counter_page(
    request: Request,
    slug: str,
    types: Annotated[
        str | None,
        Query(
            description="Comma-separated record keys, e.g. tree_planted,waste_removed",
            pattern=service.TYPES_PATTERN,
        ),
    ] = None,
    theme: Annotated[Literal["light", "dark"], Query(description="light or dark")] = "light",
    locale: LocaleQuery = None,
) -> HTMLResponse:
    """The Impact Counter as a page any site may frame, for sites that allow
    no scripts: `<iframe src="…/widget/{slug}/counter?types=…&theme=…&locale=…">`."""
    chosen = service.parse_types(types)
    service.check_theme(theme)
    profile = await _published(request, slug)
    loc = _locale(request, locale)
    html = _TEMPLATES.get_template("counter.html").render(
        name=profile.name,
        profile_url=_profile_url(_base_url(request), profile.slug)
        + (f"?locale={loc}" if loc != "en" else ""),
        totals=[(kind, profile.total(kind)) for kind in (chosen or profile.shown_types)],
        theme=theme,
        locale=loc,
        t=i18n.translator(loc),
    )
    return html_page(
        html,
        private=False,
        frame_ancestors="*",
        headers={"Cache-Control": _CACHE, "Vary": "Accept-Language"},
    )


@router.get(
    "/my-impact/{token}",
    response_class=HTMLResponse,
    responses=_HTML | json_error_responses(400, 404, 429),
    dependencies=_LIMITED,
)
async def customer_impact_page(
    request: Request, token: str, locale: LocaleQuery = None
) -> HTMLResponse:
    """One customer's impacts with the business, their stages and
    certificates, at the private link the business gave them."""
    loc = _locale(request, locale)
    view: service.CustomerPageView = await request.app.state.db.run(
        service.customer_page, token, loc
    )
    base = _base_url(request)
    html = _TEMPLATES.get_template("customer.html").render(
        view=view,
        locale=loc,
        t=i18n.translator(loc),
        date=_date(loc),
        certificate_url=lambda certificate_id: urls(base, certificate_id).page,
    )
    # Private: never cached or indexed, and the token never leaves in a Referer.
    return html_page(
        html, headers={"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex, nofollow"}
    )


# Static files ------------------------------------------------------------------------------


@router.get("/widget.js", include_in_schema=False)
async def widget_script(request: Request) -> Response:
    asset = _ASSETS["widget.js"]
    return _cacheable(
        request,
        asset.body,
        "text/javascript; charset=utf-8",
        # Sites link it by a fixed address: short, so a new version spreads.
        cache_control="public, max-age=300",
    )


@router.get("/public/static/{name}", include_in_schema=False)
async def static_file(request: Request, name: str) -> Response:
    asset = _ASSETS.get(name)
    if asset is None:
        raise NotFound("no such file")
    return _cacheable(
        request,
        asset.body,
        f"{asset.media_type}; charset=utf-8",
        cache_control="public, max-age=86400",
    )
