"""Render a public impact certificate as an HTML page, a 1200x630 share image and an A4 PDF.

Everything here is a pure function of a ``CertificateView`` so the web layer, background
workers and tests can render certificates without a database or a web framework.

The PNG and PDF use the Bitstream Vera fonts that ship inside the reportlab package: they are
always installed with our dependencies (unlike system fonts), cover Latin-1 plus typographic
punctuation, and come in a bold weight. Pillow's built-in default font lacks accented letters
and dashes, which would turn names like "Café Zoë" into boxes.
"""

import base64
import hashlib
import io
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import qrcode
import reportlab
from jinja2 import Environment, FileSystemLoader, select_autoescape
from PIL import Image, ImageDraw, ImageFont
from qrcode.image.pil import PilImage
from reportlab.lib.colors import Color, HexColor, white
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont, TTFontFile
from reportlab.pdfgen.canvas import Canvas


@dataclass(frozen=True)
class Stage:
    key: str  # "initiated" | "donation_received" | "transferred" | "completed"
    label: str  # "Initiated", "Donation Received", "Transferred to Partner", "Completed"
    at: datetime | None  # UTC aware datetime, None if not reached


@dataclass(frozen=True)
class CertificateView:
    certificate_id: str
    tracking_id: str
    page_url: str  # absolute URL of the public certificate page; the QR code points here
    image_url: str  # absolute URL of the PNG (for og:image)
    pdf_url: str  # absolute URL of the PDF
    # "tree_planted" | "waste_removed" | "carbon_captured" | "coral_restored" | "money_donated"
    impact_type: str
    amount: int  # trees, lbs, lbs CO2, coral fragments, or US cents
    # "food" for food trees; for donations the cause label, e.g. "planting trees"
    category: str | None
    business_name: str  # the account's display name, e.g. "Acme"
    customer_name: str | None  # shown as "on behalf of Jane" when set; NEVER an email
    issued_at: datetime  # when the impact was initiated (UTC)
    status: str  # "in_progress" | "completed" | "void"
    stages: tuple[Stage, ...]
    project_name: str | None
    project_location: str | None
    partner_name: str | None
    partner_website: str | None
    partner_logo_url: str | None
    location_map: str | None  # Google Maps embed URL (iframe src) or None
    impact_video: str | None
    live_session_date: datetime | None
    cancelled_at: datetime | None
    cancellation_reason: str | None


@dataclass(frozen=True)
class _Kind:
    """Per impact type wording and colours, shared by all three renderings."""

    verb: str  # past tense; also reads as the participle in "5 trees planted"
    label: str
    accent: str
    tint: str


_KINDS: dict[str, _Kind] = {
    "tree_planted": _Kind("planted", "Tree planting", "#2e7d32", "#eef6ee"),
    "waste_removed": _Kind("removed", "Ocean cleanup", "#1565c0", "#ebf3fc"),
    "carbon_captured": _Kind("captured", "Carbon capture", "#546e7a", "#eef2f4"),
    "coral_restored": _Kind("restored", "Coral restoration", "#d9576a", "#fdf0f2"),
    "money_donated": _Kind("donated", "Donation", "#b07d0b", "#fbf6e9"),
}
_VOID_ACCENT = "#8a8f98"
_VOID_RED = "#c62828"
_INK = "#1d232b"
_MUTED = "#5f6b7a"

_STATUS_LABELS = {"in_progress": "In progress", "completed": "Completed", "void": "Void"}
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip

_FONT_DIR = Path(reportlab.__file__).parent / "fonts"
_REGULAR_TTF = _FONT_DIR / "Vera.ttf"
_BOLD_TTF = _FONT_DIR / "VeraBd.ttf"
_PDF_REGULAR = "OpenImpactSans"
_PDF_BOLD = "OpenImpactSans-Bold"


def _inline() -> tuple[str, str]:
    """The page's style (with each impact type's colours, from _KINDS) and
    script. They are inlined, so that a saved page is whole, and allowed by
    their hashes alone (:data:`PAGE_CSP_SOURCES`): no other inline code runs."""
    static = Path(__file__).parent / "static"
    kinds = {name: (k.accent, k.tint) for name, k in _KINDS.items()}
    kinds["void"] = (_VOID_ACCENT, "#f3f4f6")
    colours = "".join(
        f".kind-{name} {{ --accent: {accent}; --tint: {tint}; }}\n"
        for name, (accent, tint) in kinds.items()
    )
    return (static / "certificate.css").read_text() + colours, (
        static / "certificate.js"
    ).read_text()


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE_CSS, PAGE_JS = _inline()
# (style-src, script-src) of the page's Content-Security-Policy.
PAGE_CSP_SOURCES = (_hash(PAGE_CSS), _hash(PAGE_JS))

_TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_TEMPLATES.globals.update(page_css=PAGE_CSS, page_js=PAGE_JS)


def _kind(impact_type: str) -> _Kind:
    try:
        return _KINDS[impact_type]
    except KeyError:
        raise ValueError(f"unknown impact type: {impact_type!r}") from None


def _quantity(impact_type: str, amount: int, category: str | None) -> str:
    """The counted thing without its verb ("5 food trees", "$5.00"); headline reuses it."""
    _kind(impact_type)
    if amount < 0:
        raise ValueError(f"amount must not be negative: {amount}")
    count = f"{amount:,}"
    plural = "" if amount == 1 else "s"
    pounds = "lb" if amount == 1 else "lbs"
    match impact_type:
        case "tree_planted":
            return f"{count} {'food tree' if category == 'food' else 'tree'}{plural}"
        case "waste_removed":
            return f"{count} {pounds} of ocean plastic"
        case "carbon_captured":
            return f"{count} {pounds} of CO₂"
        case "coral_restored":
            return f"{count} coral fragment{plural}"
        case _:  # money_donated: amount is in US cents
            dollars, cents = divmod(amount, 100)
            return f"${dollars:,}.{cents:02d}"


def describe_impact(impact_type: str, amount: int, category: str | None = None) -> str:
    """Quantity in words and units, e.g. "10,000 trees planted" or "$1,234.56 donated"."""
    return f"{_quantity(impact_type, amount, category)} {_kind(impact_type).verb}"


def _customer(view: CertificateView) -> str | None:
    """The customer's name if safe to publish: anything with "@" may be an email, so drop it."""
    name = " ".join((view.customer_name or "").split())
    return name if name and "@" not in name else None


def headline(view: CertificateView) -> str:
    """One sentence naming who did what, e.g. "Acme donated $5.00 to planting trees"."""
    quantity = _quantity(view.impact_type, view.amount, view.category)
    text = f"{view.business_name.strip()} {_kind(view.impact_type).verb} {quantity}"
    if view.impact_type == "money_donated" and view.category:
        text += f" to {view.category}"
    customer = _customer(view)
    return f"{text} on behalf of {customer}" if customer else text


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _date(moment: datetime) -> str:
    """Locale-independent long date such as "16 September 2024"."""
    day = _utc(moment)
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _date_time(moment: datetime) -> str:
    return f"{_date(moment)}, {_utc(moment):%H:%M} UTC"


def _web_url(url: str | None) -> str | None:
    """Only http(s) URLs may become links or iframes; javascript:, data: etc. are dropped."""
    if not url:
        return None
    try:
        scheme = urlsplit(url.strip()).scheme
    except ValueError:
        return None
    return url.strip() if scheme in ("http", "https") else None


@dataclass(frozen=True)
class _StageRow:
    label: str
    date: str  # formatted date, or why there is none yet
    state: str  # "done" | "current" | "pending"


def _stage_rows(view: CertificateView) -> list[_StageRow]:
    """Timeline rows; the first unreached stage of a live impact is marked as the current one."""
    rows = []
    current_marked = view.status != "in_progress"
    for stage in view.stages:
        if stage.at is not None:
            rows.append(_StageRow(stage.label, _date(stage.at), "done"))
        elif view.status == "void":
            rows.append(_StageRow(stage.label, "not reached", "pending"))
        else:
            rows.append(
                _StageRow(stage.label, "pending", "pending" if current_marked else "current")
            )
            current_marked = True
    return rows


def _void_notice(view: CertificateView) -> str:
    when = f" on {_date(view.cancelled_at)}" if view.cancelled_at else ""
    return f"VOID — this impact was cancelled{when}"


def _description(view: CertificateView) -> str:
    """Short social-card text: what, where, with whom, when."""
    parts = [describe_impact(view.impact_type, view.amount, view.category)]
    if view.partner_name:
        parts.append(f"with {view.partner_name}")
    where = ", ".join(p for p in (view.project_name, view.project_location) if p)
    if where:
        parts.append(f"({where})")
    text = " ".join(parts) + f" on {_date(view.issued_at)}. Certificate {view.certificate_id}."
    return f"{_void_notice(view)}. {text}" if view.status == "void" else text


