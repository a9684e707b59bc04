"""Badges: a shields.io-style "flat" SVG (label on grey, value on a colour),
and the same facts in shields.io's endpoint-badge JSON
(https://shields.io/badges/endpoint-badge), so a README can use either.

Text widths are measured with the Bitstream Vera font that reportlab ships
(metrics close to Verdana, the font the SVG asks for) and pinned with
``textLength``, so the text fills its box whichever font the viewer has.
"""

from __future__ import annotations

import html
import re

# The certificate's font loader: the same bundled font everywhere.
from openimpact.certificates.render import _font
from openimpact.errors import ValidationFailed

# shields.io's named colours (https://shields.io/badges, "color"), with their
# semantic aliases.
NAMED_COLORS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "lightgrey": "#9f9f9f",
    "lightgray": "#9f9f9f",
    "grey": "#555",
    "gray": "#555",
    "success": "#4c1",
    "important": "#fe7d37",
    "critical": "#e05d44",
    "informational": "#007ec6",
    "inactive": "#9f9f9f",
}
_HEX = re.compile(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
LABEL_COLOR = "#555"
MAX_LABEL = 60


def parse_color(value: str) -> tuple[str, str]:
    """(the fill for the SVG, the value for shields' JSON) of ``?color=``:
    a shields.io colour name or a hex colour, with or without ``#``."""
    name = value.strip().lower()
    if name in NAMED_COLORS:
        return NAMED_COLORS[name], name
    match = _HEX.match(value.strip())
    if match is None:
        raise ValidationFailed(
            "color: must be a hex colour (4c1, 2e7d32 or #2e7d32) or one of "
            + ", ".join(sorted(NAMED_COLORS))
        )
    return f"#{match[1].lower()}", match[1].lower()


def check_label(value: str) -> str:
    tidy = " ".join(value.split())
    if len(tidy) > MAX_LABEL:
        raise ValidationFailed(f"label: must be at most {MAX_LABEL} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in value):
        raise ValidationFailed("label: must not contain control characters")
    return tidy


def text_width(text: str) -> int:
    return round(_font(11).getlength(text))


def badge_svg(label: str, message: str, color: str) -> str:
    """A 20-pixel-high flat badge; an empty label gives the value alone."""
    pad = 6
    label_w = text_width(label) + 2 * pad if label else 0
    message_w = text_width(message) + 2 * pad
    width = label_w + message_w
    title = f"{label}: {message}" if label else message
    esc = html.escape

    def text(content: str, left: int, box: int) -> str:
        # Drawn at ten times the size and scaled down, as shields.io does, so
        # the text is positioned to a tenth of a pixel.
        x = (left + box / 2) * 10
        length = (box - 2 * pad) * 10
        return (
            f'<text aria-hidden="true" x="{x:.0f}" y="150" fill="#010101" fill-opacity=".3" '
            f'transform="scale(.1)" textLength="{length}">{esc(content)}</text>'
            f'<text x="{x:.0f}" y="140" transform="scale(.1)" fill="#fff" '
            f'textLength="{length}">{esc(content)}</text>'
        )

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{esc(title)}"><title>{esc(title)}</title>',
        '<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" '
        'stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>',
        f'<clipPath id="r"><rect width="{width}" height="20" rx="3" fill="#fff"/></clipPath>',
        '<g clip-path="url(#r)">',
        f'<rect width="{label_w}" height="20" fill="{LABEL_COLOR}"/>' if label else "",
        f'<rect x="{label_w}" width="{message_w}" height="20" fill="{esc(color)}"/>',
        f'<rect width="{width}" height="20" fill="url(#s)"/></g>',
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" '
        'text-rendering="geometricPrecision" font-size="110">',
        text(label, 0, label_w) if label else "",
        text(message, label_w, message_w),
        "</g></svg>",
    ]
    return "".join(parts)
