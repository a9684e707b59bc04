"""The Impact Counter without a browser: the iframe page and the script as
served (tests/public/test_widget_browser.py runs them in Chromium)."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from tests.factories import Api
from tests.public.conftest import Page, publish


class TestIframePage:
    def test_chosen_totals_with_units_and_a_link_to_the_profile(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api, name="Green Grocer")
        shop.api.plant(1500)
        shop.api.impact("clean_ocean", 1)
        shop.api.impact("donate_money", 250)
        response = client.get(
            f"/widget/{shop.slug}/counter",
            params={"types": "waste_removed,tree_planted,coral_restored", "theme": "dark"},
        )
        assert response.status_code == 200
        page = Page(response.text)
        assert page.text.startswith("Green Grocer")
        assert "1 lb of ocean plastic removed 1,500 trees planted 0 coral fragments restored" in (
            page.text
        )
        assert "donated" not in page.text
        href = page.link("See the impact profile")
        assert href == f"http://testserver/impact/{shop.slug}"
        assert 'target="_blank"' in response.text
        assert "oi-theme-dark" in response.text
        assert page.inline_code == []

    def test_without_types_it_shows_every_type_with_impact(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        shop.api.impact("capture_carbon", 12)
        shop.api.impact("donate_money", 99)
        page = Page(client.get(f"/widget/{shop.slug}/counter").text)
        assert "12 lbs of CO₂ captured" in page.text
        assert "$0.99 donated" in page.text
        assert "trees planted" not in page.text
        empty = Page(client.get(f"/widget/{publish(api).slug}/counter").text)
        assert "0 trees planted" in empty.text

    def test_german(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(2000)
        page = Page(client.get(f"/widget/{shop.slug}/counter?locale=de").text)
        assert "2.000 Bäume gepflanzt" in page.text
        assert page.link("Zum Impact-Profil").endswith("?locale=de")

    def test_any_site_may_frame_it_and_nothing_else(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        counter = client.get(f"/widget/{shop.slug}/counter")
        assert "frame-ancestors *" in counter.headers["content-security-policy"]
        assert "x-frame-options" not in counter.headers
        assert "script-src 'self'" in counter.headers["content-security-policy"]
        for path in (f"/impact/{shop.slug}",):
            other = client.get(path)
            assert "frame-ancestors 'none'" in other.headers["content-security-policy"]
            assert other.headers["x-frame-options"] == "DENY"

    def test_bad_parameters_are_400_naming_them(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        for params, field in (
            ({"types": "tree_planted,trees"}, "types"),
            ({"theme": "pink"}, "theme"),
        ):
            response = client.get(f"/widget/{shop.slug}/counter", params=params)
            assert response.status_code == 400
            assert response.json()["message"].startswith(f"{field}: ")


class TestScript:
    def test_served_filled_in_from_its_origin(self, client: TestClient) -> None:
        response = client.get("/widget.js")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=300"
        assert response.headers["cross-origin-resource-policy"] == "cross-origin"
        script = response.text
        assert "__OPENIMPACT_" not in script
        strings = json.loads(re.search(r"var STRINGS = (\{.*?\});\n", script)[1])  # type: ignore[index]
        assert strings["de"]["types"]["tree_planted"] == ["Baum gepflanzt", "Bäume gepflanzt"]
        assert strings["en"]["counter_more"] == "See the impact profile"
        # What it may do, stated by what it contains: one fetch, no cookies.
        assert script.count("fetch(") == 1
        assert 'credentials: "omit"' in script
        assert "document.cookie" not in script and "localStorage" not in script
        assert ".innerHTML" not in script and "insertAdjacentHTML" not in script
        assert (
            client.get(
                "/widget.js", headers={"If-None-Match": response.headers["etag"]}
            ).status_code
            == 304
        )

    def test_the_counter_stylesheet_is_the_one_in_the_script(self, client: TestClient) -> None:
        css = client.get("/public/static/counter.css").text
        script = client.get("/widget.js").text
        assert json.dumps(css, ensure_ascii=False) in script
        assert client.get("/public/static/nothing.css").status_code == 404
