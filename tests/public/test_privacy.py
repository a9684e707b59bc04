"""No public surface shows a customer's email, or anything of a profile that
is off: the profile page, its share image, the widget (script and iframe),
the badges, the public JSON and the customer pages."""

from __future__ import annotations

import io
import secrets
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from openimpact.kit import RECORD_KEYS
from openimpact.public import service
from tests.factories import Api
from tests.public.conftest import EMAIL, Shop, advance, publish


def _customers_and_impacts(shop: Shop, api: Api, tag: str) -> list[dict[str, Any]]:
    """Impacts on behalf of customers with every way an address could slip
    through: as the email, as the name, in a cancellation reason."""
    created = [
        shop.api.plant(11, customer_email=f"ada.{tag}@example.com", customer_name="Ada"),
        shop.api.plant(
            22, customer_email=f"bo.{tag}@example.org", customer_name=f"bo.{tag}@example.org"
        ),
        shop.api.impact("clean_ocean", 33, customer_email=f"cy.{tag}@example.net"),
    ]
    refunded = shop.api.impact("restore_coral", 4, customer_email=f"di.{tag}@example.com")
    shop.api.post(
        "/v1/cancel_impact",
        {
            "user_id": shop.keys.user_id,
            "time_utc": refunded["time_utc"],
            "reason": f"refund for di.{tag}@example.com",
        },
    )
    advance(api.db, [shop.tracking_id(c) for c in created], "receive", "transfer", "complete")
    return [*created, refunded]


def _pages_of(client: TestClient, api: Api, shop: Shop, impacts: list[dict[str, Any]]) -> list[str]:
    paths = [
        f"/public/v1/profiles/{shop.slug}",
        f"/impact/{shop.slug}",
        f"/impact/{shop.slug}?locale=de",
        f"/impact/{shop.slug}/share.png",
        f"/impact/{shop.slug}/share.png?locale=de",
        f"/widget/{shop.slug}/counter?types={','.join(RECORD_KEYS)}",
        f"/widget/{shop.slug}/counter?theme=dark&locale=de",
        *(f"/badge/{shop.slug}/{kind}.{ext}" for kind in RECORD_KEYS for ext in ("svg", "json")),
    ]
    for created in impacts:
        customer_id = created["customer"]["customer_id"]
        link = api.db.run_sync(
            lambda s, c=customer_id: service.customer_page_link(s, shop.account_id, c, ""),
            write=True,
        )
        paths.append(link.url)
    return paths


def _visible(response: Any) -> str:
    """The text of an answer; for an image, the text chunks it carries."""
    if response.headers.get("content-type") == "image/png":
        image = Image.open(io.BytesIO(response.content))
        return " ".join(f"{k}={v}" for k, v in image.info.items() if isinstance(v, str))
    return response.text


def test_no_email_and_nothing_of_a_profile_that_is_off(api: Api, client: TestClient) -> None:
    tag = secrets.token_hex(3)
    shown = publish(api, name="Open Orchard")
    shown_impacts = _customers_and_impacts(shown, api, f"shown{tag}")
    hidden = publish(
        api,
        name="Hidden Orchard Ltd",
        enabled=False,
        logo_url="https://hidden-orchard.example/logo.png",
    )
    api.db.run_sync(
        lambda s: service.update_profile(s, hidden.account_id, name="Hidden Orchard Q7"),
        write=True,
    )
    hidden_impacts = _customers_and_impacts(hidden, api, f"hidden{tag}")
    hidden.api.plant(43_190)  # totals only this profile has: 43,223 trees, 33 lbs
    secrets_of_hidden = ("Hidden Orchard Q7", "hidden-orchard.example", "43,223", "43223")
    emails = [created["customer"]["customer_email"] for created in shown_impacts + hidden_impacts]

    # Every surface of the profile that is on, and every customer's page.
    surfaces = _pages_of(client, api, shown, shown_impacts)
    # The customers of the hidden profile still have their private pages.
    surfaces += [
        path
        for path in _pages_of(client, api, hidden, hidden_impacts)
        if path.startswith("/my-impact/")
    ]
    surfaces += ["/widget.js", "/public/static/public.css", "/public/static/counter.css"]
    checked = 0
    for path in surfaces:
        response = client.get(path)
        assert response.status_code == 200, (path, response.text)
        seen = _visible(response)
        assert not EMAIL.search(seen), (path, EMAIL.search(seen))
        for email in emails:
            assert email.encode() not in response.content, (path, email)
        for secret in secrets_of_hidden:
            assert secret not in seen, (path, secret)
        checked += 1
    assert checked == len(surfaces) >= 28

    # What the profile that is off would have shown: the same 404 as nothing.
    unknown = {
        path: client.get(path.replace(hidden.slug, "no-such-profile"))
        for path in _pages_of(client, api, hidden, [])
    }
    for path, nothing in unknown.items():
        response = client.get(path)
        assert response.status_code == nothing.status_code == 404, path
        assert response.content == nothing.content, path
