"""Public certificate pages, images, PDFs and the verification endpoint.

No API key: a certificate is meant to be shared (seed 000: "a URL that can be
shared on social media or included in marketing"). Only production impacts
have certificates; an unknown id, a sandbox impact or a malformed id is the
same JSON 404.

    /certificate/{tracking_id}                the address track returns
    /certificates/{certificate_id}            the canonical address (QR codes)
        .../image.png  or  {certificate_id}.png    1200x630 social image
        .../certificate.pdf  or  {certificate_id}.pdf  printable A4
    /v1/certificates/{certificate_id}         JSON facts for verification
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from openimpact.certificates import service
from openimpact.certificates.render import (
    PAGE_CSP_SOURCES,
    CertificateView,
    render_html,
    render_pdf,
    render_png,
)
from openimpact.impacts.models import Impact
from openimpact.kit import error_responses, json_error_responses
from openimpact.web import content_security_policy, page_headers

router = APIRouter(tags=["certificates"])

# No length limits: any id that is not a certificate's is the same 404.
CertificateId = Annotated[str, Path(description="The certificate ID")]
TrackingId = Annotated[str, Path(description="user_id-time_utc")]
# The pages, images and PDFs are not JSON, but their 404 is (json_error_responses).
_NOT_FOUND = json_error_responses(404)
# Short: an in-progress certificate changes as the impact moves on.
_CACHE = "public, max-age=300"


def _base_url(request: Request) -> str:
    return request.app.state.settings.public_url or str(request.base_url)


async def _view(
    request: Request, find: Callable[[Session, str], Impact], key: str
) -> CertificateView:
    base = _base_url(request)

    def load(session: Session) -> CertificateView:
        return service.certificate_view(session, find(session, key), base)

    view: CertificateView = await request.app.state.db.run(load)
    return view


# Renderings are pure functions of the view, which holds every fact shown
# (status and stage times included), so a cached rendering is never stale.
@lru_cache(maxsize=128)
def _png(view: CertificateView) -> bytes:
    return render_png(view)


@lru_cache(maxsize=128)
def _pdf(view: CertificateView) -> bytes:
    return render_pdf(view)


async def _html(view: CertificateView) -> HTMLResponse:
    # Its own style and script run by their hashes, nothing else inline; the
    # partner's map and video are embedded from https addresses.
    style, script = PAGE_CSP_SOURCES
    headers = page_headers(private=False, frame_src=("https:",))
    headers["Content-Security-Policy"] = content_security_policy(
        frame_src=("https:",), style_src=("'self'", style), script_src=("'self'", script)
    )
    return HTMLResponse(render_html(view), headers={**headers, "Cache-Control": _CACHE})


async def _image(view: CertificateView) -> Response:
    data = await anyio.to_thread.run_sync(_png, view)
    return Response(data, media_type="image/png", headers={"Cache-Control": _CACHE})


async def _document(view: CertificateView) -> Response:
    data = await anyio.to_thread.run_sync(_pdf, view)
    return Response(
        data,
        media_type="application/pdf",
        headers={
            "Cache-Control": _CACHE,
            "Content-Disposition": f'inline; filename="certificate-{view.certificate_id}.pdf"',
        },
    )


_HTML: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/html": {}}, "description": "The certificate page"}
}
_PNG: dict[int | str, dict[str, Any]] = {
    200: {"content": {"image/png": {}}, "description": "1200x630 PNG for social posts"}
}
_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "Printable A4 PDF"}
}


# The suffixed forms come first: {certificate_id} alone would match "ID.png" too.
@router.get(
    "/certificates/{certificate_id}.png", response_class=Response, responses=_PNG | _NOT_FOUND
)
async def certificate_png_short(request: Request, certificate_id: CertificateId) -> Response:
    """The certificate as a 1200x630 PNG (same as .../image.png)."""
    return await _image(await _view(request, service.by_certificate_id, certificate_id))


@router.get(
    "/certificates/{certificate_id}.pdf", response_class=Response, responses=_PDF | _NOT_FOUND
)
async def certificate_pdf_short(request: Request, certificate_id: CertificateId) -> Response:
    """The certificate as a printable A4 PDF (same as .../certificate.pdf)."""
    return await _document(await _view(request, service.by_certificate_id, certificate_id))


@router.get(
    "/certificates/{certificate_id}", response_class=HTMLResponse, responses=_HTML | _NOT_FOUND
)
async def certificate_page(request: Request, certificate_id: CertificateId) -> HTMLResponse:
    """The public certificate page: what was done, by whom, where, with which partner,
    the stage timeline, share links and Open Graph tags for link previews."""
    return await _html(await _view(request, service.by_certificate_id, certificate_id))


@router.get(
    "/certificates/{certificate_id}/image.png",
    response_class=Response,
    responses=_PNG | _NOT_FOUND,
)
async def certificate_image(request: Request, certificate_id: CertificateId) -> Response:
    """The certificate as a 1200x630 PNG with a QR code to its page."""
    return await _image(await _view(request, service.by_certificate_id, certificate_id))


@router.get(
    "/certificates/{certificate_id}/certificate.pdf",
    response_class=Response,
    responses=_PDF | _NOT_FOUND,
)
async def certificate_pdf(request: Request, certificate_id: CertificateId) -> Response:
    """The certificate as a printable A4 PDF with a QR code to its page."""
    return await _document(await _view(request, service.by_certificate_id, certificate_id))


@router.get("/certificate/{tracking_id}", response_class=HTMLResponse, responses=_HTML | _NOT_FOUND)
async def tracked_certificate_page(request: Request, tracking_id: TrackingId) -> HTMLResponse:
    """The certificate page at the address track returns (`certificate`)."""
    return await _html(await _view(request, service.by_tracking_id, tracking_id))


@router.get(
    "/certificate/{tracking_id}/image.png", response_class=Response, responses=_PNG | _NOT_FOUND
)
async def tracked_certificate_image(request: Request, tracking_id: TrackingId) -> Response:
    """The PNG of the certificate of this tracking id."""
    return await _image(await _view(request, service.by_tracking_id, tracking_id))


@router.get(
    "/certificate/{tracking_id}/certificate.pdf",
    response_class=Response,
    responses=_PDF | _NOT_FOUND,
)
async def tracked_certificate_pdf(request: Request, tracking_id: TrackingId) -> Response:
    """The PDF of the certificate of this tracking id."""
    return await _document(await _view(request, service.by_tracking_id, tracking_id))


class StageOut(BaseModel):
    stage: str = Field(description="initiated, donation_received, transferred or completed")
    label: str
    reached_on: str | None = Field(default=None, description="Absent until reached")


class ProjectRef(BaseModel):
    project_id: str
    name: str | None = None
    location: str | None = None


class PartnerRef(BaseModel):
    name: str
    website: str | None = None


class CertificateOut(BaseModel):
    certificate_id: str
    status: str = Field(description="in_progress, completed, or void (the impact was cancelled)")
    tracking_id: str
    impact_type: str
    amount: int
    unit: str = Field(description="trees, lbs, lbs CO₂, coral fragments or US cents")
    description: str = Field(description='In words, e.g. "5 trees planted"')
    headline: str = Field(description='e.g. "Acme planted 5 trees on behalf of Jane"')
    category: str | None = Field(default=None, description="food, or the cause of a donation")
    business_name: str
    customer_name: str | None = None
    issued_on: str
    completed_on: str | None = None
    cancelled_on: str | None = None
    stages: list[StageOut]
    project: ProjectRef | None = None
    partner: PartnerRef | None = None
    live_session_date: str | None = None
    impact_video: str | None = None
    certificate_url: str
    image_url: str
    pdf_url: str


@router.get(
    "/v1/certificates/{certificate_id}",
    response_model=CertificateOut,
    responses=error_responses(404),
)
async def verify_certificate(request: Request, certificate_id: CertificateId) -> JSONResponse:
    """Verify a certificate: public (no API key), the facts it certifies and its status.
    A certificate whose impact was cancelled is `void`."""
    base = _base_url(request)

    def load(session: Session) -> dict[str, Any]:
        return service.verification(
            session, service.by_certificate_id(session, certificate_id), base
        )

    return JSONResponse(await request.app.state.db.run(load))
