"""The dashboard's Webhooks page: the API's endpoints, added, tested, disabled,
enabled and deleted by owners through the same service, their secrets revealed
and rotated, their delivery log read and resent from; seen by members. Tests
send to the real local receiver of tests/webhooks/receiver.py."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from standardwebhooks import Webhook

from openimpact.config import Settings
from openimpact.dashboard import views
from openimpact.outbox.service import EVENT_TYPES
from openimpact.webhooks import delivery
from openimpact.webhooks.models import WebhookEndpoint, WebhookMessage
from openimpact.webhooks.service import MAX_ENDPOINTS
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    FORM_ERROR,
    XSS_IMG,
    XSS_SCRIPT,
    Apps,
    Dashboard,
    button,
    db_of,
    field_error,
    link,
    signed_in,
    visible_text,
)
from tests.factories import Caller
from tests.webhooks.receiver import Receiver, running

ENDPOINT_ID = re.compile(r"/dashboard/webhooks/(we_[a-z0-9]+)")


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    # The receiver listens on 127.0.0.1, which the SSRF guard refuses by default.
    return database.settings(webhooks_allow_private=True)


@pytest.fixture
def rx() -> Iterator[Receiver]:
    with running() as receiver:
        yield receiver


def _api(client: TestClient, owner: Dashboard) -> Caller:
    return Caller(client, owner.account.production_key, owner.account)


def _add(owner: Dashboard, url: str, **fields: str | list[str]) -> str:
    """Add an endpoint with the page's form; its id (from the address it leads to)."""
    made = owner.post("/dashboard/webhooks", {"url": url, **fields})  # type: ignore[dict-item]
    assert made.status_code == 303, made.text[:3000]
    found = ENDPOINT_ID.match(made.headers["location"])
    assert found and made.headers["location"].endswith("?created=1"), made.headers["location"]
    return found.group(1)


def _endpoints(client: TestClient, owner: Dashboard) -> list[dict[str, object]]:
    return _api(client, owner).walk("/v1/webhook_endpoints", "webhook_endpoints")


def _deliveries(client: TestClient, owner: Dashboard, endpoint_id: str) -> list[dict[str, object]]:
    path = f"/v1/webhook_endpoints/{endpoint_id}/deliveries"
    return _api(client, owner).walk(path, "deliveries")


def test_the_nav_links_to_the_page(client: TestClient) -> None:
    owner = signed_in(client)
    assert link(owner.page("/dashboard/schedules"), "Webhooks") == "/dashboard/webhooks"
    page = owner.page("/dashboard/webhooks")
    assert '<a href="/dashboard/webhooks" aria-current="page">Webhooks</a>' in page
    assert "No endpoints yet" in visible_text(page)