def share_links(page_url: str, text: str) -> dict[str, str]:
    def encode(params: dict[str, str]) -> str:
        return urlencode(params, quote_via=quote)  # %20 for spaces, "/" and ":" escaped too

    return {
        "linkedin": "https://www.linkedin.com/sharing/share-offsite/?" + encode({"url": page_url}),
        "x": "https://twitter.com/intent/tweet?" + encode({"url": page_url, "text": text}),
        "facebook": "https://www.facebook.com/sharer/sharer.php?" + encode({"u": page_url}),
    }


def _qr_image(url: str, box_size: int) -> Image.Image:
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size, border=4
    )
    code.add_data(url)
    code.make(fit=True)
    return code.make_image(image_factory=PilImage).get_image().convert("RGB")


def qr_png(url: str, box_size: int = 8) -> bytes:
    """QR code PNG for ``url``; medium error correction survives print and screen scaling."""
    buffer = io.BytesIO()
    _qr_image(url, box_size).save(buffer, format="PNG")
    return buffer.getvalue()


def render_html(view: CertificateView) -> str:
    """The full, self-contained public certificate page."""
    kind = _kind(view.impact_type)
    title = headline(view)
    void = view.status == "void"
    qr_base64 = base64.b64encode(qr_png(view.page_url)).decode("ascii")
    context: dict[str, Any] = {
        "view": view,
        "headline": title,
        "quantity": describe_impact(view.impact_type, view.amount, view.category),
        "description": _description(view),
        "kind_label": kind.label,
        "status_label": _STATUS_LABELS[view.status],
        "issued_on": _date(view.issued_at),
        "issued_iso": _utc(view.issued_at).isoformat(),
        "stages": _stage_rows(view),
        "void_notice": _void_notice(view) if void else None,
        "partner_website": _web_url(view.partner_website),
        "partner_logo_url": _web_url(view.partner_logo_url),
        "location_map": _web_url(view.location_map),
        "impact_video": _web_url(view.impact_video),
        "live_session": _date_time(view.live_session_date) if view.live_session_date else None,
        "qr_data_uri": f"data:image/png;base64,{qr_base64}",
        "share": share_links(view.page_url, title),
    }
    return _TEMPLATES.get_template("certificate.html").render(context)


# --- text fitting shared by the PNG and PDF renderers ---------------------------------------

Measure = Callable[[str], float]
_LEADING = 1.2  # line spacing as a multiple of font size


@cache
def _font_codepoints() -> frozenset[int]:
    return frozenset(TTFontFile(str(_REGULAR_TTF)).charToGlyph)


def _printable(text: str) -> str:
    """Map text onto glyphs the bundled font has, so nothing renders as an empty box.

    Compatibility decomposition keeps what it can ("CO₂" → "CO2", "ő" → "o"); unrenderable
    letters become "?" so a name's length stays visible, while symbols such as emoji are dropped.
    """
    available = _font_codepoints()
    out = []
    for char in " ".join(text.split()):
        if ord(char) in available:
            out.append(char)
            continue
        kept = "".join(c for c in unicodedata.normalize("NFKD", char) if ord(c) in available)
        out.append(kept or ("?" if unicodedata.category(char)[0] in "LNP" else ""))
    return "".join(out)


