import io
import re
from dataclasses import replace
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from PIL import Image
from pypdf import PdfReader

from openimpact.certificates.render import (
    CertificateView,
    Stage,
    describe_impact,
    headline,
    qr_png,
    render_html,
    render_pdf,
    render_png,
)

PAGE_URL = "https://impact.example.org/certificates/OI-7F3K-92QD?ref=share&lang=en"
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def make_view(**overrides: Any) -> CertificateView:
    fields: dict[str, Any] = {
        "certificate_id": "OI-7F3K-92QD",
        "tracking_id": "trk_01J8ZKQ4M2VX7",
        "page_url": PAGE_URL,
        "image_url": "https://impact.example.org/certificates/OI-7F3K-92QD.png",
        "pdf_url": "https://impact.example.org/certificates/OI-7F3K-92QD.pdf",
        "impact_type": "tree_planted",
        "amount": 5,
        "category": None,
        "business_name": "Acme",
        "customer_name": "Jane",
        "issued_at": utc(2024, 9, 16, 10, 5),
        "status": "in_progress",
        "stages": (
            Stage("initiated", "Initiated", utc(2024, 9, 16, 10, 5)),
            Stage("donation_received", "Donation Received", utc(2024, 9, 18)),
            Stage("transferred", "Transferred to Partner", None),
            Stage("completed", "Completed", None),
        ),
        "project_name": "Mangrove Restoration",
        "project_location": "Mombasa, Kenya",
        "partner_name": "Eden Reforestation Projects",
        "partner_website": "https://www.edenprojects.org",
        "partner_logo_url": None,
        "location_map": None,
        "impact_video": None,
        "live_session_date": None,
        "cancelled_at": None,
        "cancellation_reason": None,
    }
    fields.update(overrides)
    return CertificateView(**fields)


