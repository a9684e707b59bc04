"""/v1/schedules: create, list, read, change, delete, with the API's errors,
idempotency and tenancy."""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import Api, Caller

TREES = {"impact_type": "tree_planted", "amount": 100, "day_of_month": 1, "starts_on": "2026-01-01"}


def _create(me: Caller, **fields: Any) -> dict[str, Any]:
    response = me.post("/v1/schedules", {**TREES, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def _patch(me: Caller, schedule_id: str, body: dict[str, Any]) -> Any:
    return me.client.patch(f"/v1/schedules/{schedule_id}", json=body, headers=me.headers())


class TestCreate:
    def test_a_schedule_and_its_next_run(self, api: Api) -> None:
        me = api.as_(api.account())
        made = _create(
            me,
            customer_email="ana@example.com",
            customer_name="Ana",
            metadata={"plan": "monthly"},
            ends_on="2030-12-31",
        )
        assert made["id"].startswith("S") and made["status"] == "active"
        assert made["impact_type"] == "tree_planted" and made["amount"] == 100
        assert made["customer_email"] == "ana@example.com"
        assert made["metadata"] == {"plan": "monthly"}
        assert (
            made["next_run_on"].endswith("-01") and made["next_period"] == made["next_run_on"][:7]
        )
        assert made["created_on"].endswith("Z")
        assert me.get(f"/v1/schedules/{made['id']}").json() == made

    @pytest.mark.parametrize(
        ("fields", "named"),
        [
            ({"day_of_month": 29}, "day_of_month"),
            ({"day_of_month": 0}, "day_of_month"),
            ({"starts_on": "2026-02-30"}, "starts_on"),
            ({"starts_on": "01/02/2026"}, "starts_on"),
            ({"ends_on": "2025-12-31"}, "ends_on"),
            ({"amount": 0}, "amount"),
            ({"amount": 10_000_001}, "amount"),
            ({"amount": 5.5}, "amount"),
            ({"impact_type": "planted"}, "impact_type"),
            ({"category": "palms"}, "category"),
            ({"impact_type": "waste_removed", "category": "food"}, "category"),
            ({"customer_name": "Ana"}, "customer_name"),
            ({"customer_email": "not-an-email"}, "customer_email"),
            ({"metadata": {"gift": "x"}}, "metadata"),
            ({"every": "month"}, "every"),
            ({"impact_type": "money_donated", "category": "wildlife"}, "category"),
        ],
    )
    def test_bad_input_is_a_400_naming_the_field(
        self, api: Api, fields: dict[str, Any], named: str
    ) -> None:
        me = api.as_(api.account())
        response = me.post("/v1/schedules", {**TREES, **fields})
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "validation_error"
        assert named in response.json()["message"]
        assert me.get("/v1/schedules").json()["schedules"] == []

    def test_a_donation_to_a_configured_cause(self, api: Api) -> None:
        me = api.as_(api.account(causes=["oceans", "schools"]))
        made = _create(me, impact_type="money_donated", amount=500, category="schools")
        assert made["category"] == "schools"

    def test_idempotency_key_replays_and_refuses_another_body(self, api: Api) -> None:
        me = api.as_(api.account())
        first = me.post("/v1/schedules", TREES, **{"Idempotency-Key": "sched-1"})
        again = me.post("/v1/schedules", TREES, **{"Idempotency-Key": "sched-1"})
        other = me.post("/v1/schedules", {**TREES, "amount": 5}, **{"Idempotency-Key": "sched-1"})
        assert first.status_code == again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        assert again.headers["idempotent-replayed"] == "true"
        assert other.status_code == 409
        assert len(me.get("/v1/schedules").json()["schedules"]) == 1

    def test_needs_a_key(self, api: Api) -> None:
        response = api.client.post("/v1/schedules", json=TREES)
        assert response.status_code == 401
        assert response.json()["type"] == "key_error"


class TestReadChangeDelete:
    def test_pages_follow_the_cursor(self, api: Api) -> None:
        me = api.as_(api.account())
        made = [_create(me, amount=n)["id"] for n in (1, 2, 3)]
        first = me.get("/v1/schedules", limit=2).json()
        assert [s["id"] for s in first["schedules"]] == made[:2]
        rest = me.get("/v1/schedules", limit=2, cursor=first["cursor"]).json()
        assert [s["id"] for s in rest["schedules"]] == made[2:]
        assert "cursor" not in rest
        assert me.get("/v1/schedules", cursor="forged.cursor").status_code == 400

    def test_another_account_or_environment_sees_nothing(self, api: Api) -> None:
        shop = api.account()
        mine = _create(api.as_(shop))
        for other in (api.as_(api.account()), api.as_(shop, "sandbox")):
            assert other.get(f"/v1/schedules/{mine['id']}").status_code == 404
            assert _patch(other, mine["id"], {"status": "paused"}).status_code == 404
            gone = other.client.delete(f"/v1/schedules/{mine['id']}", headers=other.headers())
            assert gone.status_code == 404
            assert other.get("/v1/schedules").json()["schedules"] == []
        assert api.as_(shop).get(f"/v1/schedules/{mine['id']}").json()["status"] == "active"

    def test_pause_resume_amount_and_end_date(self, api: Api) -> None:
        me = api.as_(api.account())
        made = _create(me, ends_on="2030-01-01")
        paused = _patch(me, made["id"], {"status": "paused"}).json()
        assert paused["status"] == "paused" and "next_run_on" not in paused
        resumed = _patch(me, made["id"], {"status": "active", "amount": 7, "ends_on": None})
        assert resumed.status_code == 200
        body = resumed.json()
        assert body["status"] == "active" and body["amount"] == 7 and "ends_on" not in body
        assert "next_run_on" in body

    @pytest.mark.parametrize(
        ("body", "named"),
        [
            ({"status": "stopped"}, "status"),
            ({"amount": 0}, "amount"),
            ({"amount": 10_000_001}, "amount"),
            ({"ends_on": "2025-01-01"}, "ends_on"),
            ({"ends_on": "soon"}, "ends_on"),
            ({"status": None}, "status"),
            ({"day_of_month": 3}, "day_of_month"),
        ],
    )
    def test_bad_changes_are_400s_and_change_nothing(
        self, api: Api, body: dict[str, Any], named: str
    ) -> None:
        me = api.as_(api.account())
        made = _create(me)
        response = _patch(me, made["id"], body)
        assert response.status_code == 400, response.text
        assert named in response.json()["message"]
        assert me.get(f"/v1/schedules/{made['id']}").json() == made

    def test_delete(self, api: Api) -> None:
        me = api.as_(api.account())
        made = _create(me)
        gone = me.client.delete(f"/v1/schedules/{made['id']}", headers=me.headers())
        assert gone.status_code == 200 and gone.json() == {"id": made["id"], "deleted": True}
        assert me.get(f"/v1/schedules/{made['id']}").status_code == 404
        assert me.get("/v1/schedules").json()["schedules"] == []

    def test_the_openapi_tags_mark_the_extension(self, api: Api) -> None:
        paths = api.client.get("/openapi.json").json()["paths"]
        assert paths["/v1/schedules"]["post"]["tags"] == ["schedules (extension of v1)"]
