"""GET /public/v1/profiles/{slug}: the JSON behind the widget and the badges."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient
from sqlalchemy import update

from openimpact.accounts.models import Ledger
from tests.factories import Api
from tests.public.conftest import eventually, publish, set_profile

ZERO = dict.fromkeys(
    ("tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated"), 0
)


class TestShape:
    def test_totals_are_direct_plus_customer_production_impact(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api, name="Green Grocer", logo_url="https://cdn.example.org/logo.png")
        shop.api.plant(10)
        shop.api.plant(5, customer_email="jane@example.com", customer_name="Jane")
        shop.api.impact("clean_ocean", 40, customer_email="sam@example.com")
        shop.api.impact("donate_money", 1250)
        api.as_(shop.keys, "sandbox").plant(999)  # sandbox never shows

        response = client.get(f"/public/v1/profiles/{shop.slug}")
        assert response.status_code == 200
        body = response.json()
        assert body == {
            "slug": shop.slug,
            "name": "Green Grocer",
            "logo_url": "https://cdn.example.org/logo.png",
            "profile_url": f"http://testserver/impact/{shop.slug}",
            "totals": ZERO | {"tree_planted": 15, "waste_removed": 40, "money_donated": 1250},
            "units": {
                "tree_planted": "trees",
                "waste_removed": "lbs",
                "carbon_captured": "lbs CO₂",
                "coral_restored": "coral fragments",
                "money_donated": "US cents",
            },
        }
        impact = shop.api.get("/v1/impact").json()
        assert {k: impact[k] for k in ZERO} == body["totals"]

    def test_open_to_every_origin_and_cacheable_for_a_minute(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        response = client.get(
            f"/public/v1/profiles/{shop.slug}", headers={"Origin": "https://elsewhere.example"}
        )
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["cache-control"] == "public, max-age=60"
        assert response.headers["content-type"] == "application/json"
        assert "set-cookie" not in response.headers
        preflight = client.options(
            f"/public/v1/profiles/{shop.slug}",
            headers={
                "Origin": "https://elsewhere.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "if-none-match",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "If-None-Match" in preflight.headers["access-control-allow-headers"]

    def test_etag_and_304_until_the_totals_change(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(3)
        url = f"/public/v1/profiles/{shop.slug}"
        first = client.get(url)
        etag = first.headers["etag"]
        again = client.get(url, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "public, max-age=60"
        assert client.get(url, headers={"If-None-Match": f'"other", W/{etag}'}).status_code == 304
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200

        shop.api.plant(2)
        changed = eventually(
            lambda: client.get(url, headers={"If-None-Match": etag}),
            lambda r: r.status_code == 200,
        )
        assert changed.status_code == 200
        assert changed.json()["totals"]["tree_planted"] == 5
        assert changed.headers["etag"] != etag

    def test_slugs_are_case_insensitive(self, api: Api, client: TestClient) -> None:
        shop = publish(api, slug=f"Mixed-Case-{secrets.token_hex(3)}")
        response = client.get(f"/public/v1/profiles/{shop.slug.upper()}")
        assert response.status_code == 200
        assert response.json()["slug"] == shop.slug


class TestFreshness:
    def test_an_impact_and_its_cancellation_show_within_seconds(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        url = f"/public/v1/profiles/{shop.slug}"
        assert client.get(url).json()["totals"]["coral_restored"] == 0
        created = shop.api.impact("restore_coral", 7, customer_email="c@example.com")
        body = eventually(
            lambda: client.get(url).json(), lambda b: b["totals"]["coral_restored"] == 7
        )
        assert body["totals"]["coral_restored"] == 7
        cancel = shop.api.post(
            "/v1/cancel_impact",
            {"user_id": shop.keys.user_id, "time_utc": created["time_utc"], "reason": "refund"},
        )
        assert cancel.status_code == 200
        body = eventually(
            lambda: client.get(url).json(), lambda b: b["totals"]["coral_restored"] == 0
        )
        assert body["totals"]["coral_restored"] == 0

    def test_reads_the_stored_totals_row_not_the_impacts(
        self, api: Api, client: TestClient
    ) -> None:
        # The ledger is the stored totals row every write keeps current; a
        # number that only the ledger holds proves the answer comes from it.
        shop = publish(api)
        shop.api.plant(1)
        api.db.run_sync(
            lambda s: s.execute(
                update(Ledger)
                .where(Ledger.account_id == shop.account_id, Ledger.env == "production")
                .values(user_carbon_captured=123_456)
            ),
            write=True,
        )
        body = eventually(
            lambda: client.get(f"/public/v1/profiles/{shop.slug}").json(),
            lambda b: b["totals"]["carbon_captured"] == 123_456,
        )
        assert body["totals"]["carbon_captured"] == 123_456


class TestNotFound:
    def test_unknown_and_off_are_the_same_404(self, api: Api, client: TestClient) -> None:
        off = publish(api, name="Quiet Shop", enabled=False)
        off.api.plant(4242)
        unknown = client.get("/public/v1/profiles/no-such-shop-here")
        hidden = client.get(f"/public/v1/profiles/{off.slug}")
        assert unknown.status_code == hidden.status_code == 404
        assert (
            unknown.json()
            == hidden.json()
            == {
                "type": "not_found",
                "message": "no public impact profile at this address",
            }
        )
        assert unknown.headers.get("content-type") == hidden.headers.get("content-type")

    def test_turning_a_profile_off_hides_it_within_seconds(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        url = f"/public/v1/profiles/{shop.slug}"
        assert client.get(url).status_code == 200
        set_profile(api, shop, enabled=False)
        assert (
            eventually(lambda: client.get(url), lambda r: r.status_code == 404).status_code == 404
        )
        set_profile(api, shop, enabled=True)
        assert (
            eventually(lambda: client.get(url), lambda r: r.status_code == 200).status_code == 200
        )

    def test_malformed_slugs_are_a_404_never_a_500(self, client: TestClient) -> None:
        for slug in ("a", "-x-", "x" * 300, "ünïcode", "..%2F..", "a b", "%F0%9F%8C%B3"):
            response = client.get(f"/public/v1/profiles/{slug}")
            assert response.status_code in (400, 404), (slug, response.text)
            assert set(response.json()) == {"type", "message"}