def _wrap(text: str, measure: Measure, width: float) -> list[str]:
    """Greedy word wrap; a single word wider than the line is split so it can never overflow."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if measure(candidate) <= width:
            line = candidate
            continue
        if line:
            lines.append(line)
        while measure(word) > width:
            cut = len(word) - 1
            while cut > 1 and measure(word[:cut]) > width:
                cut -= 1
            lines.append(word[:cut])
            word = word[cut:]
        line = word
    if line:
        lines.append(line)
    return lines


def _ellipsize(text: str, measure: Measure, width: float) -> str:
    while text and measure(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _fit(
    text: str,
    width: float,
    sizes: range,
    measure_at: Callable[[int], Measure],
    max_lines: int = 1,
    max_height: float | None = None,
) -> tuple[int, list[str]]:
    """Largest size at which ``text`` wraps into the box; at the smallest size, truncate with "…".

    Lines are ``_LEADING`` times the size apart, so under ``max_height`` small sizes get more lines.
    """
    for size in sizes:
        allowed = (
            max_lines
            if max_height is None
            else max(1, min(max_lines, int(max_height // (size * _LEADING))))
        )
        lines = _wrap(text, measure_at(size), width)
        if len(lines) <= allowed:
            return size, lines
    lines = lines[:allowed]
    lines[-1] = _ellipsize(lines[-1], measure_at(size), width)
    return size, lines


# --- PNG -------------------------------------------------------------------------------------

_PNG_SIZE = (1200, 630)


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(_BOLD_TTF if bold else _REGULAR_TTF), size)


def _png_measure(bold: bool) -> Callable[[int], Measure]:
    return lambda size: _font(size, bold).getlength


def _void_stamp(size: tuple[int, int]) -> Image.Image:
    """A translucent, rotated "VOID" rubber stamp layer to composite over the card."""
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font = _font(190, bold=True)
    left, top, right, bottom = draw.textbbox((0, 0), "VOID", font=font)
    pad = 36
    x = (size[0] - (right - left)) // 2 - left
    y = (size[1] - (bottom - top)) // 2 - top
    red = (198, 40, 40, 170)
    draw.rounded_rectangle(
        (x + left - pad, y + top - pad, x + right + pad, y + bottom + pad),
        radius=28,
        outline=red,
        width=14,
    )
    draw.text((x, y), "VOID", font=font, fill=red)
    return layer.rotate(18, resample=Image.Resampling.BICUBIC, center=(size[0] / 2, size[1] / 2))


def render_png(view: CertificateView) -> bytes:
    """1200x630 Open Graph share image summarising the certificate, with a QR code to the page."""
    kind = _kind(view.impact_type)
    void = view.status == "void"
    accent = _VOID_ACCENT if void else kind.accent
    width = _PNG_SIZE[0]
    image = Image.new("RGB", _PNG_SIZE, "#f3f4f6" if void else kind.tint)
    draw = ImageDraw.Draw(image)
    margin = 64

    # Colour band with the title and status.
    band = 96
    draw.rectangle((0, 0, width, band), fill=accent)
    draw.text(
        (margin, band // 2),
        "CERTIFICATE OF IMPACT",
        font=_font(28, True),
        fill="white",
        anchor="lm",
    )
    status = _STATUS_LABELS[view.status].upper()
    status_font = _font(20, True)
    status_width = draw.textlength(status, font=status_font)
    pill = (width - margin - status_width - 36, band // 2 - 20, width - margin, band // 2 + 20)
    draw.rounded_rectangle(pill, radius=20, outline="white", width=3)
    draw.text(
        ((pill[0] + pill[2]) / 2, band // 2), status, font=status_font, fill="white", anchor="mm"
    )

    # QR code card on the right, scaled by a whole factor so every module stays square and sharp.
    qr_side = 208
    card = (width - margin - qr_side - 24, 140, width - margin, 140 + qr_side + 64)
    draw.rounded_rectangle(card, radius=16, fill="white")
    qr = _qr_image(view.page_url, 1)
    scale = qr_side // qr.width
    qr = qr.resize((qr.width * scale, qr.width * scale), Image.Resampling.NEAREST)
    offset = 12 + (qr_side - qr.width) // 2
    image.paste(qr, (card[0] + offset, card[1] + offset))
    draw.text(
        ((card[0] + card[2]) / 2, card[3] - 26),
        "Scan to verify",
        font=_font(20),
        fill=_MUTED,
        anchor="mm",
    )

    # Quantity, headline and project on the left.
    text_width = card[0] - margin - 48
    y = 132
    quantity = _printable(describe_impact(view.impact_type, view.amount, view.category)).upper()
    size, lines = _fit(quantity, text_width, range(30, 17, -2), _png_measure(True))
    draw.text((margin, y), lines[0], font=_font(size, True), fill=accent)
    y += size + 22
    size, lines = _fit(
        _printable(headline(view)),
        text_width,
        range(58, 27, -2),
        _png_measure(True),
        max_lines=4,
        max_height=250,
    )
    for line in lines:
        draw.text((margin, y), line, font=_font(size, True), fill=_INK)
        y += round(size * _LEADING)
    project = " · ".join(p for p in (view.project_name, view.project_location) if p)
    if project:
        size, lines = _fit(_printable(project), text_width, range(26, 19, -2), _png_measure(False))
        draw.text((margin, y + 14), lines[0], font=_font(size), fill=_MUTED)

    # Facts row along the bottom.
    draw.line((margin, 498, width - margin, 498), fill="#d5dae0", width=2)
    facts = [
        ("ISSUED", _date(view.issued_at)),
        ("PARTNER", view.partner_name or "—"),
        ("CERTIFICATE ID", view.certificate_id),
    ]
    column = (width - 2 * margin) / len(facts)
    for index, (label, value) in enumerate(facts):
        x = margin + index * column
        draw.text((x, 522), label, font=_font(16, True), fill=_MUTED)
        size, lines = _fit(
            _printable(value),
            column - 24,
            range(26, 15, -2),
            _png_measure(False),
            max_lines=2,
            max_height=56,
        )
        for row, line in enumerate(lines):
            draw.text((x, 550 + row * round(size * _LEADING)), line, font=_font(size), fill=_INK)

    if void:
        image = Image.alpha_composite(image.convert("RGBA"), _void_stamp(_PNG_SIZE)).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


# --- PDF -------------------------------------------------------------------------------------


@cache
def _register_pdf_fonts() -> None:
    pdfmetrics.registerFont(TTFont(_PDF_REGULAR, str(_REGULAR_TTF)))
    pdfmetrics.registerFont(TTFont(_PDF_BOLD, str(_BOLD_TTF)))


def _pdf_measure(font: str) -> Callable[[int], Measure]:
    return lambda size: lambda text: pdfmetrics.stringWidth(text, font, size)


def _pdf_details(view: CertificateView) -> list[tuple[str, str]]:
    rows = [
        ("Issued", _date(view.issued_at)),
        ("Project", view.project_name),
        ("Location", view.project_location),
        ("Partner", view.partner_name),
        ("Partner website", _web_url(view.partner_website)),
        ("Live session", _date_time(view.live_session_date) if view.live_session_date else None),
        ("Impact video", _web_url(view.impact_video)),
        ("Certificate ID", view.certificate_id),
        ("Tracking ID", view.tracking_id),
    ]
    return [(label, value) for label, value in rows if value]


def render_pdf(view: CertificateView) -> bytes:
    """One printable A4 page with the same facts as the web page; byte-stable for the same input."""
    _register_pdf_fonts()
    kind = _kind(view.impact_type)
    void = view.status == "void"
    accent = HexColor(_VOID_ACCENT if void else kind.accent)
    ink, muted, red = HexColor(_INK), HexColor(_MUTED), HexColor(_VOID_RED)
    page_width, page_height = A4
    left, right = 72.0, page_width - 72.0
    text_width = right - left
    centre = page_width / 2

    buffer = io.BytesIO()
    pdf = Canvas(buffer, pagesize=A4, invariant=True)
    pdf.setTitle(f"Impact certificate {view.certificate_id}")
    pdf.setSubject(headline(view))
    pdf.setAuthor(view.business_name)
    pdf.setCreator("OpenImpact")

    # Frame.
    pdf.setStrokeColor(accent)
    pdf.setLineWidth(3)
    pdf.rect(28, 28, page_width - 56, page_height - 56)
    pdf.setLineWidth(0.75)
    pdf.rect(36, 36, page_width - 72, page_height - 72)

    y = page_height - 96
    pdf.setFillColor(accent)
    pdf.setFont(_PDF_BOLD, 13)
    pdf.drawCentredString(centre, y, "CERTIFICATE OF IMPACT", charSpace=2.5)
    y -= 20
    pdf.setFillColor(muted)
    pdf.setFont(_PDF_REGULAR, 10)
    pdf.drawCentredString(centre, y, f"{kind.label} · {_STATUS_LABELS[view.status]}")

    if void:
        y -= 30
        pdf.setFillColor(red)
        pdf.setFont(_PDF_BOLD, 13)
        pdf.drawCentredString(centre, y, _void_notice(view))
        if view.cancellation_reason:
            reason = _printable(f"Reason: {view.cancellation_reason}")
            size, lines = _fit(
                reason, text_width, range(10, 7, -1), _pdf_measure(_PDF_REGULAR), max_lines=2
            )
            pdf.setFont(_PDF_REGULAR, size)
            for line in lines:
                y -= size + 4
                pdf.drawCentredString(centre, y, line)

    y -= 46
    size, lines = _fit(
        _printable(headline(view)),
        text_width,
        range(28, 15, -1),
        _pdf_measure(_PDF_BOLD),
        max_lines=4,
        max_height=105,
    )
    pdf.setFillColor(ink)
    pdf.setFont(_PDF_BOLD, size)
    for line in lines:
        pdf.drawCentredString(centre, y, line)
        y -= size * _LEADING
    y -= 6
    pdf.setFillColor(accent)
    pdf.setFont(_PDF_BOLD, 17)
    pdf.drawCentredString(
        centre, y, _printable(describe_impact(view.impact_type, view.amount, view.category))
    )

    y -= 28
    pdf.setStrokeColor(HexColor("#d5dae0"))
    pdf.setLineWidth(0.75)
    pdf.line(left, y, right, y)

    # Details as label/value rows, one line each so the page never overflows.
    y -= 26
    value_x = left + 110
    for label, value in _pdf_details(view):
        pdf.setFillColor(muted)
        pdf.setFont(_PDF_BOLD, 8.5)
        pdf.drawString(left, y + 1, label.upper())
        size, lines = _fit(
            _printable(value), right - value_x, range(11, 7, -1), _pdf_measure(_PDF_REGULAR)
        )
        pdf.setFillColor(ink)
        pdf.setFont(_PDF_REGULAR, size)
        pdf.drawString(value_x, y, lines[0])
        y -= 20

    # Stage timeline: dots on a line, label and date under each.
    y -= 14
    pdf.setFillColor(muted)
    pdf.setFont(_PDF_BOLD, 8.5)
    pdf.drawString(left, y, "PROGRESS")
    y -= 26
    rows = _stage_rows(view)
    step = text_width / len(rows)
    xs = [left + step * (index + 0.5) for index in range(len(rows))]
    pdf.setStrokeColor(HexColor("#c9d0d8"))
    pdf.setLineWidth(2)
    pdf.line(xs[0], y, xs[-1], y)
    pdf.setStrokeColor(accent)
    for index in range(len(rows) - 1):
        if rows[index + 1].state == "done":
            pdf.line(xs[index], y, xs[index + 1], y)
    label_measure = _pdf_measure(_PDF_BOLD)
    for x, row in zip(xs, rows, strict=True):
        reached = row.state == "done"
        pdf.setStrokeColor(accent if row.state != "pending" else HexColor("#c9d0d8"))
        pdf.setFillColor(accent if reached else white)
        pdf.circle(x, y, 7, stroke=1, fill=1)
        line_y = y - 22
        size, lines = _fit(
            _printable(row.label), step - 8, range(9, 6, -1), label_measure, max_lines=2
        )
        pdf.setFillColor(ink)
        pdf.setFont(_PDF_BOLD, size)
        for line in lines:
            pdf.drawCentredString(x, line_y, line)
            line_y -= size + 2
        pdf.setFillColor(ink if reached else muted)
        pdf.setFont(_PDF_REGULAR, 9)
        pdf.drawCentredString(x, line_y - 2, row.date)
    y -= 78

    if view.status == "in_progress":
        pdf.setFillColor(muted)
        pdf.setFont(_PDF_REGULAR, 9.5)
        note = "This impact is in progress; the online certificate updates as each stage completes."
        pdf.drawCentredString(centre, y, note)

    # Verification block at the bottom: QR code, IDs and the page URL as selectable text.
    qr_side = 108.0
    bottom = 74.0
    pdf.drawImage(ImageReader(io.BytesIO(qr_png(view.page_url))), left, bottom, qr_side, qr_side)
    text_x = left + qr_side + 18
    line_y = bottom + qr_side - 28
    pdf.setFillColor(ink)
    pdf.setFont(_PDF_BOLD, 12)
    pdf.drawString(text_x, line_y, "Verify this certificate online")
    pdf.setFillColor(muted)
    pdf.setFont(_PDF_REGULAR, 9.5)
    pdf.drawString(text_x, line_y - 18, "Scan the code or visit the address below.")
    pdf.drawString(text_x, line_y - 38, f"Certificate ID: {_printable(view.certificate_id)}")
    pdf.drawString(text_x, line_y - 52, f"Tracking ID: {_printable(view.tracking_id)}")
    # The URL gets the full width and one line (shrinking if needed) so it copies back intact.
    url_y = bottom - 22
    url_size = min(
        10.0, 10.0 * text_width / pdfmetrics.stringWidth(view.page_url, _PDF_REGULAR, 10)
    )
    pdf.setFillColor(accent)
    pdf.setFont(_PDF_REGULAR, url_size)
    pdf.drawCentredString(centre, url_y, view.page_url)
    pdf.linkURL(view.page_url, (left, url_y - 3, right, url_y + url_size), relative=0)

    if void:
        pdf.saveState()
        pdf.setFillColor(Color(red.red, red.green, red.blue, alpha=0.16))
        pdf.setFont(_PDF_BOLD, 170)
        pdf.translate(centre, page_height / 2)
        pdf.rotate(38)
        pdf.drawCentredString(0, -60, "VOID")
        pdf.restoreState()

    pdf.showPage()
    pdf.save()
    return buffer.getvalue()
