"""The 1200x630 share image of a profile (Open Graph and Twitter cards).

A pure function of what the profile publishes, drawn with the certificate
renderer's font and text fitting, so names like "Café Zoë" and long names
fit and fall back exactly as they do on a certificate. The logo is not
drawn: fetching a URL a business typed would make the server send requests
wherever that URL points.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

# The certificate's text machinery (fonts that ship with our dependencies,
# glyph fallback, shrink-to-fit): one implementation for every image.
from openimpact.certificates.render import _fit, _font, _png_measure, _printable
from openimpact.public import i18n
from openimpact.public.look import ACCENTS

SIZE = (1200, 630)
_INK = "#1d232b"
_MUTED = "#5f6b7a"
_PAPER = "#f6f8f5"


def render_share_png(
    name: str, totals: tuple[tuple[str, int], ...], address: str, locale: str
) -> bytes:
    width, height = SIZE
    margin = 64
    image = Image.new("RGB", SIZE, _PAPER)
    draw = ImageDraw.Draw(image)

    band = 96
    draw.rectangle((0, 0, width, band), fill=_INK)
    draw.text(
        (margin, band // 2),
        _printable(i18n.text(locale, "profile_eyebrow")).upper(),
        font=_font(28, True),
        fill="white",
        anchor="lm",
    )

    size, lines = _fit(
        _printable(name),
        width - 2 * margin,
        range(76, 35, -4),
        _png_measure(True),
        max_lines=2,
        max_height=190,
    )
    y = 136
    for line in lines:
        draw.text((margin, y), line, font=_font(size, True), fill=_INK)
        y += round(size * 1.2)
    draw.text(
        (margin, y + 8),
        _printable(i18n.text(locale, "share_subtitle")),
        font=_font(28),
        fill=_MUTED,
    )

    shown = [(kind, amount) for kind, amount in totals if amount > 0]
    top = 370
    if not shown:
        draw.text((margin, top), i18n.text(locale, "no_impact"), font=_font(40), fill=_MUTED)
    gap = 24
    tile = (width - 2 * margin - gap * (len(shown) - 1)) / max(1, len(shown))
    inner = tile - 56
    values = [_printable(i18n.value(kind, amount, locale)) for kind, amount in shown]
    units = [_printable(i18n.unit(kind, amount, locale)) for kind, amount in shown]
    # One size for every value and one for every unit, so the row reads as a row.
    value_size = min(
        (_fit(v, inner, range(64, 21, -2), _png_measure(True))[0] for v in values), default=64
    )
    unit_size = min(
        (_fit(u, inner, range(24, 15, -2), _png_measure(False), max_lines=2)[0] for u in units),
        default=24,
    )
    tile_height = value_size + 2 * round(unit_size * 1.25) + 76
    for index, (kind, _amount) in enumerate(shown):
        left = margin + index * (tile + gap)
        draw.rounded_rectangle((left, top, left + tile, top + tile_height), radius=18, fill="white")
        draw.rounded_rectangle(
            (left + 14, top + 22, left + 20, top + tile_height - 22), radius=3, fill=ACCENTS[kind]
        )
        _size, lines = _fit(values[index], inner, range(value_size, 0, -1), _png_measure(True))
        draw.text((left + 36, top + 24), lines[0], font=_font(value_size, True), fill=ACCENTS[kind])
        _size, unit_lines = _fit(
            units[index], inner, range(unit_size, 0, -1), _png_measure(False), max_lines=2
        )
        for row, line in enumerate(unit_lines):
            draw.text(
                (left + 36, top + 44 + value_size + row * round(unit_size * 1.25)),
                line,
                font=_font(unit_size),
                fill=_MUTED,
            )

    draw.text(
        (margin, height - 44),
        _printable(address),
        font=_font(22),
        fill=_MUTED,
        anchor="lm",
    )
    draw.text(
        (width - margin, height - 44),
        _printable(i18n.text(locale, "tracked_with")),
        font=_font(22),
        fill=_MUTED,
        anchor="rm",
    )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
