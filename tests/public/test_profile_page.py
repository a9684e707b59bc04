"""The profile page /impact/{slug} and its share image, as a visitor sees them."""

from __future__ import annotations

import io

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select

from openimpact.impacts.models import Impact
from openimpact.projects.models import Project
from tests.factories import Api
from tests.public.conftest import EMAIL, Page, Shop, advance, publish


def _page(client: TestClient, shop: Shop, **headers: str) -> Page:
    response = client.get(f"/impact/{shop.slug}", headers=headers)
    assert response.status_code == 200, response.text
    return Page(response.text)


def _project_of(api: Api, shop: Shop, time_utc: str) -> Project:
    from openimpact.timeutil import parse_iso_ms

    def load(session: object) -> Project:
        impact = session.scalar(  # type: ignore[attr-defined]
            select(Impact).where(
                Impact.account_id == shop.account_id,
                Impact.env == "production",
                Impact.time_ms == parse_iso_ms(time_utc),
            )
        )
        return session.get(Project, impact.project_id)  # type: ignore[attr-defined]

    return api.db.run_sync(load)


class TestContent:
    def test_totals_projects_and_latest_certificates(self, api: Api, client: TestClient) -> None:
        shop = publish(api, name="Green Grocer", logo_url="https://cdn.example.org/logo.png")
        jane = shop.api.plant(1000, customer_email="jane.doe@example.com", customer_name="Jane Doe")
        # A name that looks like an address is never shown (as on certificates).
        masked = shop.api.plant(
            200, customer_email="bob@example.com", customer_name="bob@example.com"
        )
        ocean = shop.api.impact("clean_ocean", 40)
        refunded = shop.api.plant(5000, customer_email="ann@example.com", customer_name="Ann")
        shop.api.post(
            "/v1/cancel_impact", {"user_id": shop.keys.user_id, "time_utc": refunded["time_utc"]}
        )
        shop.api.plant(34)  # initiated only: counted, no project, no certificate
        advance(
            api.db,
            [shop.tracking_id(c) for c in (jane, masked, ocean)],
            "receive",
            "transfer",
            "complete",
        )

        page = _page(client, shop)
        assert page.headings[0] == "Green Grocer"
        assert page.images == ["https://cdn.example.org/logo.png"]
        assert "1,234 trees planted" in page.text
        assert "40 lbs of ocean plastic removed" in page.text
        assert "5,000" not in page.text and "6,234" not in page.text  # the refund is out
        for created in (jane, ocean):
            project = _project_of(api, shop, created["time_utc"])
            assert project.i18n["en"]["name"] in page.headings
            assert project.i18n["en"]["location"] in page.text
        assert "1,000 trees planted on behalf of Jane Doe" in page.text
        assert "200 trees planted" in page.text
        assert "bob" not in page.text and not EMAIL.search(page.html)
        certificate = page.link("on behalf of Jane Doe")
        assert certificate.startswith("http://testserver/certificates/")
        assert client.get(certificate).status_code == 200

    def test_latest_six_certificates_newest_first(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        first = shop.api.impact("restore_coral", 99)
        advance(api.db, [shop.tracking_id(first)], "receive", "transfer", "complete")
        later = [shop.api.impact("restore_coral", n) for n in range(1, 8)]
        advance(api.db, [shop.tracking_id(c) for c in later], "receive", "transfer", "complete")
        page = _page(client, shop)
        shown = [label for label, href in page.links if "/certificates/" in href]
        assert len(shown) == 6
        assert not any(label.startswith("99 ") for label in shown)

    def test_a_profile_without_impact(self, api: Api, client: TestClient) -> None:
        page = _page(client, publish(api, name="Brand New"))
        assert "No impact yet." in page.text
        assert "No project has received this impact yet." in page.text
        assert "No completed certificate yet." in page.text


class TestSharing:
    def test_open_graph_and_twitter_cards(self, api: Api, client: TestClient) -> None:
        shop = publish(api, name="Green Grocer")
        shop.api.plant(12)
        shop.api.impact("donate_money", 500)
        page = _page(client, shop)
        url = f"http://testserver/impact/{shop.slug}"
        assert page.meta["og:url"] == url
        assert page.meta["og:title"] == "The impact of Green Grocer"
        assert page.meta["og:description"] == (
            "12 trees planted, $5.00 donated: the verified impact of Green Grocer."
        )
        assert page.meta["og:image"] == f"{url}/share.png"
        assert (page.meta["og:image:width"], page.meta["og:image:height"]) == ("1200", "630")
        assert page.meta["twitter:card"] == "summary_large_image"
        assert page.meta["twitter:image"] == page.meta["og:image"]
        share = client.get(page.meta["og:image"])
        assert share.status_code == 200
        assert share.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(share.content))
        assert image.size == (1200, 630)
        linkedin = page.link("Share on LinkedIn")
        assert linkedin.startswith("https://www.linkedin.com/")
        assert "impact%2F" + shop.slug in linkedin

    def test_the_share_image_changes_with_the_totals(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        before = client.get(f"/impact/{shop.slug}/share.png").content
        shop.api.plant(77)
        from tests.public.conftest import eventually

        after = eventually(
            lambda: client.get(f"/impact/{shop.slug}/share.png").content, lambda c: c != before
        )
        assert after != before


class TestLocales:
    def test_query_then_accept_language_then_english(self, api: Api, client: TestClient) -> None:
        shop = publish(api, name="Grüner Laden")
        shop.api.plant(1234)
        german = _page(client, shop, **{"accept-language": "de-DE,de;q=0.9,en;q=0.5"})
        assert "Gesamtwirkung" in german.headings
        assert "1.234 Bäume gepflanzt" in german.text
        assert '<html lang="de">' in german.html
        assert german.meta["og:image"].endswith("share.png?locale=de")
        by_query = Page(client.get(f"/impact/{shop.slug}?locale=de").text)
        assert "Gesamtwirkung" in by_query.headings
        english = Page(
            client.get(f"/impact/{shop.slug}?locale=en", headers={"accept-language": "de"}).text
        )
        assert "Total impact" in english.headings
        for fallback in ({"accept-language": "fr-FR,fr;q=0.9"}, {}):
            assert "Total impact" in _page(client, shop, **fallback).headings
        assert "Total impact" in Page(client.get(f"/impact/{shop.slug}?locale=xx").text).headings
        # The other language is one link away.
        assert german.link("English") == "?locale=en"

    def test_vary_and_cache_headers(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        response = client.get(f"/impact/{shop.slug}")
        assert response.headers["vary"] == "Accept-Language"
        assert response.headers["cache-control"] == "public, max-age=60"


class TestSafety:
    def test_strict_csp_and_no_inline_code(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(3)
        response = client.get(f"/impact/{shop.slug}")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        page = Page(response.text)
        assert page.inline_code == []
        [stylesheet] = page.stylesheets
        css = client.get(stylesheet)
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"

    def test_user_text_is_escaped(self, api: Api, client: TestClient) -> None:
        shop = publish(api, name='<script>alert("x")</script> & Co')
        response = client.get(f"/impact/{shop.slug}")
        assert "<script>" not in response.text
        page = Page(response.text)
        assert page.headings[0] == '<script>alert("x")</script> & Co'
        assert page.inline_code == []

    def test_an_http_logo_is_allowed_by_the_csp(self, api: Api, client: TestClient) -> None:
        shop = publish(api, logo_url="http://logos.example.net/shop.png")
        response = client.get(f"/impact/{shop.slug}")
        assert (
            "img-src 'self' data: https: http://logos.example.net;"
            in (response.headers["content-security-policy"])
        )
        assert Page(response.text).images == ["http://logos.example.net/shop.png"]

    def test_off_profile_page_and_image_are_the_unknown_404(
        self, api: Api, client: TestClient
    ) -> None:
        off = publish(api, name="Secret Garden", enabled=False)
        for path in ("", "/share.png"):
            hidden = client.get(f"/impact/{off.slug}{path}")
            unknown = client.get(f"/impact/nobody-here{path}")
            assert hidden.status_code == unknown.status_code == 404
            assert hidden.json() == unknown.json()
            assert "Secret Garden" not in hidden.text
