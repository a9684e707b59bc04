"""Delivery to a real local receiver: every event type, signatures checked by
two implementations, retries, Retry-After, 410, disabling, redirects,
timeouts, subscriptions, resend and recovery, and several workers at once."""

from __future__ import annotations

import threading
import time
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from standardwebhooks import Webhook
from svix.webhooks import Webhook as SvixWebhook

from openimpact.budgets.service import set_budget, set_prices
from openimpact.lifecycle.service import Selection, run_batch
from openimpact.outbox.models import OutboxMessage
from openimpact.outbox.service import Events
from openimpact.schedules.service import run_due
from openimpact.webhooks import delivery
from tests.factories import Api, default_prices
from tests.webhooks.helpers import deliver, deliver_until, deliveries, endpoint, feed_page
from tests.webhooks.receiver import Receiver


def _advance(api: Api, action: str) -> None:
    run_batch(
        api.db,
        action,
        Selection(env="production", all=True),
        actor="test",
        events=Events(True, "https://impact.example.com"),
    )


class TestEvents:
    def test_every_lifecycle_event_arrives_signed(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        secret = made["secret"]
        planted = me.plant(2)
        cancelled = me.plant(1)
        me.post(
            "/v1/cancel_impact",
            {
                "user_id": cancelled["user_id"],
                "time_utc": cancelled["time_utc"],
                "reason": "refund",
            },
        )
        for action in ("receive", "transfer", "complete"):
            _advance(api, action)
        deliver_until(api, lambda: len(rx.requests) >= 6)
        got = rx.requests
        kinds = sorted(r.json["type"] for r in got)
        assert kinds == sorted(
            [
                "impact.initiated",
                "impact.initiated",
                "impact.cancelled",
                "impact.donation_received",
                "impact.transferred",
                "impact.completed",
            ]
        )
        for request in got:
            # Both the standardwebhooks library and Svix's verifier accept it.
            assert Webhook(secret).verify(request.body, request.headers) == request.json
            SvixWebhook(secret).verify(request.body, request.headers)
            assert request.headers["content-type"] == "application/json"
            assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
        completed = next(r.json for r in got if r.json["type"] == "impact.completed")
        track = me.get("/v1/track", user_id=planted["user_id"], time_utc=planted["time_utc"])
        assert completed["data"]["tracking_id"] == track.json()["tracking_id"]
        assert completed["data"]["impact_completed"] == track.json()["impact_completed"]
        assert completed["data"]["certificate"].startswith(
            "https://impact.example.com/certificate/"
        )
        cancel = next(r.json for r in got if r.json["type"] == "impact.cancelled")
        assert cancel["data"]["cancellation_reason"] == "refund"

    def test_the_sandbox_simulation_sends_its_stages(self, api: Api, rx: Receiver) -> None:
        from openimpact.worker import advance_sandbox

        account = api.account()
        sandbox = api.as_(account, "sandbox")
        made = endpoint(sandbox, rx.url)
        sandbox.plant(1)
        settings = api.client.app.state.settings  # type: ignore[attr-defined]
        later = int(time.time() * 1000) + 4 * settings.sandbox_stage_seconds * 1000
        assert advance_sandbox(api.db, settings, now=later) >= 3  # others' too: one database

        # The simulation advanced every sandbox impact of the shared database;
        # an endpoint of an earlier test whose receiver had this port may
        # hear of its own: only this endpoint's messages (its signature) count.
        def ours() -> list[Any]:
            return [r for r in list(rx.requests) if _signed_by(made["secret"], r)]

        deliver_until(api, lambda: len(ours()) >= 4)
        # Unordered: each of the four, once.
        assert sorted(r.json["type"] for r in ours()) == sorted(
            [
                "impact.initiated",
                "impact.donation_received",
                "impact.transferred",
                "impact.completed",
            ]
        )
        for request in ours():
            assert request.json["data"]["is_test_transaction"] is True
        # The production endpoints of the same account hear nothing of it.
        assert api.as_(account).get("/v1/events").json()["events"] == []

    def test_an_event_nobody_listens_to_is_settled_as_it_is_written(
        self, api: Api, rx: Receiver
    ) -> None:
        """No endpoint, or a disabled one: the worker has nothing to claim; an
        enabled endpoint: the event waits for its first attempt."""
        quiet, heard = api.as_(api.account()), api.as_(api.account())
        made = endpoint(heard, rx.url)
        off = endpoint(quiet, rx.url)
        quiet.client.patch(
            f"/v1/webhook_endpoints/{off['id']}", json={"enabled": False}, headers=quiet.headers()
        )
        for caller in (quiet, heard):
            caller.plant(1)

        def pending(caller: Any) -> list[Any]:
            return api.db.run_sync(
                lambda s: list(
                    s.scalars(
                        select(OutboxMessage.delivered_ms).where(
                            OutboxMessage.kind == "event",
                            OutboxMessage.event_id.in_(
                                [e["id"] for e in feed_page(caller, 1)["events"]]
                            ),
                        )
                    )
                )
            )

        assert [d is not None for d in pending(quiet)] == [True]
        assert pending(heard) == [None]
        deliver(api)
        assert [r.headers["webhook-id"] for r in rx.requests] == [
            e["id"] for e in feed_page(heard, 1)["events"]
        ]
        assert made["enabled"] is True

    def test_a_forged_or_altered_message_fails_verification(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        me.plant(1)
        deliver(api)
        (got,) = rx.wait_for(1)
        with pytest.raises(Exception, match="signature"):
            Webhook(made["secret"]).verify(got.body.replace(b"1", b"9"), got.headers)
        other = endpoint(me, rx.url)["secret"]
        with pytest.raises(Exception, match="signature"):
            Webhook(other).verify(got.body, got.headers)

    def test_schedule_and_budget_events(self, api: Api, rx: Receiver) -> None:
        scheduler, spender = api.account(), api.account()
        types = ["schedule.impact_created", "budget.threshold_reached", "budget.exceeded"]
        for account in (scheduler, spender):
            endpoint(api.as_(account), rx.url, event_types=types)
        made = api.as_(scheduler).post(
            "/v1/schedules",
            {
                "impact_type": "tree_planted",
                "amount": 3,
                "day_of_month": 1,
                "starts_on": "2027-01-01",
            },
        )
        assert made.status_code == 200, made.text
        created = run_due(api.db, date(2027, 1, 1), account_id=_account_pk(api, scheduler.user_id))
        assert created.created == 1

        with default_prices(api.db):  # prices are the operator's, for every account
            api.db.run_sync(lambda s: set_prices(s, {"tree_planted": 100}), write=True)
            pk = _account_pk(api, spender.user_id)
            api.db.run_sync(lambda s: set_budget(s, pk, "production", 1000), write=True)
            me = api.as_(spender)
            me.plant(8)  # 800 of 1000 cents: 80 %
            assert me.post("/v1/plant_tree", {"amount": 3}).status_code == 402
        deliver_until(api, lambda: len(rx.requests) >= 3)
        by_type = {r.json["type"]: r.json["data"] for r in rx.requests}
        assert set(by_type) == set(types)
        assert by_type["schedule.impact_created"]["schedule_id"] == made.json()["id"]
        assert by_type["schedule.impact_created"]["period"] == "2027-01"
        assert by_type["schedule.impact_created"]["tree_planted"] == 3
        assert by_type["budget.threshold_reached"]["spent_cents"] == 800
        assert by_type["budget.exceeded"]["monthly_cents"] == 1000

    def test_only_the_subscribed_types_and_nothing_from_before(
        self, api: Api, rx: Receiver
    ) -> None:
        me = api.as_(api.account())
        me.plant(1)  # before the endpoint existed: not sent
        endpoint(me, rx.url, event_types=["impact.cancelled"])
        made = me.plant(1)
        me.post("/v1/cancel_impact", {"user_id": made["user_id"], "time_utc": made["time_utc"]})
        deliver(api)
        deliver(api)
        assert [r.json["type"] for r in rx.wait_for(1)] == ["impact.cancelled"]

    def test_no_events_when_they_are_off(self, database: object, rx: Receiver) -> None:
        from fastapi.testclient import TestClient

        from openimpact.app import create_app

        settings = database.settings(events=False, webhooks_allow_private=True)  # type: ignore[attr-defined]
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            me = api.as_(api.account())
            endpoint(me, rx.url)
            me.plant(1)
            deliver(api)
            assert me.get("/v1/events").json()["events"] == []
        assert rx.requests == []


def _account_pk(api: Api, user_id: str) -> int:
    from openimpact.accounts.models import Account

    return api.db.run_sync(lambda s: s.scalar(select(Account.id).where(Account.user_id == user_id)))


class TestRetries:
    def test_failures_are_retried_until_they_succeed(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        answers = iter([500, 502, 200])
        rx.respond = lambda _r: (next(answers), {}, b"")
        me.plant(1)
        deliver_until(api, lambda: len(rx.requests) >= 3)
        ids = {r.headers["webhook-id"] for r in rx.requests}
        assert len(ids) == 1  # the same webhook-id on every retry
        log = deliveries(me, made["id"])
        assert [(d["trigger"], d.get("status_code")) for d in log] == [
            ("retry", 200),
            ("retry", 502),
            ("first", 500),
        ]
        deliver(api)
        assert len(rx.requests) == 3  # done: nothing more

    def test_retry_after_is_honoured(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        endpoint(me, rx.url)
        answers = iter([(429, {"Retry-After": "1"}), (200, {})])
        rx.respond = lambda _r: (*next(answers), b"")  # type: ignore[return-value]
        me.plant(1)
        deliver(api)
        deliver(api)
        assert len(rx.requests) == 1  # not before a second has passed
        deliver_until(api, lambda: len(rx.requests) >= 2)
        assert rx.requests[1].at - rx.requests[0].at >= 0.95

    def test_the_schedule_ends_after_ten_attempts(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        rx.respond = lambda _r: (500, {}, b"")
        me.plant(1)
        deliver_until(api, lambda: len(rx.requests) >= delivery.MAX_TRIES)
        for _ in range(5):
            deliver(api)
        assert len(rx.requests) == delivery.MAX_TRIES == 10
        assert len(deliveries(me, made["id"])) == 10

    def test_a_410_disables_the_endpoint_and_emails_the_owners(
        self, api: Api, rx: Receiver
    ) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        rx.respond = lambda _r: (410, {}, b"gone")
        me.plant(1)
        deliver(api)
        shown = me.get(f"/v1/webhook_endpoints/{made['id']}").json()
        assert shown["enabled"] is False and "410" in shown["disabled_reason"]
        me.plant(1)
        for _ in range(3):
            deliver(api)
        assert len(rx.requests) == 1
        emails = _emails(api, "webhook_disabled")
        assert [e["to"] for e in emails if e["endpoint_id"] == made["id"]] == [me.account.email]

    def test_failing_for_days_disables(self, database: object, rx: Receiver) -> None:
        from fastapi.testclient import TestClient

        from openimpact.app import create_app

        settings = database.settings(  # type: ignore[attr-defined]
            webhooks_allow_private=True,
            webhook_retry_scale=0.00001,
            webhook_disable_after_hours=0.5 / 3600,  # half a second stands for five days
        )
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            me = api.as_(api.account())
            made = endpoint(me, rx.url)
            rx.respond = lambda _r: (503, {}, b"")
            me.plant(1)
            deliver(api)
            time.sleep(0.6)
            deliver_until(
                api,
                lambda: not me.get(f"/v1/webhook_endpoints/{made['id']}").json()["enabled"],
            )
            shown = me.get(f"/v1/webhook_endpoints/{made['id']}").json()
            assert "every attempt failed" in shown["disabled_reason"]
            emails = _emails(api, "webhook_disabled")
            assert [e["to"] for e in emails if e["endpoint_id"] == made["id"]] == [me.account.email]

    def test_a_success_ends_a_run_of_failures(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        answers = iter([500, 200])
        rx.respond = lambda _r: (next(answers, 200), {}, b"")
        me.plant(1)
        deliver_until(api, lambda: len(rx.requests) >= 2)
        from openimpact.webhooks.models import WebhookEndpoint

        since = api.db.run_sync(
            lambda s: s.scalar(
                select(WebhookEndpoint.failing_since_ms).where(
                    WebhookEndpoint.endpoint_id == made["id"]
                )
            )
        )
        assert since is None

    def test_redirects_are_not_followed(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        rx.respond = lambda r: (
            (302, {"Location": rx.url + "/elsewhere"}, b"") if r.path == "/hook" else (200, {}, b"")
        )
        me.plant(1)
        deliver(api)
        assert [r.path for r in rx.requests] == ["/hook"]
        (attempt,) = deliveries(me, made["id"])
        assert attempt["status_code"] == 302 and "redirects are not followed" in attempt["error"]

    def test_a_slow_receiver_times_out(self, database: object, rx: Receiver) -> None:
        from fastapi.testclient import TestClient

        from openimpact.app import create_app

        settings = database.settings(webhooks_allow_private=True, webhook_timeout_seconds=0.3)  # type: ignore[attr-defined]

        def slow(_r: object) -> tuple[int, dict[str, str], bytes]:
            time.sleep(1)
            return 200, {}, b""

        rx.respond = slow
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            me = api.as_(api.account())
            made = endpoint(me, rx.url)
            me.plant(1)
            deliver(api)
            (attempt,) = deliveries(me, made["id"])
            assert attempt["succeeded"] is False and attempt["error"] == "timed out"
            assert attempt["latency_ms"] < 1000


def _emails(api: Api, template: str) -> list[dict[str, object]]:
    rows = api.db.run_sync(
        lambda s: list(
            s.scalars(select(OutboxMessage.payload).where(OutboxMessage.kind == "email"))
        )
    )
    return [p for p in rows if p.get("template") == template]


class TestResendAndRecover:
    def test_resend_sends_the_same_event_again(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        me.plant(1)
        deliver(api)
        (first,) = deliveries(me, made["id"])
        response = me.post(
            f"/v1/webhook_endpoints/{made['id']}/deliveries/{first['id']}/resend", {}
        )
        assert response.status_code == 202
        assert response.json() == {
            "endpoint_id": made["id"],
            "event_id": first["event_id"],
            "status": "queued",
        }
        deliver(api)
        assert [r.headers["webhook-id"] for r in rx.requests] == [first["event_id"]] * 2
        assert [d["trigger"] for d in deliveries(me, made["id"])] == ["resend", "first"]
        missing = me.post(f"/v1/webhook_endpoints/{made['id']}/deliveries/dlv_nope/resend", {})
        assert missing.status_code == 404

    def test_recover_resends_what_did_not_arrive(self, api: Api, rx: Receiver) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        path = f"/v1/webhook_endpoints/{made['id']}"
        ok = me.plant(1)
        deliver(api)
        me.client.patch(path, json={"enabled": False}, headers=me.headers())
        missed = [me.plant(2), me.plant(3)]  # while disabled: not sent
        deliver(api)
        assert len(rx.requests) == 1
        me.client.patch(path, json={"enabled": True}, headers=me.headers())
        since = ok["time_utc"][:10] + "T00:00:00Z"
        answer = me.post(f"{path}/recover", {"since": since})
        assert answer.status_code == 202 and answer.json()["queued"] == 2
        deliver(api)
        data = [r.json["data"] for r in rx.requests[1:]]
        assert sorted(d["impact_initiated"] for d in data) == sorted(m["time_utc"] for m in missed)
        again = me.post(f"{path}/recover", {"since": since})
        assert again.json()["queued"] == 0  # everything arrived now

    @pytest.mark.parametrize("since", ["2020-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "soon"])
    def test_recover_refuses_a_bad_since(self, api: Api, rx: Receiver, since: str) -> None:
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        response = me.post(f"/v1/webhook_endpoints/{made['id']}/recover", {"since": since})
        assert response.status_code == 400 and "since" in response.json()["message"]


class TestWorkers:
    def test_several_workers_send_each_attempt_once(self, database: object, rx: Receiver) -> None:
        """Chunks of two events, a receiver that takes 10 ms: four workers
        interleave their claims, and still each event is sent once."""
        from fastapi.testclient import TestClient

        from openimpact.app import create_app

        settings = database.settings(  # type: ignore[attr-defined]
            webhooks_allow_private=True,
            webhook_concurrency=2,
            webhook_timeout_seconds=15,
            webhook_lease_seconds=30,
        )

        def slow(_r: object) -> tuple[int, dict[str, str], bytes]:
            time.sleep(0.01)
            return 200, {}, b""

        rx.respond = slow
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            me = api.as_(api.account())
            endpoint(me, rx.url)
            for _ in range(40):
                me.plant(1)
            assert delivery.chunk_size(settings) == 2
            errors: list[BaseException] = []

            def work() -> None:
                try:
                    for _ in range(3):
                        deliver(api)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=work) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert errors == []
            ids = rx.ids()
            assert len(ids) == 40 and len(set(ids)) == 40


class TestReviewedFaults:
    def test_an_answer_with_nul_bytes_is_logged_and_blocks_no_one(
        self, api: Api, rx: Receiver
    ) -> None:
        me, other = api.as_(api.account()), api.as_(api.account())
        made = endpoint(me, rx.url + "/nul")
        endpoint(other, rx.url + "/fine")
        rx.respond = lambda r: (
            (500, {}, b"bad\x00answer")
            if r.path.endswith("nul")
            else (
                200,
                {},
                b"ok",
            )
        )
        me.plant(1)
        other.plant(1)
        deliver(api)
        # The 500 is retried within milliseconds: a slow pass may send it again.
        attempts = deliveries(me, made["id"])
        assert attempts
        for attempt in attempts:
            assert attempt["response"] == "bad\ufffdanswer" and attempt["status_code"] == 500
        assert sorted(set(r.path for r in rx.requests)) == ["/hook/fine", "/hook/nul"]
        assert [r.path for r in rx.requests].count("/hook/fine") == 1

    def test_waiting_for_a_turn_does_not_count_against_the_timeout(
        self, database: object, rx: Receiver
    ) -> None:
        from fastapi.testclient import TestClient

        from openimpact.app import create_app

        settings = database.settings(  # type: ignore[attr-defined]
            webhooks_allow_private=True, webhook_concurrency=2, webhook_timeout_seconds=1.5
        )

        def slow(_r: object) -> tuple[int, dict[str, str], bytes]:
            time.sleep(0.6)
            return 200, {}, b""

        rx.respond = slow
        with TestClient(create_app(settings)) as client:
            api = Api(client)
            me = api.as_(api.account())
            made = endpoint(me, rx.url)
            for _ in range(6):
                me.plant(1)
            deliver(api)
            log = deliveries(me, made["id"])
            assert len(log) == 6 and all(d["succeeded"] for d in log), log

    def test_a_resend_while_the_message_is_being_sent_stands(self, api: Api, rx: Receiver) -> None:
        """The attempt in flight does not overwrite the resend that came
        meanwhile, and no second worker sends the leased message."""
        from openimpact.timeutil import now_ms
        from openimpact.webhooks.models import WebhookMessage

        me = api.as_(api.account())
        made = endpoint(me, rx.url)
        rx.respond = lambda _r: (500, {}, b"")
        me.plant(1)
        deliver(api)  # the first attempt fails: a retry message
        (first,) = deliveries(me, made["id"])
        settings = api.client.app.state.settings  # type: ignore[attr-defined]
        time.sleep(0.01)
        # The database is shared with earlier tests, whose retries may be due
        # too: a worker takes them all, and this test follows its own message.
        claimed = api.db.run_sync(
            lambda s: delivery.claim_messages(s, now_ms(), 10_000, 60_000), write=True
        )
        mine = [send for send in claimed.sends if send.target.url == rx.url]
        assert len(mine) == 1
        work = delivery.Work(sends=mine, claimed=1)
        # While it is out: a resend, and another worker that finds nothing to take.
        me.post(f"/v1/webhook_endpoints/{made['id']}/deliveries/{first['id']}/resend", {})
        again = api.db.run_sync(
            lambda s: delivery.claim_messages(s, now_ms(), 10_000, 60_000), write=True
        )
        assert [send for send in again.sends if send.message_pk == mine[0].message_pk] == []
        failed = [delivery.Answer(work.sends[0], now_ms(), 1, status=500, error="HTTP 500")]
        api.db.run_sync(delivery.record, work, failed, settings, write=True)
        (message,) = api.db.run_sync(
            lambda s: list(
                s.scalars(
                    select(WebhookMessage).where(WebhookMessage.event_pk == work.sends[0].event_pk)
                )
            )
        )
        assert (message.status, message.tries, message.trigger, message.lease_ms) == (
            "pending",
            0,
            "resend",
            None,
        )
        rx.respond = lambda _r: (200, {}, b"")
        deliver(api)
        newest = deliveries(me, made["id"])[0]
        assert newest["trigger"] == "resend" and newest["succeeded"] is True

    def test_recover_leaves_out_what_came_before_and_what_is_not_tried_yet(
        self, api: Api, rx: Receiver
    ) -> None:
        me = api.as_(api.account())
        before = me.plant(1)  # before the endpoint: never its event
        made = endpoint(me, rx.url)
        me.plant(2)  # not attempted yet: its first attempt is still to come
        response = me.post(
            f"/v1/webhook_endpoints/{made['id']}/recover",
            {"since": before["time_utc"][:10] + "T00:00:00Z"},
        )
        assert response.json()["queued"] == 0
        deliver(api)
        assert len(rx.requests) == 1 and rx.requests[0].json["data"]["tree_planted"] == 2


def _signed_by(secret: str, request: Any) -> bool:
    try:
        Webhook(secret).verify(request.body, request.headers)
    except Exception:  # another endpoint's signature
        return False
    return True
