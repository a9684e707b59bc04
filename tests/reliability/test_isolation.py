"""Isolation (OWASP API1, broken object level authorization).

Every endpoint that takes an identifier or a filter is called with the data
of one account and environment (the owner's production) by three intruders:
another account's production key, another account's sandbox key, and the
owner's own sandbox key. None of them may read or change the owner's data,
nor tell it from data that does not exist: each answer must equal, byte for
byte, the answer about something that never existed.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.factories import Api

VICTIM = "victim@example.com"
NOWHERE = "2001-02-03T04:05:06.789Z"  # a time no impact of these tests has
UNKNOWN = "nobody-at-all@example.com"


class Scene:
    def __init__(self, api: Api) -> None:
        owner_account = api.account(causes=["trees", "ocean"])
        other_account = api.account(causes=["trees", "ocean"])
        self.owner = api.as_(owner_account, "production")
        self.intruders = {
            "another account, production": api.as_(other_account, "production"),
            "another account, sandbox": api.as_(other_account, "sandbox"),
            "the same account, sandbox": api.as_(owner_account, "sandbox"),
        }
        self.direct = self.owner.plant(7, metadata={"order": "A-1"})
        self.on_behalf = self.owner.impact(
            "donate_money", 1500, customer_email=VICTIM, customer_name="Victim"
        )
        self.keyed = self.owner.post(
            "/v1/clean_ocean", {"amount": 4}, idempotency_key="order-1"
        ).json()
        # The intruders have data of their own, so that "empty" is not the
        # only thing they could ever see.
        for intruder in self.intruders.values():
            intruder.plant(1)
            intruder.plant(1, customer_email="own@example.com")
        self.before = self.owner_view()

    def owner_view(self) -> dict[str, Any]:
        owner = self.owner
        return {
            "totals": owner.get("/v1/impact").json(),
            "daily": owner.get("/v1/impact/daily").json(),
            "records": owner.walk("/v1/records", "user_records", limit=2),
            "customer_records": owner.walk("/v1/customer_records", "customer_records", limit=2),
            "customers": owner.walk("/v1/customers", "customers", limit=2),
            "tracks": [
                owner.get("/v1/track", user_id=i["user_id"], time_utc=i["time_utc"]).json()
                for i in (self.direct, self.on_behalf, self.keyed)
            ],
        }

    @property
    def owner_times(self) -> set[str]:
        return {self.direct["time_utc"], self.on_behalf["time_utc"], self.keyed["time_utc"]}


@pytest.fixture
def scene(api: Api) -> Scene:
    return Scene(api)


INTRUDERS = ["another account, production", "another account, sandbox", "the same account, sandbox"]


def _same(a: Any, b: Any) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.json() == b.json()


@pytest.mark.parametrize("who", INTRUDERS)
class TestAnIntruder:
    def test_track_answers_as_for_an_impact_that_never_existed(
        self, scene: Scene, who: str
    ) -> None:
        intruder = scene.intruders[who]
        for impact in (scene.direct, scene.on_behalf, scene.keyed):
            never = intruder.get("/v1/track", user_id=impact["user_id"], time_utc=NOWHERE)
            assert never.status_code == 404
            for user_id in (impact["user_id"], intruder.account.user_id):
                _same(
                    intruder.get("/v1/track", user_id=user_id, time_utc=impact["time_utc"]), never
                )

    def test_cancel_answers_as_for_an_impact_that_never_existed_and_changes_nothing(
        self, scene: Scene, who: str
    ) -> None:
        intruder = scene.intruders[who]
        for impact in (scene.direct, scene.on_behalf, scene.keyed):
            never = intruder.post(
                "/v1/cancel_impact", {"user_id": impact["user_id"], "time_utc": NOWHERE}
            )
            assert never.status_code == 404
            for user_id in (impact["user_id"], intruder.account.user_id):
                body = {"user_id": user_id, "time_utc": impact["time_utc"], "reason": "fraud"}
                _same(intruder.post("/v1/cancel_impact", body), never)
                _same(intruder.post("/v1/cancel_impact", body, idempotency_key="c-1"), never)
        assert scene.owner_view() == scene.before

    def test_customer_filters_answer_as_for_an_unknown_email(self, scene: Scene, who: str) -> None:
        intruder = scene.intruders[who]
        for path in ("/v1/customer_records", "/v1/customers"):
            unknown = intruder.get(path, customer_email=UNKNOWN)
            assert unknown.status_code == 200
            for email in (VICTIM, VICTIM.upper(), " victim@example.com"):
                _same(intruder.get(path, customer_email=email), unknown)
                _same(intruder.get(path, customer_email=email, limit=0), unknown)

    def test_lists_and_totals_hold_only_its_own_data(self, scene: Scene, who: str) -> None:
        intruder = scene.intruders[who]
        seen = [
            *intruder.walk("/v1/records", "user_records", limit=1),
            *intruder.walk("/v1/customer_records", "customer_records", limit=1),
            *intruder.walk(
                "/v1/records", "user_records", filter_by="tree_planted", sort_order="desc"
            ),
            *intruder.walk(
                "/v1/customer_records",
                "customer_records",
                filter_by="money_donated",
                start_date="2000-01-01",
                end_date="2999-12-31",
            ),
        ]
        assert {r["user_id"] for r in seen} == {intruder.account.user_id}
        assert not {r["time_utc"] for r in seen} & scene.owner_times
        customers = intruder.walk("/v1/customers", "customers", limit=1)
        assert [c["customer_email"] for c in customers] == ["own@example.com"]
        totals = intruder.get("/v1/impact").json()
        assert totals["user_id"] == intruder.account.user_id
        assert (totals["tree_planted"], totals["money_donated"], totals["waste_removed"]) == (
            2,
            0,
            0,
        )
        daily = intruder.get("/v1/impact/daily").json()["daily_impact"]
        assert sum(d["money_donated"] + d["waste_removed"] for d in daily) == 0

    def test_the_owners_cursors_open_nothing(self, scene: Scene, who: str) -> None:
        intruder = scene.intruders[who]
        for path, key, params in (
            ("/v1/records", "user_records", {"limit": 1}),
            ("/v1/customer_records", "customer_records", {"limit": 0}),
            ("/v1/customers", "customers", {"limit": 0}),
        ):
            cursor = scene.owner.get(path, **params).json()["cursor"]
            # The answer to a cursor of its own, used with another query.
            own = intruder.get(path, limit=0).json()["cursor"]
            different_query = intruder.get(path, cursor=own, sort_order="desc", **params)
            assert different_query.status_code == 400
            _same(intruder.get(path, cursor=cursor, **params), different_query)
            assert key not in intruder.get(path, cursor=cursor, **params).json()

    def test_idempotency_keys_are_its_own(self, scene: Scene, who: str) -> None:
        """The owner's Idempotency-Key neither replays the owner's answer nor
        conflicts (a 409 would tell that the key exists elsewhere)."""
        intruder = scene.intruders[who]
        for body in ({"amount": 4}, {"amount": 5}):
            response = intruder.post("/v1/clean_ocean", body, idempotency_key="order-1")
            if body == {"amount": 4}:
                assert response.status_code == 200, response.text
                assert "idempotent-replayed" not in response.headers
                made = response.json()
                assert made["user_id"] == intruder.account.user_id
                assert made["time_utc"] not in scene.owner_times
            else:
                # Its own key, now used with another body: its own 409.
                assert response.status_code == 409
        assert scene.owner_view() == scene.before


def test_the_owner_still_sees_everything(scene: Scene) -> None:
    """The control: what the intruders cannot see is there for its owner."""
    owner = scene.owner
    assert {r["time_utc"] for r in scene.before["records"]} == {
        scene.direct["time_utc"],
        scene.keyed["time_utc"],
    }
    assert [c["customer_email"] for c in scene.before["customers"]] == [VICTIM]
    assert owner.get("/v1/customers", customer_email=VICTIM).json()["customers"]
    replay = owner.post("/v1/clean_ocean", {"amount": 4}, idempotency_key="order-1")
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == scene.keyed
