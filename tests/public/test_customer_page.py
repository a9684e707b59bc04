"""/my-impact/{token}: one customer's impacts with one business, and nothing else."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from openimpact.errors import NotFound
from openimpact.public import service
from tests.factories import Api
from tests.public.conftest import EMAIL, Page, advance, publish


def _link(api: Api, account_pk: int, customer_id: str) -> service.CustomerPageLink:
    return api.db.run_sync(
        lambda s: service.customer_page_link(s, account_pk, customer_id, "http://testserver"),
        write=True,
    )


class TestCustomerPage:
    def test_the_customers_impacts_stages_and_certificates(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api, name="Green Grocer", enabled=False)  # private: works with it off
        jane = "jane.doe@example.com"
        planted = shop.api.plant(5, customer_email=jane, customer_name="Jane Doe")
        ocean = shop.api.impact("clean_ocean", 40, customer_email=jane)
        refunded = shop.api.impact("restore_coral", 3, customer_email=jane)
        shop.api.post(
            "/v1/cancel_impact",
            {"user_id": shop.keys.user_id, "time_utc": refunded["time_utc"], "reason": jane},
        )
        # Not Jane's: another customer's, the business's own, the sandbox's.
        shop.api.plant(777, customer_email="sam@example.com", customer_name="Sam")
        shop.api.plant(888)
        api.as_(shop.keys, "sandbox").plant(999, customer_email=jane)
        advance(api.db, [shop.tracking_id(planted)], "receive", "transfer", "complete")
        advance(api.db, [shop.tracking_id(ocean)], "receive")

        link = _link(api, shop.account_id, planted["customer"]["customer_id"])
        assert link.url == f"http://testserver/my-impact/{link.token}"
        assert len(link.token) == 32
        response = client.get(f"/my-impact/{link.token}")
        assert response.status_code == 200
        page = Page(response.text)
        assert page.headings[0] == "Your impact with Green Grocer"
        assert "Hello Jane Doe," in page.text
        # Newest first: the refund, the ocean cleanup, the trees.
        impacts = [h for h in page.headings if h[0].isdigit()]
        assert impacts == [
            "3 coral fragments restored",
            "40 lbs of ocean plastic removed",
            "5 trees planted",
        ]
        assert "Cancelled" in page.text
        assert "Donation Received" in page.text and "Transferred to Partner" in page.text
        assert page.link("Certificate (final)").startswith("http://testserver/certificates/")
        assert page.link("Certificate (in progress)")
        assert page.link("Certificate (void)")
        # Jane's total excludes the refund.
        assert "5 trees planted 40 lbs of ocean plastic removed" in page.text
        for other in ("777", "888", "999", "Sam"):
            assert other not in page.text
        assert not EMAIL.search(response.text)  # not even the reason typed as an address

    def test_private_headers(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        created = shop.api.plant(1, customer_email="kim@example.com")
        link = _link(api, shop.account_id, created["customer"]["customer_id"])
        response = client.get(f"/my-impact/{link.token}")
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-robots-tag"] == "noindex, nofollow"
        assert 'name="robots" content="noindex, nofollow"' in response.text
        assert Page(response.text).inline_code == []

    def test_the_same_link_until_rotated_then_only_the_new_one(
        self, api: Api, client: TestClient
    ) -> None:
        shop = publish(api)
        customer_id = shop.api.plant(1, customer_email="lee@example.com")["customer"]["customer_id"]
        first = _link(api, shop.account_id, customer_id)
        assert _link(api, shop.account_id, customer_id) == first
        rotated = api.db.run_sync(
            lambda s: service.rotate_customer_page_link(
                s, shop.account_id, customer_id, "https://impact.example.org"
            ),
            write=True,
        )
        assert rotated.token != first.token
        assert rotated.url == f"https://impact.example.org/my-impact/{rotated.token}"
        assert client.get(f"/my-impact/{first.token}").status_code == 404
        assert client.get(f"/my-impact/{rotated.token}").status_code == 200
        assert _link(api, shop.account_id, customer_id).token == rotated.token

    def test_only_the_accounts_own_production_customers(self, api: Api) -> None:
        shop = publish(api)
        other = publish(api)
        theirs = other.api.plant(1, customer_email="x@example.com")["customer"]["customer_id"]
        sandbox = api.as_(shop.keys, "sandbox").plant(1, customer_email="y@example.com")
        for customer_id in (theirs, sandbox["customer"]["customer_id"], "Cnope"):
            with pytest.raises(NotFound):
                _link(api, shop.account_id, customer_id)

    def test_unknown_tokens_are_one_404(self, client: TestClient) -> None:
        answers = {
            client.get(f"/my-impact/{token}").text
            for token in ("A" * 32, "short", "x" * 500, "%2e%2e", "a" * 31 + "!")
        }
        assert answers == {
            '{"type":"not_found","message":"no customer impact page at this address"}'
        }
