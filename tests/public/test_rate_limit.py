"""The public endpoints' budget per client address (OPENIMPACT_PUBLIC_RATE_LIMIT)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from openimpact.app import create_app
from openimpact.config import Settings
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.public.conftest import publish


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    return database.settings(public_rate_limit="4/minute")


def _from(client: TestClient, address: str) -> TestClient:
    return TestClient(client.app, client=(address, 40000))


class TestPublicRateLimit:
    def test_a_json_429_with_retry_after_past_the_budget(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        visitor = _from(client, "198.51.100.7")
        paths = [
            f"/public/v1/profiles/{shop.slug}",
            f"/badge/{shop.slug}/tree_planted.svg",
            f"/impact/{shop.slug}",
            f"/widget/{shop.slug}/counter",
        ]
        assert [visitor.get(path).status_code for path in paths] == [200, 200, 200, 200]
        refused = visitor.get(f"/badge/{shop.slug}/tree_planted.json")
        assert refused.status_code == 429
        assert refused.json()["type"] == "rate_limit_error"
        assert refused.json()["message"].startswith(
            "rate limit of 4 requests per minute exceeded for this address; retry after "
        )
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["access-control-allow-origin"] == "*"
        # Unknown slugs and customer pages draw on the same budget.
        assert visitor.get("/impact/nobody-here").status_code == 429
        assert visitor.get("/my-impact/" + "A" * 32).status_code == 429

    def test_each_address_has_its_own_budget(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        url = f"/public/v1/profiles/{shop.slug}"
        first = _from(client, "198.51.100.20")
        for _ in range(4):
            assert first.get(url).status_code == 200
        assert first.get(url).status_code == 429
        assert _from(client, "198.51.100.21").get(url).status_code == 200
        # One IPv6 subscriber network (/64) is one address.
        a = _from(client, "2001:db8:1:2::1")
        b = _from(client, "2001:db8:1:2:ffff::9")
        for _ in range(4):
            assert a.get(url).status_code == 200
        assert b.get(url).status_code == 429
        assert _from(client, "2001:db8:1:3::1").get(url).status_code == 200
        # An IPv4 client seen through a dual-stack socket is that IPv4 address.
        assert _from(client, "::ffff:198.51.100.20").get(url).status_code == 429
        assert _from(client, "::ffff:198.51.100.22").get(url).status_code == 200

    def test_static_files_and_the_api_are_not_counted(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        visitor = _from(client, "198.51.100.30")
        for _ in range(10):
            assert visitor.get("/widget.js").status_code == 200
            assert visitor.get("/public/static/public.css").status_code == 200
            assert (
                visitor.get(
                    "/v1/impact", headers={"x-api-key": shop.keys.production_key}
                ).status_code
                == 200
            )
        assert visitor.get(f"/public/v1/profiles/{shop.slug}").status_code == 200


def test_off_means_no_limit(database: TestDatabase) -> None:
    app = create_app(database.settings(public_rate_limit="off"))
    with TestClient(app, client=("198.51.100.40", 1)) as client:
        api = Api(client)
        shop = publish(api)
        assert all(
            client.get(f"/public/v1/profiles/{shop.slug}").status_code == 200 for _ in range(30)
        )


def test_the_setting_is_checked() -> None:
    assert Settings(public_rate_limit="600/Minute").public_rate_limit == "600/minute"
    assert Settings(public_rate_limit="OFF").public_rate_limit == "off"
    with pytest.raises(ValueError, match="OPENIMPACT_PUBLIC_RATE_LIMIT"):
        Settings(public_rate_limit="lots")