class _Links(HTMLParser):
    """Collects link, meta and iframe attributes with entities unescaped, as a browser sees them."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.meta: dict[str, str] = {}
        self.iframes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a" and attributes.get("href"):
            self.hrefs.append(attributes["href"] or "")
        elif tag == "meta" and (attributes.get("property") or attributes.get("name")):
            key = attributes.get("property") or attributes.get("name") or ""
            self.meta[key] = attributes.get("content") or ""
        elif tag == "iframe":
            self.iframes.append(attributes.get("src") or "")


def parse(html: str) -> _Links:
    parser = _Links()
    parser.feed(html)
    return parser


def share_link(html: str, prefix: str) -> str:
    (link,) = [href for href in parse(html).hrefs if href.startswith(prefix)]
    return link


def pdf_text(data: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


# --- describe_impact / headline -----------------------------------------------------------


@pytest.mark.parametrize(
    ("impact_type", "amount", "category", "expected"),
    [
        ("tree_planted", 1, None, "1 tree planted"),
        ("tree_planted", 5, None, "5 trees planted"),
        ("tree_planted", 10000, None, "10,000 trees planted"),
        ("tree_planted", 1, "food", "1 food tree planted"),
        ("tree_planted", 5, "food", "5 food trees planted"),
        ("waste_removed", 1, None, "1 lb of ocean plastic removed"),
        ("waste_removed", 12, None, "12 lbs of ocean plastic removed"),
        ("waste_removed", 2500, None, "2,500 lbs of ocean plastic removed"),
        ("carbon_captured", 1, None, "1 lb of CO₂ captured"),
        ("carbon_captured", 1000000, None, "1,000,000 lbs of CO₂ captured"),
        ("coral_restored", 1, None, "1 coral fragment restored"),
        ("coral_restored", 3, None, "3 coral fragments restored"),
        ("money_donated", 500, None, "$5.00 donated"),
        ("money_donated", 7, "planting trees", "$0.07 donated"),
        ("money_donated", 123456, None, "$1,234.56 donated"),
        ("money_donated", 100000000, None, "$1,000,000.00 donated"),
    ],
)
def test_describe_impact(
    impact_type: str, amount: int, category: str | None, expected: str
) -> None:
    assert describe_impact(impact_type, amount, category) == expected


def test_describe_impact_rejects_unknown_type_and_negative_amount() -> None:
    with pytest.raises(ValueError):
        describe_impact("whales_saved", 1)
    with pytest.raises(ValueError):
        describe_impact("tree_planted", -1)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "Acme planted 5 trees on behalf of Jane"),
        ({"customer_name": None}, "Acme planted 5 trees"),
        ({"amount": 1, "category": "food", "customer_name": None}, "Acme planted 1 food tree"),
        (
            {"impact_type": "waste_removed", "amount": 12, "customer_name": None},
            "Acme removed 12 lbs of ocean plastic",
        ),
        (
            {"impact_type": "carbon_captured", "amount": 1},
            "Acme captured 1 lb of CO₂ on behalf of Jane",
        ),
        (
            {"impact_type": "coral_restored", "amount": 3, "customer_name": None},
            "Acme restored 3 coral fragments",
        ),
        (
            {
                "impact_type": "money_donated",
                "amount": 500,
                "category": "planting trees",
                "customer_name": None,
            },
            "Acme donated $5.00 to planting trees",
        ),
        (
            {"impact_type": "money_donated", "amount": 500, "customer_name": None},
            "Acme donated $5.00",
        ),
    ],
)
def test_headline(overrides: dict[str, Any], expected: str) -> None:
    assert headline(make_view(**overrides)) == expected


@pytest.mark.parametrize("customer", ["jane@example.com", "  ", ""])
def test_headline_drops_email_or_blank_customer(customer: str) -> None:
    assert headline(make_view(customer_name=customer)) == "Acme planted 5 trees"


# --- HTML ---------------------------------------------------------------------------------


def test_html_shows_the_certificate_facts() -> None:
    html = render_html(make_view(partner_logo_url="https://cdn.example.org/eden.png"))
    assert html.startswith("<!doctype html>")
    assert "OI-7F3K-92QD" in html
    assert "trk_01J8ZKQ4M2VX7" in html
    assert "Acme planted 5 trees on behalf of Jane" in html
    assert "5 trees planted" in html
    assert "16 September 2024" in html
    assert "Mangrove Restoration" in html and "Mombasa, Kenya" in html
    assert '<a href="https://www.edenprojects.org"' in html
    assert ">Eden Reforestation Projects</a>" in html
    assert '<img src="https://cdn.example.org/eden.png"' in html
    assert "This impact is in progress" in html
    assert "VOID —" not in html and "banner-void" not in html.split("</style>")[1]


def test_html_timeline_has_dates_and_pending_stages() -> None:
    html = render_html(make_view())
    for label in ("Initiated", "Donation Received", "Transferred to Partner", "Completed"):
        assert label in html
    assert "18 September 2024" in html
    assert html.count(">pending<") == 2


def test_html_completed_has_no_progress_note() -> None:
    stages = tuple(replace(stage, at=utc(2024, 9, 20)) for stage in make_view().stages)
    html = render_html(make_view(status="completed", stages=stages))
    assert "in progress" not in html.lower()
    assert ">pending<" not in html


def test_html_open_graph_and_twitter_tags() -> None:
    view = make_view()
    meta = parse(render_html(view)).meta
    assert meta["og:image"] == view.image_url
    assert meta["og:url"] == PAGE_URL
    assert meta["og:type"] == "website"
    assert meta["og:title"] == "Acme planted 5 trees on behalf of Jane"
    assert "OI-7F3K-92QD" in meta["og:description"]
    assert meta["twitter:card"] == "summary_large_image"
    assert "robots" not in meta


def test_html_share_links_are_url_encoded() -> None:
    html = render_html(make_view())
    encoded_url = quote(PAGE_URL, safe="")
    assert encoded_url.startswith("https%3A%2F%2F") and "%26lang%3Den" in encoded_url

    linkedin = share_link(html, "https://www.linkedin.com/sharing/share-offsite/")
    assert linkedin == f"https://www.linkedin.com/sharing/share-offsite/?url={encoded_url}"

    facebook = share_link(html, "https://www.facebook.com/sharer/sharer.php")
    assert facebook == f"https://www.facebook.com/sharer/sharer.php?u={encoded_url}"

    tweet = share_link(html, "https://twitter.com/intent/tweet")
    assert f"url={encoded_url}" in tweet
    assert "text=Acme%20planted%205%20trees%20on%20behalf%20of%20Jane" in tweet
    assert parse_qs(urlsplit(tweet).query) == {
        "url": [PAGE_URL],
        "text": ["Acme planted 5 trees on behalf of Jane"],
    }

    # In the raw markup the query separator is entity-escaped, as HTML requires.
    assert f"?url={encoded_url}&amp;text=" in html


def test_html_has_copy_button_downloads_and_inline_qr() -> None:
    view = make_view()
    html = render_html(view)
    assert "navigator.clipboard.writeText" in html
    assert 'data-url="' + PAGE_URL.replace("&", "&amp;") + '"' in html
    hrefs = parse(html).hrefs
    assert view.image_url in hrefs and view.pdf_url in hrefs and PAGE_URL in hrefs
    assert 'src="data:image/png;base64,' in html
    assert "<script src" not in html and '<link rel="stylesheet"' not in html


def test_html_escapes_malicious_business_name() -> None:
    html = render_html(
        make_view(business_name="<script>alert(1)</script>", project_name='"><img onerror=x>')
    )
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img onerror" not in html
    assert html.count("<script>") == 1  # only the page's own copy-link script


def test_html_never_shows_an_email_customer() -> None:
    html = render_html(make_view(customer_name="jane.doe@example.com"))
    assert EMAIL_RE.search(html) is None
    assert "jane.doe" not in html
    assert "%40" not in html
    assert "on behalf of" not in html


def test_html_drops_non_http_urls() -> None:
    html = render_html(
        make_view(
            partner_website="javascript:alert(1)",
            location_map="javascript:alert(2)",
            impact_video="data:text/html,hi",
        )
    )
    assert "javascript:" not in html
    assert "data:text/html" not in html
    assert "<iframe" not in html
    assert "<span>Eden Reforestation Projects</span>" in html


def test_html_embeds_map_video_and_live_session() -> None:
    map_url = "https://www.google.com/maps/embed?pb=!1m18!1m12"
    html = render_html(
        make_view(
            location_map=map_url,
            impact_video="https://youtu.be/abc123",
            live_session_date=utc(2024, 10, 1, 15, 0),
        )
    )
    assert parse(html).iframes == [map_url]
    assert "https://youtu.be/abc123" in parse(html).hrefs
    assert "1 October 2024, 15:00 UTC" in html


def test_html_void_banner() -> None:
    html = render_html(
        make_view(
            status="void",
            cancelled_at=utc(2024, 10, 3, 8),
            cancellation_reason="Refunded by the bank",
        )
    )
    assert "VOID — this impact was cancelled on 3 October 2024" in html
    assert "Refunded by the bank" in html
    assert 'class="is-void kind-void"' in html
    assert "This impact is in progress" not in html


# --- PNG and QR ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["in_progress", "completed", "void"])
@pytest.mark.parametrize(
    "impact_type",
    ["tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"],
)
def test_png_is_1200_by_630(impact_type: str, status: str) -> None:
    data = render_png(
        make_view(impact_type=impact_type, status=status, cancelled_at=utc(2024, 10, 3))
    )
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    assert image.size == (1200, 630)


def test_png_band_colour_depends_on_impact_type() -> None:
    def band_pixel(view: CertificateView) -> tuple[int, ...]:
        pixel = Image.open(io.BytesIO(render_png(view))).convert("RGB").getpixel((10, 10))
        assert isinstance(pixel, tuple)
        return pixel

    trees, ocean = band_pixel(make_view()), band_pixel(make_view(impact_type="waste_removed"))
    assert trees != ocean
    assert trees[1] > trees[0] and trees[1] > trees[2]  # green
    assert ocean[2] > ocean[0] and ocean[2] > ocean[1]  # blue


def test_png_void_stamp_changes_the_image() -> None:
    view = make_view()
    assert render_png(replace(view, status="void")) != render_png(view)


def test_png_survives_very_long_and_non_latin_names() -> None:
    view = make_view(
        business_name="李华 Ünïcødé 🌳 " + "Extraordinarily Long Company Name " * 10,
        customer_name="Supercalifragilisticexpialidocious" * 4,
        partner_name="Partner " * 30,
    )
    image = Image.open(io.BytesIO(render_png(view)))
    assert image.size == (1200, 630)


def test_qr_png_is_a_square_png() -> None:
    image = Image.open(io.BytesIO(qr_png(PAGE_URL)))
    assert image.format == "PNG"
    width, height = image.size
    assert width == height
    # The smallest code: version 1 (21 modules) plus a 4-module border, at 8 px per module.
    assert width >= (21 + 8) * 8 and width % 8 == 0
    assert len(qr_png(PAGE_URL, box_size=4)) < len(qr_png(PAGE_URL))


# --- PDF ----------------------------------------------------------------------------------


def test_pdf_is_one_a4_page_with_ids_and_url() -> None:
    data = render_pdf(make_view())
    reader = PdfReader(io.BytesIO(data))
    assert len(reader.pages) == 1
    box = reader.pages[0].mediabox
    assert float(box.width) == pytest.approx(595, abs=1)
    assert float(box.height) == pytest.approx(842, abs=1)
    text = pdf_text(data)
    assert "OI-7F3K-92QD" in text
    assert PAGE_URL in text
    assert "trk_01J8ZKQ4M2VX7" in text
    assert "Transferred to" in text and "pending" in text
    assert "16 September 2024" in text
    assert reader.metadata is not None
    assert "OI-7F3K-92QD" in (reader.metadata.title or "")
    assert "VOID" not in text


def test_pdf_void_watermark_and_notice() -> None:
    text = pdf_text(render_pdf(make_view(status="void", cancelled_at=utc(2024, 10, 3))))
    assert "VOID" in text
    assert "cancelled on 3 October 2024" in text


def test_pdf_is_deterministic() -> None:
    view = make_view()
    assert render_pdf(view) == render_pdf(view)
