"""Idempotency-Key: a retried order is never counted twice."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import Api


def _post(me, body, key):  # type: ignore[no-untyped-def]
    return me.post("/v1/plant_tree", body, idempotency_key=key)


class TestReplay:
    def test_retry_returns_the_stored_answer_and_creates_nothing(self, api: Api) -> None:
        me = api.as_(api.account())
        first = _post(me, {"amount": 3, "customer_email": "a@example.com"}, "order-1")
        again = _post(me, {"customer_email": "a@example.com", "amount": 3}, "order-1")
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert "Idempotent-Replayed" not in first.headers
        assert me.get("/v1/impact").json()["tree_planted"] == 3
        assert len(me.walk("/v1/customer_records", "customer_records")) == 1

    def test_same_key_other_body_is_409(self, api: Api) -> None:
        me = api.as_(api.account())
        assert _post(me, {"amount": 3}, "order-2").status_code == 200
        conflict = _post(me, {"amount": 4}, "order-2")
        assert conflict.status_code == 409
        assert conflict.json()["type"] == "idempotency_error"
        other_endpoint = me.post("/v1/clean_ocean", {"amount": 3}, idempotency_key="order-2")
        assert other_endpoint.status_code == 409
        assert me.get("/v1/impact").json()["tree_planted"] == 3

    def test_keys_are_scoped_to_account_and_environment(self, api: Api) -> None:
        account = api.account()
        live, test = api.as_(account), api.as_(account, "sandbox")
        other = api.as_(api.account())
        for caller in (live, test, other):
            assert _post(caller, {"amount": 1}, "shared-key").status_code == 200
        for caller in (live, test, other):
            assert caller.get("/v1/impact").json()["tree_planted"] == 1

    def test_key_length_is_checked(self, api: Api) -> None:
        me = api.as_(api.account())
        assert _post(me, {"amount": 1}, "k" * 255).status_code == 200
        too_long = _post(me, {"amount": 1}, "k" * 256)
        assert too_long.status_code == 400
        assert "Idempotency-Key" in too_long.json()["message"]

    def test_a_failed_request_is_not_remembered(self, api: Api) -> None:
        me = api.as_(api.account())
        assert _post(me, {"amount": 0}, "order-3").status_code == 400
        assert _post(me, {"amount": 2}, "order-3").status_code == 200

    def test_cancel_accepts_a_key_too(self, api: Api) -> None:
        me = api.as_(api.account())
        made = me.plant(2)
        body = {"user_id": made["user_id"], "time_utc": made["time_utc"]}
        first = me.post("/v1/cancel_impact", body, idempotency_key="refund-1")
        again = me.post("/v1/cancel_impact", body, idempotency_key="refund-1")
        assert again.json() == first.json()
        assert again.json()["message"] == "impact cancelled"


class TestConcurrentRetries:
    def test_concurrent_requests_with_one_key_create_exactly_one_impact(self, api: Api) -> None:
        me = api.as_(api.account())
        app = me.client.app

        async def burst() -> list[httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await asyncio.gather(
                    *(
                        client.post(
                            "/v1/plant_tree",
                            json={"amount": 9},
                            headers={"x-api-key": me.key, "Idempotency-Key": "checkout-77"},
                        )
                        for _ in range(12)
                    )
                )

        responses = asyncio.run(burst())
        assert {r.status_code for r in responses} == {200}
        assert len({r.json()["time_utc"] for r in responses}) == 1
        assert me.get("/v1/impact").json()["tree_planted"] == 9
        assert len(me.walk("/v1/records", "user_records")) == 1


def test_the_request_hash_is_that_of_the_canonical_json_it_always_was() -> None:
    """Stored answers are found by this hash for days: its text must not move."""
    import hashlib
    import json

    from openimpact.impacts.batch import request_hash

    body = {"z": 1, "amount": 2, "metadata": {"b": "é\n\u2028😀", "a": '"q"'}, "notify": False}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical == (
        '{"amount":2,"metadata":{"a":"\\"q\\"","b":"é\\n\u2028😀"},"notify":false,"z":1}'
    )
    expected = hashlib.sha256(f"/v1/plant_tree\n{canonical}".encode()).hexdigest()
    assert request_hash("/v1/plant_tree", body) == expected
