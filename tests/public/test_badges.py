"""Badges: /badge/{slug}/{type}.svg and the shields.io endpoint JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from fastapi.testclient import TestClient

from tests.factories import Api
from tests.public.conftest import publish

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> list[str]:
    root = ET.fromstring(svg)
    # Each text is drawn twice (shadow, then the text itself); keep one of each.
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("aria-hidden") != "true"]


class TestSvg:
    def test_label_and_value(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(1200)
        shop.api.plant(34, customer_email="jane@example.com")
        response = client.get(f"/badge/{shop.slug}/tree_planted.svg")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/svg+xml; charset=utf-8"
        assert response.headers["cache-control"] == "public, max-age=60"
        assert response.headers["access-control-allow-origin"] == "*"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        root = ET.fromstring(response.text)
        assert root.get("aria-label") == "trees planted: 1,234"
        assert _texts(response.text) == ["trees planted", "1,234"]
        assert root.find(f"{SVG}title").text == "trees planted: 1,234"  # type: ignore[union-attr]

    def test_every_type_has_a_badge_in_its_unit(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.impact("clean_ocean", 1)
        shop.api.impact("capture_carbon", 2500)
        shop.api.impact("restore_coral", 3)
        shop.api.impact("donate_money", 123456)
        expected = {
            "tree_planted": ["trees planted", "0"],
            "waste_removed": ["ocean plastic removed", "1 lb"],
            "carbon_captured": ["CO₂ captured", "2,500 lbs"],
            "coral_restored": ["coral restored", "3"],
            "money_donated": ["donated", "$1,234.56"],
        }
        for kind, texts in expected.items():
            response = client.get(f"/badge/{shop.slug}/{kind}.svg")
            assert response.status_code == 200, response.text
            assert _texts(response.text) == texts
        german = client.get(f"/badge/{shop.slug}/money_donated.svg?locale=de")
        assert _texts(german.text) == ["gespendet", "1.234,56\u00a0$"]

    def test_label_and_color_options(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(7)
        url = f"/badge/{shop.slug}/tree_planted.svg"
        custom = client.get(url, params={"label": "Our <forest>", "color": "blue"})
        assert _texts(custom.text) == ["Our <forest>", "7"]
        assert "&lt;forest&gt;" in custom.text and "<forest>" not in custom.text
        assert 'fill="#007ec6"' in custom.text
        assert 'fill="#ff8800"' in client.get(url, params={"color": "FF8800"}).text
        assert 'fill="#abc"' in client.get(url, params={"color": "#abc"}).text
        bare = client.get(url, params={"label": ""})
        assert _texts(bare.text) == ["7"]

    def test_bad_options_are_400_naming_the_parameter(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        url = f"/badge/{shop.slug}/tree_planted.svg"
        for params, field in (
            ({"color": "javascript:alert(1)"}, "color"),
            ({"color": "#12345"}, "color"),
            ({"label": "x" * 61}, "label"),
            ({"label": "tab\there"}, "label"),
        ):
            response = client.get(url, params=params)
            assert response.status_code == 400, params
            assert response.json()["type"] == "validation_error"
            assert response.json()["message"].startswith(f"{field}: ")

    def test_unknown_type_is_a_404_naming_the_types(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        for suffix in ("svg", "json"):
            response = client.get(f"/badge/{shop.slug}/trees.{suffix}")
            assert response.status_code == 404
            assert response.json() == {
                "type": "not_found",
                "message": "no badge for type 'trees'; types: tree_planted, waste_removed, "
                "carbon_captured, coral_restored, money_donated",
            }

    def test_etag_and_304(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        url = f"/badge/{shop.slug}/coral_restored.svg"
        etag = client.get(url).headers["etag"]
        assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
        other = client.get(url, params={"color": "red"}).headers["etag"]
        assert other != etag


class TestEndpointJson:
    def test_shields_endpoint_schema(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.impact("capture_carbon", 2500)
        response = client.get(f"/badge/{shop.slug}/carbon_captured.json")
        assert response.status_code == 200
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.json() == {
            "schemaVersion": 1,
            "label": "CO₂ captured",
            "message": "2,500 lbs",
            "color": "546e7a",
        }
        named = client.get(
            f"/badge/{shop.slug}/carbon_captured.json", params={"color": "green", "label": "CO2"}
        )
        assert named.json() == {
            "schemaVersion": 1,
            "label": "CO2",
            "message": "2,500 lbs",
            "color": "green",
        }

    def test_off_and_unknown_profiles_have_no_badge(self, api: Api, client: TestClient) -> None:
        off = publish(api, enabled=False)
        off.api.plant(5)
        for suffix in ("svg", "json"):
            hidden = client.get(f"/badge/{off.slug}/tree_planted.{suffix}")
            unknown = client.get(f"/badge/never-published/tree_planted.{suffix}")
            assert hidden.status_code == unknown.status_code == 404
            assert hidden.json() == unknown.json()
