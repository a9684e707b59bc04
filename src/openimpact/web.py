"""What every server-rendered page shares: one way to build a template
environment, and the security headers that go with a page.

Pages (dashboard, public profile, widget, certificates) are Jinja2 with
autoescaping on for every template, so user-supplied text (customer names,
metadata, reasons) is escaped wherever it is shown. Scripts come only from
this server (``script-src 'self'``): no inline script, no CDN. Data a script
needs travels in a ``data-*`` attribute (Jinja's ``tojson``, made safe for
HTML), which the browser never executes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

# Where the track view may embed a map or a partner's video from.
EMBED_SOURCES = (
    "https://www.google.com",
    "https://maps.google.com",
    "https://www.youtube-nocookie.com",
    "https://www.youtube.com",
    "https://player.vimeo.com",
)


def template_environment(*folders: Path) -> Environment:
    env = Environment(
        loader=FileSystemLoader([str(folder) for folder in folders]),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda n: f"{int(n):,}" if n is not None else ""
    return env


def content_security_policy(
    *,
    frame_ancestors: str = "'none'",
    frame_src: Iterable[str] = (),
    img_src: Iterable[str] = ("'self'", "data:", "https:"),
    form_action: str = "'self'",
    script_src: Iterable[str] = ("'self'",),
    style_src: Iterable[str] = ("'self'",),
) -> str:
    frames = " ".join(frame_src) or "'none'"
    return "; ".join(
        (
            "default-src 'none'",
            f"script-src {' '.join(script_src)}",
            f"style-src {' '.join(style_src)}",
            f"img-src {' '.join(img_src)}",
            "font-src 'self'",
            "connect-src 'self'",
            f"frame-src {frames}",
            "media-src https:",
            f"form-action {form_action}",
            "base-uri 'none'",
            f"frame-ancestors {frame_ancestors}",
        )
    )


def page_headers(
    *, frame_ancestors: str = "'none'", frame_src: Iterable[str] = (), private: bool = True
) -> dict[str, str]:
    """Headers for an HTML page: a strict CSP, no sniffing, no referrer
    leaking tracking ids to other sites, and no caching of private pages."""
    headers = {
        "Content-Security-Policy": content_security_policy(
            frame_ancestors=frame_ancestors, frame_src=frame_src
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }
    if frame_ancestors == "'none'":
        headers["X-Frame-Options"] = "DENY"
    if private:
        headers["Cache-Control"] = "no-store"
    return headers


def html_page(
    html: str, *, status_code: int = 200, headers: dict[str, str] | None = None, **options: Any
) -> HTMLResponse:
    return HTMLResponse(
        html, status_code=status_code, headers={**page_headers(**options), **(headers or {})}
    )