def test_owner_adds_endpoints(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    chosen = _add(
        owner,
        rx.url,
        description="Order system",
        event_types=["impact.completed", "impact.initiated"],
    )
    every = _add(owner, rx.url + "/all")
    page = owner.page(f"/dashboard/webhooks/{chosen}", created="1")
    text = visible_text(page)
    assert "Endpoint added" in text and rx.url in text and "Order system" in text
    assert "whsec_" not in page  # the secret is never in a page by default

    text = visible_text(owner.page("/dashboard/webhooks"))
    assert chosen in text and every in text and "Order system" in text
    assert "impact.initiated impact.completed" in text  # in the order of EVENT_TYPES
    assert "All events" in text and "Enabled" in text
    by_id = {e["id"]: e for e in _endpoints(client, owner)}
    assert by_id[chosen]["url"] == rx.url and by_id[chosen]["description"] == "Order system"
    assert by_id[chosen]["event_types"] == ["impact.initiated", "impact.completed"]
    assert by_id[every]["event_types"] is None and by_id[every]["description"] is None


def test_every_event_type_is_offered(client: TestClient) -> None:
    page = signed_in(client).page("/dashboard/webhooks")
    offered = re.findall(r'<input type="checkbox" name="event_types" value="([^"]+)"', page)
    assert offered == list(EVENT_TYPES)


@pytest.fixture
def strict(database: TestDatabase, apps: Apps) -> TestClient:
    """The app as deployed: private and loopback addresses refused."""
    return apps.client(database.settings())


def test_bad_input_is_shown_next_to_the_field_and_nothing_is_written(
    strict: TestClient,
) -> None:
    owner = signed_in(strict)
    for fields, name, words in (
        ({"url": "http://127.0.0.1/x"}, "url", "loopback address; webhooks are sent to public"),
        ({"url": "http://10.0.0.7/x"}, "url", "public addresses only"),
        ({"url": ""}, "url", "Enter the address"),
        ({"url": "ftp://example.com/x"}, "url", "https://"),
        ({"url": "https://user:pw@example.com/x"}, "url", "user name or password"),
        ({"url": "https://example.com:/x"}, "url", "Must be an https:// (or http://) address"),
        ({"url": "https://example.com/" + "x" * 2100}, "url", "at most"),
        ({"url": "https://example.com/x", "description": "d" * 501}, "description", "500"),
    ):
        response = owner.post("/dashboard/webhooks", fields)
        assert response.status_code == FORM_ERROR, (fields, response.status_code)
        assert "There is a problem" in visible_text(response.text)
        message = field_error(response.text, name)
        assert message and words in message, (fields, message, response.text[:3000])
        # What was typed comes back in the form (cut only past the limits).
        if fields["url"] and len(fields["url"]) < 100:
            assert f'value="{fields["url"]}"' in response.text
    response = owner.post(
        "/dashboard/webhooks",
        {"url": "https://example.com/x", "event_types": ["impact.completed", "no.such_type"]},  # type: ignore[dict-item]
    )
    assert response.status_code == FORM_ERROR
    group = re.search(
        r'<fieldset class="field checkbox-group" id="event_types">.*?</fieldset>',
        response.text,
        re.S,
    )
    assert group and 'class="field-error"' in group.group(0), response.text[:3000]
    assert 'value="impact.completed" checked' in group.group(0)
    assert _endpoints(strict, owner) == []


def test_the_limit_of_endpoints_is_shown_next_to_the_url(client: TestClient) -> None:
    owner = signed_in(client)
    for n in range(MAX_ENDPOINTS):
        _add(owner, f"http://127.0.0.1:9/{n}")
    response = owner.post("/dashboard/webhooks", {"url": "http://127.0.0.1:9/one-more"})
    assert response.status_code == FORM_ERROR
    assert field_error(response.text, "url") == (
        f"An environment has at most {MAX_ENDPOINTS} endpoints; delete one first."
    )
    assert len(_endpoints(client, owner)) == MAX_ENDPOINTS


def test_reveal_and_rotate_the_secret(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    api = _api(client, owner)
    first = api.get(f"/v1/webhook_endpoints/{endpoint_id}/secret").json()["secret"]
    assert first not in owner.page(f"/dashboard/webhooks/{endpoint_id}")

    revealed = owner.post(f"/dashboard/webhooks/{endpoint_id}/secret")
    assert revealed.status_code == 200
    assert f'<code class="secret" id="webhook-secret">{first}</code>' in revealed.text
    assert revealed.headers["cache-control"] == "no-store"
    assert first not in owner.page(f"/dashboard/webhooks/{endpoint_id}")  # shown once

    rotated = owner.post(f"/dashboard/webhooks/{endpoint_id}/rotate-secret")
    assert rotated.status_code == 200
    now = api.get(f"/v1/webhook_endpoints/{endpoint_id}/secret").json()
    assert now["secret"] != first and now["secret"].startswith("whsec_")
    assert now["previous_secret_expires_on"]
    text = visible_text(rotated.text)
    assert now["secret"] in text and first not in text
    assert "keeps signing deliveries beside the new one for 24 hours" in text
    assert now["previous_secret_expires_on"][:10] in text


def test_the_test_button_sends_a_signed_ping(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    secret = _api(client, owner).get(f"/v1/webhook_endpoints/{endpoint_id}/secret").json()
    page = owner.page(f"/dashboard/webhooks/{endpoint_id}")
    assert "No deliveries yet" in visible_text(page)
    assert 'action="/dashboard/webhooks/' + endpoint_id + '/test"' in page

    response = owner.post(f"/dashboard/webhooks/{endpoint_id}/test")
    assert response.status_code == 200, response.text[:2000]
    (got,) = rx.requests
    assert got.path == "/hook" and got.json["type"] == "ping"
    assert got.json["data"]["endpoint_id"] == endpoint_id
    # Signed with the endpoint's secret, as a receiver verifies it (Standard Webhooks).
    Webhook(secret["secret"]).verify(got.body, got.headers)
    text = visible_text(response.text)
    result = re.search(r"Test event Succeeded Event ping (evt_\S+) Status code 200 Latency", text)
    assert result, text
    assert result.group(1) == got.headers["webhook-id"]
    assert " ms " in text


def test_a_failing_test_shows_the_error_and_the_answer_escaped(
    client: TestClient, rx: Receiver
) -> None:
    rx.respond = lambda _r: (500, {"content-type": "text/html"}, (XSS_SCRIPT + XSS_IMG).encode())
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    response = owner.post(f"/dashboard/webhooks/{endpoint_id}/test")
    assert response.status_code == 200
    text = visible_text(response.text)
    assert "Test event Failed" in text and "Status code 500" in text and "HTTP 500" in text
    assert XSS_SCRIPT + XSS_IMG in text  # shown as text
    for page in (response.text, owner.page(f"/dashboard/webhooks/{endpoint_id}")):
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)" in page


def test_an_unreachable_endpoint_says_why(client: TestClient) -> None:
    with running() as gone:
        url = gone.url  # closed when the block ends: nothing listens there any more
    owner = signed_in(client)
    endpoint_id = _add(owner, url)
    text = visible_text(owner.post(f"/dashboard/webhooks/{endpoint_id}/test").text)
    assert "Test event Failed" in text and "Status code No answer" in text
    assert "Cannot connect to host" in text


def test_the_delivery_log_pages_and_resends(
    client: TestClient, rx: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "WEBHOOK_LOG_SIZE", 2)
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    for _ in range(3):
        assert owner.post(f"/dashboard/webhooks/{endpoint_id}/test").status_code == 200
    logged = _deliveries(client, owner, endpoint_id)  # newest first, as the page
    assert [d["trigger"] for d in logged] == ["test"] * 3

    page = owner.page(f"/dashboard/webhooks/{endpoint_id}")
    text = visible_text(page)
    assert logged[0]["event_id"] in text and logged[1]["event_id"] in text
    assert logged[2]["event_id"] not in text
    row = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ping (evt_\S+) Test 200 \d+ ms ok", text)
    assert row and row.group(1) == logged[0]["event_id"], text
    later = link(page, "Next page")
    assert later and later.startswith("?cursor=")
    older = owner.page(f"/dashboard/webhooks/{endpoint_id}{later}")
    assert logged[2]["event_id"] in visible_text(older)
    assert logged[0]["event_id"] not in visible_text(older)
    assert link(older, "First page") == f"/dashboard/webhooks/{endpoint_id}"
    assert link(older, "Next page") is None
    # A cursor that is not this log's: the newest page, and a word about it.
    stale = owner.page(f"/dashboard/webhooks/{endpoint_id}", cursor="not-a-cursor")
    assert "no longer available" in visible_text(stale)
    assert logged[0]["event_id"] in visible_text(stale)

    # Resend the oldest: queued, then sent by the worker with the same webhook-id.
    assert f"Resend {logged[2]['event_id']}" in button(older, "Resend")
    resent = owner.post(f"/dashboard/webhooks/{endpoint_id}/deliveries/{logged[2]['id']}/resend")
    assert resent.status_code == 303
    assert resent.headers["location"] == (
        f"/dashboard/webhooks/{endpoint_id}?resent={logged[2]['event_id']}"
    )
    db = db_of(client)
    queued = db.run_sync(
        lambda s: list(
            s.scalars(
                select(WebhookMessage)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookMessage.endpoint_pk)
                .where(
                    WebhookMessage.trigger == "resend", WebhookEndpoint.endpoint_id == endpoint_id
                )
            )
        )
    )
    assert [(m.status, m.tries) for m in queued] == [("pending", 0)]
    assert "queued to be sent again" in visible_text(
        owner.page(resent.headers["location"].split("?")[0], resent=logged[2]["event_id"])
    )
    delivery.deliver_webhooks(db, client.app.state.settings)  # type: ignore[attr-defined]
    assert rx.ids()[-1] == logged[2]["event_id"]
    newest = _deliveries(client, owner, endpoint_id)[0]
    assert newest["trigger"] == "resend" and newest["event_id"] == logged[2]["event_id"]
    assert "Resend" in visible_text(owner.page(f"/dashboard/webhooks/{endpoint_id}"))


def test_disable_and_enable(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    assert owner.post(f"/dashboard/webhooks/{endpoint_id}/test").status_code == 200
    api = _api(client, owner)

    off = owner.post(f"/dashboard/webhooks/{endpoint_id}/disable")
    assert off.status_code == 303
    assert off.headers["location"] == f"/dashboard/webhooks?disabled={endpoint_id}"
    found = api.get(f"/v1/webhook_endpoints/{endpoint_id}").json()
    assert found["enabled"] is False and found["disabled_reason"] == "disabled by a user"
    text = visible_text(owner.page("/dashboard/webhooks", disabled=endpoint_id))
    assert f"Endpoint {endpoint_id} disabled" in text
    assert "Disabled Disabled by a user" in text
    page = owner.page(f"/dashboard/webhooks/{endpoint_id}")
    assert "Send test event" not in visible_text(page) and "Resend" not in visible_text(page)
    assert "Enable the endpoint to send it a test event" in visible_text(page)
    # Sent anyway (an old page): the service's refusal, nothing sent.
    refused = owner.post(f"/dashboard/webhooks/{endpoint_id}/test")
    assert refused.status_code == 200
    assert "The endpoint is disabled; enable it first." in visible_text(refused.text)
    delivery_id = _deliveries(client, owner, endpoint_id)[0]["id"]
    refused = owner.post(f"/dashboard/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend")
    assert refused.status_code == 200
    assert "The endpoint is disabled; enable it first." in visible_text(refused.text)
    assert len(rx.requests) == 1

    on = owner.post(f"/dashboard/webhooks/{endpoint_id}/enable", {"back": "endpoint"})
    assert on.status_code == 303
    assert on.headers["location"] == f"/dashboard/webhooks/{endpoint_id}?enabled=1"
    found = api.get(f"/v1/webhook_endpoints/{endpoint_id}").json()
    assert found["enabled"] is True and "disabled_reason" not in found
    assert "Endpoint enabled" in visible_text(owner.page(on.headers["location"]))


def test_delete(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    page = owner.page("/dashboard/webhooks")
    assert "data-confirm" in page.split(f"{endpoint_id}/delete", 1)[1].split(">", 1)[0]
    gone = owner.post(f"/dashboard/webhooks/{endpoint_id}/delete")
    assert gone.status_code == 303
    assert gone.headers["location"] == f"/dashboard/webhooks?deleted={endpoint_id}"
    assert _api(client, owner).get(f"/v1/webhook_endpoints/{endpoint_id}").status_code == 404
    text = visible_text(owner.page("/dashboard/webhooks", deleted=endpoint_id))
    assert f"Endpoint {endpoint_id} deleted" in text and "No endpoints yet" in text
    assert owner.get(f"/dashboard/webhooks/{endpoint_id}").status_code == 404


def test_text_of_the_endpoint_is_escaped(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    made = _api(client, owner).post(
        "/v1/webhook_endpoints",
        {"url": rx.url + "?q=" + XSS_SCRIPT.replace(" ", ""), "description": XSS_IMG + XSS_SCRIPT},
    )
    assert made.status_code == 200, made.text
    for path in ("/dashboard/webhooks", f"/dashboard/webhooks/{made.json()['id']}"):
        page = owner.page(path)
        assert "<script>alert(1)" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;" in page and "&lt;img src=x" in page, path


def test_members_see_but_do_not_change(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url, description="Shop")
    assert owner.post(f"/dashboard/webhooks/{endpoint_id}/test").status_code == 200
    delivery_id = _deliveries(client, owner, endpoint_id)[0]["id"]
    api = _api(client, owner)
    secret = api.get(f"/v1/webhook_endpoints/{endpoint_id}/secret").json()["secret"]
    member = signed_in(client, owner.account, role="member")

    listing = member.page("/dashboard/webhooks")
    assert endpoint_id in listing and "Shop" in listing
    assert "New endpoint" not in listing and "Send test event" not in listing
    page = member.page(f"/dashboard/webhooks/{endpoint_id}")
    text = visible_text(page)
    assert rx.url in text
    assert "Reveal secret" not in text and "Rotate secret" not in text and secret not in page
    assert "Resend" not in text and "Only owners of the account see and rotate the secret" in text
    assert "ping" in text  # the log is readable
    for path, form in (
        ("/dashboard/webhooks", {"url": rx.url}),
        (f"/dashboard/webhooks/{endpoint_id}/secret", {}),
        (f"/dashboard/webhooks/{endpoint_id}/rotate-secret", {}),
        (f"/dashboard/webhooks/{endpoint_id}/test", {}),
        (f"/dashboard/webhooks/{endpoint_id}/disable", {}),
        (f"/dashboard/webhooks/{endpoint_id}/delete", {}),
        (f"/dashboard/webhooks/{endpoint_id}/deliveries/{delivery_id}/resend", {}),
    ):
        refused = member.post(path, form)
        assert refused.status_code == 403, path
        assert "only an owner of the account can do this" in visible_text(refused.text).lower()
        assert secret not in refused.text
    assert len(_endpoints(client, owner)) == 1 and len(rx.requests) == 1
    now = api.get(f"/v1/webhook_endpoints/{endpoint_id}").json()
    assert now["enabled"] is True
    assert api.get(f"/v1/webhook_endpoints/{endpoint_id}/secret").json()["secret"] == secret


def test_another_accounts_endpoint_is_not_found(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    assert owner.post(f"/dashboard/webhooks/{endpoint_id}/test").status_code == 200
    delivery_id = _deliveries(client, owner, endpoint_id)[0]["id"]
    stranger = signed_in(client)
    assert endpoint_id not in stranger.page("/dashboard/webhooks")
    assert stranger.get(f"/dashboard/webhooks/{endpoint_id}").status_code == 404
    for action in (
        "secret",
        "rotate-secret",
        "test",
        "disable",
        "enable",
        "delete",
        f"deliveries/{delivery_id}/resend",
    ):
        answer = stranger.post(f"/dashboard/webhooks/{endpoint_id}/{action}")
        assert answer.status_code == 404, action
        assert "whsec_" not in answer.text
    # The owner's own resend of a delivery id of nobody's is the same 404.
    missing = owner.post(f"/dashboard/webhooks/{endpoint_id}/deliveries/dlv_nothing/resend")
    assert missing.status_code == 404
    assert len(rx.requests) == 1
    assert _api(client, owner).get(f"/v1/webhook_endpoints/{endpoint_id}").json()["enabled"]


def test_the_sandbox_has_its_own_endpoints(client: TestClient, rx: Receiver) -> None:
    owner = signed_in(client)
    endpoint_id = _add(owner, rx.url)
    assert owner.post("/dashboard/env", {"env": "sandbox"}).status_code == 303
    page = owner.page("/dashboard/webhooks")
    assert "Sandbox endpoints" in visible_text(page) and endpoint_id not in page
    assert owner.get(f"/dashboard/webhooks/{endpoint_id}").status_code == 404
    sandbox_id = _add(owner, rx.url + "/test")
    test_key = Caller(client, owner.account.sandbox_key, owner.account)
    assert [e["id"] for e in test_key.walk("/v1/webhook_endpoints", "webhook_endpoints")] == [
        sandbox_id
    ]
