"""/v1/webhook_endpoints: create, list, read, change, delete, secrets and
rotation, with the API's errors and tenancy; and the /v1/events feed."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

from openimpact.app import create_app
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.webhooks.helpers import deliver, deliveries, endpoint, feed, feed_page
from tests.webhooks.receiver import Receiver


class TestEndpoints:
    def test_create_answers_the_secret_once(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url, description="Orders", event_types=["impact.completed"])
        assert made["id"].startswith("we_") and made["secret"].startswith("whsec_")
        assert made["url"] == rx.url and made["description"] == "Orders"
        assert made["event_types"] == ["impact.completed"] and made["enabled"] is True
        assert made["created_on"].endswith("Z")
        Webhook(made["secret"])  # a secret the Standard Webhooks library accepts
        shown = me.get(f"/v1/webhook_endpoints/{made['id']}").json()
        assert "secret" not in shown
        assert shown == {k: v for k, v in made.items() if k != "secret"}
        listed = me.get("/v1/webhook_endpoints").json()["webhook_endpoints"]
        assert listed == [shown]
        assert me.get(f"/v1/webhook_endpoints/{made['id']}/secret").json() == {
            "secret": made["secret"]
        }

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            ({"url": "ftp://example.com/x"}, "url"),
            ({"url": "not a url"}, "url"),
            ({"url": "https://"}, "url"),
            ({"url": "https://user:pw@93.184.216.34/x"}, "url"),
            ({"url": "https://93.184.216.34/x", "event_types": ["impact.nope"]}, "event_types"),
            ({"url": "https://93.184.216.34/x", "event_types": []}, "event_types"),
            ({"url": "https://93.184.216.34/x", "description": "x" * 501}, "description"),
            ({"url": "https://93.184.216.34/x", "extra": 1}, "extra"),
            ({}, "url"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(
        self, api: Api, body: dict[str, object], named: str
    ) -> None:
        me = api.as_(api.account())
        response = me.post("/v1/webhook_endpoints", body)
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "validation_error"
        assert named in response.json()["message"]
        assert me.get("/v1/webhook_endpoints").json()["webhook_endpoints"] == []

    def test_patch_changes_what_it_names(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        path = f"/v1/webhook_endpoints/{made['id']}"
        changed = me.client.patch(
            path,
            json={"description": "Refunds", "event_types": ["impact.cancelled"], "enabled": False},
            headers=me.headers(),
        ).json()
        assert changed["description"] == "Refunds" and changed["event_types"] == [
            "impact.cancelled"
        ]
        assert changed["enabled"] is False and changed["disabled_reason"] == "disabled by a user"
        back = me.client.patch(
            path, json={"enabled": True, "event_types": None}, headers=me.headers()
        ).json()
        assert back["enabled"] is True and "disabled_reason" not in back
        assert back["event_types"] is None and back["description"] == "Refunds"
        bad = me.client.patch(path, json={"url": "gopher://x"}, headers=me.headers())
        assert bad.status_code == 400 and "url" in bad.json()["message"]

    def test_delete_and_tenancy(self, api: Api, rx: Receiver) -> None:
        me, other = api.as_(api.account()), api.as_(api.account())
        made = endpoint(me, rx.url)
        path = f"/v1/webhook_endpoints/{made['id']}"
        for method, suffix in [
            ("GET", ""),
            ("PATCH", ""),
            ("DELETE", ""),
            ("GET", "/secret"),
            ("POST", "/rotate_secret"),
            ("POST", "/test"),
            ("GET", "/deliveries"),
            ("POST", "/deliveries/dlv_x/resend"),
            ("POST", "/recover"),
        ]:
            body: dict[str, str] | None = {} if method == "PATCH" else None
            if suffix == "/recover":
                body = {"since": made["created_on"]}
            response = other.client.request(
                method, path + suffix, json=body, headers=other.headers()
            )
            assert response.status_code == 404, (method, suffix, response.text)
        sandbox = api.as_(me.account, "sandbox")
        assert sandbox.get(path).status_code == 404  # environments are apart too
        assert me.client.delete(path, headers=me.headers()).json() == {
            "id": made["id"],
            "deleted": True,
        }
        assert me.get(path).status_code == 404
        assert me.get("/v1/webhook_endpoints").json()["webhook_endpoints"] == []

    def test_no_key_is_a_401(self, api: Api) -> None:
        assert api.client.get("/v1/webhook_endpoints").status_code == 401
        assert api.client.get("/v1/events").status_code == 401

    def test_list_pages_with_a_cursor(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = [endpoint(me, rx.url, description=str(n))["id"] for n in range(5)]
        first = me.get("/v1/webhook_endpoints", limit=2).json()
        assert [e["id"] for e in first["webhook_endpoints"]] == made[:2]
        walked = me.walk("/v1/webhook_endpoints", "webhook_endpoints", limit=2)
        assert [e["id"] for e in walked] == made
        assert me.get("/v1/webhook_endpoints", cursor="nope").status_code == 400

    def test_create_is_idempotent(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        first = me.post("/v1/webhook_endpoints", {"url": rx.url}, idempotency_key="k1")
        again = me.post("/v1/webhook_endpoints", {"url": rx.url}, idempotency_key="k1")
        assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
        assert len(me.get("/v1/webhook_endpoints").json()["webhook_endpoints"]) == 1


class TestSecrets:
    def test_rotation_signs_with_both_for_a_day(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        rotated = me.post(f"/v1/webhook_endpoints/{made['id']}/rotate_secret", {}).json()
        assert rotated["secret"] != made["secret"] and rotated["secret"].startswith("whsec_")
        assert rotated["previous_secret_expires_on"].endswith("Z")
        me.plant(1)
        deliver(api)
        (got,) = rx.wait_for(1)
        signatures = got.headers["webhook-signature"].split(" ")
        assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
        for secret in (made["secret"], rotated["secret"]):
            Webhook(secret).verify(got.body, got.headers)
        assert me.get(f"/v1/webhook_endpoints/{made['id']}/secret").json() == rotated


class TestTest:
    def test_a_ping_is_sent_and_answered_with_its_attempt(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        answer = me.post(f"/v1/webhook_endpoints/{made['id']}/test", {}).json()
        (got,) = rx.wait_for(1)
        payload = Webhook(made["secret"]).verify(got.body, got.headers)
        assert payload["type"] == "ping" and payload["data"]["endpoint_id"] == made["id"]
        assert got.headers["webhook-id"] == answer["event_id"]
        assert answer["delivery"]["succeeded"] is True and answer["delivery"]["status_code"] == 200
        assert answer["delivery"]["trigger"] == "test"
        # A ping is not an event of the account: the feed does not list it.
        assert me.get("/v1/events").json()["events"] == []
        assert [d["event_type"] for d in deliveries(me, made["id"])] == ["ping"]

    def test_a_failed_ping_says_why(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        rx.respond = lambda _r: (500, {}, b"<h1>boom</h1>")
        made = endpoint(me, rx.url)
        answer = me.post(f"/v1/webhook_endpoints/{made['id']}/test", {}).json()
        attempt = answer["delivery"]
        assert attempt["succeeded"] is False and attempt["status_code"] == 500
        assert attempt["response"] == "<h1>boom</h1>" and attempt["error"] == "HTTP 500"

    def test_a_disabled_endpoint_is_not_tested(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        me.client.patch(
            f"/v1/webhook_endpoints/{made['id']}", json={"enabled": False}, headers=me.headers()
        )
        response = me.post(f"/v1/webhook_endpoints/{made['id']}/test", {})
        assert response.status_code == 409 and "disabled" in response.json()["message"]
        assert rx.requests == []


class TestEventsFeed:
    def test_the_feed_lists_what_the_webhooks_carry(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        endpoint(me, rx.url)
        made = [me.plant(n) for n in (1, 2, 3)]
        me.post(
            "/v1/cancel_impact", {"user_id": made[0]["user_id"], "time_utc": made[0]["time_utc"]}
        )
        deliver(api)
        got = rx.wait_for(4)
        events = feed(me, 4, limit=2)
        assert sorted(e["id"] for e in events) == sorted(r.headers["webhook-id"] for r in got)
        assert {e["id"]: e for e in events} == {
            r.headers["webhook-id"]: {"id": r.headers["webhook-id"], **r.json} for r in got
        }
        assert [e["type"] for e in events] == ["impact.initiated"] * 3 + ["impact.cancelled"]
        cancelled = me.get("/v1/events", type="impact.cancelled").json()["events"]
        assert len(cancelled) == 1 and cancelled[0]["data"]["cancelled_on"].endswith("Z")
        assert me.get("/v1/events", type="impact.nope").status_code == 400
        assert me.get("/v1/events", cursor="nope").status_code == 400
        other = api.as_(api.account())
        assert other.get("/v1/events").json()["events"] == []
        assert api.as_(me.account, "sandbox").get("/v1/events").json()["events"] == []

    def test_a_cursor_belongs_to_its_filter(self, api: Api) -> None:
        me = api.as_(api.account())
        for _ in range(3):
            me.plant(1)
        page = feed_page(me, 1, limit=1)
        response = me.get("/v1/events", limit=1, cursor=page["cursor"], type="impact.completed")
        assert response.status_code == 400 and "cursor" in response.json()["message"]

    def test_events_follow_the_track_view(self, api: Api) -> None:
        me = api.as_(api.account())
        made = me.plant(5, category="food", customer_email="ana@example.com")
        (event,) = feed_page(me, 1)["events"]
        track = me.get("/v1/track", user_id=made["user_id"], time_utc=made["time_utc"]).json()
        assert event["type"] == "impact.initiated" and event["data"] == track
        assert event["timestamp"].endswith("Z")


def test_an_event_committed_late_is_not_skipped(postgresql_database: TestDatabase) -> None:
    """PostgreSQL hands out ids before commit: a transaction that wrote an
    event and is still open holds back every later event, so a cursor taken
    meanwhile never passes over it (SQLite has one writer, in id order)."""
    from sqlalchemy import select

    from openimpact.accounts.models import Account
    from openimpact.outbox import service as outbox
    from openimpact.timeutil import now_ms

    with TestClient(create_app(postgresql_database.settings())) as client:
        api = Api(client)
        me = api.as_(api.account())
        me.plant(1)
        first = feed_page(me, 1)
        assert len(first["events"]) == 1
        pk = api.db.run_sync(
            lambda s: s.scalar(select(Account.id).where(Account.user_id == me.account.user_id))
        )
        slow = api.db.connect(write=True)
        try:
            transaction = slow.begin()
            early = outbox.event("impact.initiated", pk, "production", {"n": "early"}, now_ms())
            slow.execute(outbox.OutboxMessage.__table__.insert(), [early])
            me.plant(3)  # its event has a higher id, and commits first
            held = me.get("/v1/events", cursor=first["cursor"]).json()
            assert held["events"] == []  # nothing past the open transaction yet
            transaction.commit()
        finally:
            slow.close()
        after = feed_page(me, 2, cursor=first["cursor"])["events"]
        assert after[0]["id"] == early["event_id"]
        assert len(after) == 2 and after[1]["data"]["tree_planted"] == 3


def test_a_host_that_resolves_too_slowly_is_a_400(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from openimpact.webhooks import guard, service

    monkeypatch.setattr(service, "RESOLVE_SECONDS", 0.2)
    monkeypatch.setattr(guard, "addresses", lambda host, port: time.sleep(1) or [])
    with TestClient(create_app(database.settings(webhooks_allow_private=False))) as client:
        api = Api(client)
        me = api.as_(api.account())
        response = me.post("/v1/webhook_endpoints", {"url": "https://slow.example/hook"})
        assert response.status_code == 400
        assert "did not resolve within" in response.json()["message"]
        assert me.get("/v1/webhook_endpoints").json()["webhook_endpoints"] == []
