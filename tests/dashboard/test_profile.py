"""The dashboard's Public profile page and the customer's private page link,
through the same services as the CLI (public/service.py). On both databases."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.dashboard.helpers import (
    db_of,
    field_error,
    signed_in,
    visible_text,
)
from tests.factories import Caller


def _slug(dashboard: object) -> str:
    return "shop-" + dashboard.account.user_id.lower()  # type: ignore[attr-defined]


class TestProfileSettings:
    def test_an_owner_turns_the_profile_on_and_it_is_public(self, client: TestClient) -> None:
        owner = signed_in(client, name="Corner Shop")
        slug = _slug(owner)
        assert client.get(f"/public/v1/profiles/{slug}").status_code == 404
        saved = owner.post(
            "/dashboard/profile",
            {"slug": slug, "name": "The <b>Corner</b> Shop", "logo_url": "", "enabled": "on"},
        )
        assert saved.status_code == 303
        assert saved.headers["location"] == "/dashboard/profile?saved=1"
        public = client.get(f"/public/v1/profiles/{slug}")
        assert public.status_code == 200
        assert public.json()["name"] == "The <b>Corner</b> Shop"
        page = owner.page("/dashboard/profile", saved="1")
        assert "Profile saved. It is public now." in visible_text(page)
        # The builder's snippets name this profile; markup stays text.
        assert f'data-openimpact-counter="{slug}"' in page.replace("&#34;", '"').replace(
            "&quot;", '"'
        )
        assert "The <b>Corner</b> Shop" not in page
        # Turning it off hides it again (the same 404 as an unknown slug).
        owner.post("/dashboard/profile", {"slug": slug, "name": "", "logo_url": ""})
        assert client.get(f"/public/v1/profiles/{slug}").status_code == 404

    @pytest.mark.parametrize(
        ("form", "field", "text"),
        [
            ({"slug": "Not a slug!", "enabled": "on"}, "slug", "slug"),
            ({"slug": "", "enabled": "on"}, "slug", "choose a slug"),
            ({"slug": "fine-slug-x", "logo_url": "javascript:alert(1)"}, "logo_url", "http"),
        ],
    )
    def test_bad_input_gets_a_message_next_to_the_field_and_changes_nothing(
        self, client: TestClient, form: dict[str, str], field: str, text: str
    ) -> None:
        owner = signed_in(client)
        answer = owner.post("/dashboard/profile", {"name": "", "logo_url": "", **form})
        assert answer.status_code == 200
        message = field_error(answer.text, field)
        assert message is not None and text.lower() in message.lower()
        page = owner.page("/dashboard/profile")
        assert "Impact Counter and badges" not in page  # still no slug saved

    def test_a_taken_slug_is_refused(self, client: TestClient) -> None:
        first = signed_in(client)
        slug = _slug(first)
        assert first.post("/dashboard/profile", {"slug": slug}).status_code == 303
        second = signed_in(client)
        answer = second.post("/dashboard/profile", {"slug": slug})
        assert "already taken" in (field_error(answer.text, "slug") or "")

    def test_members_see_the_profile_but_cannot_change_it(self, client: TestClient) -> None:
        owner = signed_in(client)
        member = signed_in(client, owner.account, role="member")
        assert "Save profile" not in member.page("/dashboard/profile")
        refused = member.post("/dashboard/profile", {"slug": _slug(owner), "enabled": "on"})
        assert refused.status_code == 403
        assert client.get(f"/public/v1/profiles/{_slug(owner)}").status_code == 404

    def test_the_builder_answers_its_own_block_for_htmx(self, client: TestClient) -> None:
        owner = signed_in(client)
        owner.post("/dashboard/profile", {"slug": _slug(owner), "enabled": "on"})
        block = owner.client.get(
            "/dashboard/profile",
            params={"types": ["coral_restored"], "theme": "dark", "locale": "de"},
            headers={"HX-Request": "true", "HX-Target": "widget-builder"},
        )
        assert block.status_code == 200
        assert "<html" not in block.text
        assert "types=coral_restored&amp;theme=dark&amp;locale=de" in block.text
        # The preview frames the server's own counter page and nothing else.
        assert "frame-src 'self'" in block.headers["content-security-policy"]


class TestCustomerPageLink:
    def test_the_link_opens_the_customers_page_and_rotating_it_ends_the_old_one(
        self, client: TestClient
    ) -> None:
        owner = signed_in(client)
        api = Caller(client, owner.account.production_key, owner.account)
        created = api.plant(4, customer_email="jane@example.com", customer_name="Jane")
        customer_id = created["customer"]["customer_id"]
        page = owner.page(f"/dashboard/customers/{customer_id}")
        old = next(
            word.split('"')[1]
            for word in page.split("href=")
            if word.startswith('"http://testserver/my-impact/')
        )
        path = httpx.URL(old).path
        assert client.get(path).status_code == 200
        rotated = owner.post(f"/dashboard/customers/{customer_id}/rotate-link")
        assert rotated.status_code == 303
        assert client.get(path).status_code == 404
        assert "New link made" in visible_text(owner.page(rotated.headers["location"]))

    def test_sandbox_customers_have_no_private_page(self, client: TestClient) -> None:
        owner = signed_in(client)
        api = Caller(client, owner.account.sandbox_key, owner.account)
        created = api.plant(2, customer_email="sam@example.com")
        owner.post("/dashboard/env", {"env": "sandbox", "next": "/dashboard"})
        page = owner.page(f"/dashboard/customers/{created['customer']['customer_id']}")
        assert "Customer's impact page" not in page
        assert db_of(client) is not None
