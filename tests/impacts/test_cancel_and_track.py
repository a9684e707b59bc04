"""Cancel (refund flow) and the tracking view."""

from __future__ import annotations

import pytest

from tests.factories import Api


class TestCancel:
    def test_cancel_reverses_totals_and_daily_exactly_once(self, api: Api) -> None:
        me = api.as_(api.account())
        keep = me.plant(5)
        gone = me.plant(3, customer_email="a@example.com")
        body = {"user_id": gone["user_id"], "time_utc": gone["time_utc"], "reason": "refund"}
        first = me.post("/v1/cancel_impact", body)
        assert first.status_code == 200
        data = first.json()
        assert data["message"] == "impact cancelled"
        assert data["tree_planted"] == 3
        assert data["reason"] == "refund"
        assert data["time_utc"] == gone["time_utc"]
        again = me.post("/v1/cancel_impact", body).json()
        assert again["message"] == "impact was already cancelled"
        assert again["cancelled_on"] == data["cancelled_on"]
        totals = me.get("/v1/impact").json()
        assert totals["tree_planted"] == 5
        assert totals["customer_impact"]["tree_planted"] == 0
        assert totals["user_impact"]["tree_planted"] == 5
        daily = me.get("/v1/impact/daily").json()["daily_impact"]
        assert sum(d["tree_planted"] for d in daily) == 5
        track = me.get("/v1/track", user_id=gone["user_id"], time_utc=gone["time_utc"]).json()
        assert track["cancelled_on"] == data["cancelled_on"]
        assert track["cancellation_reason"] == "refund"
        records = me.walk("/v1/customer_records", "customer_records")
        assert records[0]["cancelled_on"] == data["cancelled_on"]
        assert "cancelled_on" not in me.walk("/v1/records", "user_records")[0]
        assert keep["tree_planted"] == 5

    def test_a_day_with_only_cancelled_impacts_leaves_the_series(self, api: Api) -> None:
        me = api.as_(api.account())
        made = me.impact("donate_money", 500)
        me.post("/v1/cancel_impact", {"user_id": made["user_id"], "time_utc": made["time_utc"]})
        assert me.get("/v1/impact/daily").json()["daily_impact"] == []

    def test_unknown_and_foreign_impacts_are_the_same_404(self, api: Api) -> None:
        owner = api.as_(api.account())
        made = owner.plant(1)
        intruder = api.as_(api.account())
        same_account_sandbox = api.as_(owner.account, "sandbox")
        for caller, user_id in (
            (intruder, made["user_id"]),
            (intruder, intruder.account.user_id),
            (same_account_sandbox, made["user_id"]),
            (owner, "U000"),
        ):
            response = caller.post(
                "/v1/cancel_impact", {"user_id": user_id, "time_utc": made["time_utc"]}
            )
            assert response.status_code == 404
            assert response.json() == {
                "type": "not_found",
                "message": "no impact with this user_id and time_utc",
            }
        assert owner.get("/v1/impact").json()["tree_planted"] == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"time_utc": "2024-01-01T00:00:00.000Z"}, "user_id"),
            ({"user_id": "U1"}, "time_utc"),
            ({"user_id": "U1", "time_utc": "yesterday"}, "time_utc"),
            (
                {"user_id": "U1", "time_utc": "2024-01-01T00:00:00.000Z", "reason": "x" * 201},
                "reason",
            ),
        ],
    )
    def test_bad_cancel_body(self, api: Api, body: dict, field: str) -> None:
        me = api.as_(api.account())
        response = me.post("/v1/cancel_impact", body)
        assert response.status_code == 400
        assert field in response.json()["message"]


class TestTrack:
    def test_initiated_production_impact(self, api: Api) -> None:
        me = api.as_(api.account())
        made = me.plant(10, category="food")
        track = me.get("/v1/track", user_id=made["user_id"], time_utc=made["time_utc"]).json()
        assert track["tracking_id"] == f"{made['user_id']}-{made['time_utc']}"
        assert track["impact_initiated"] == made["time_utc"]
        assert track["tree_planted"] == 10
        assert track["category"] == "food"
        assert track["certificate"].endswith(f"/certificate/{track['tracking_id']}")
        for later in ("donation_sent", "impact_completed", "assigned_agent", "cancelled_on"):
            assert later not in track
        assert "is_test_transaction" not in track

    def test_sandbox_impact_is_a_test_transaction_without_certificate(self, api: Api) -> None:
        me = api.as_(api.account(), "sandbox")
        made = me.plant(1)
        track = me.get("/v1/track", user_id=made["user_id"], time_utc=made["time_utc"]).json()
        assert track["is_test_transaction"] is True
        assert "certificate" not in track

    def test_donation_reports_its_category(self, api: Api) -> None:
        me = api.as_(api.account(causes=["trees", "veterans"]))
        made = me.impact("donate_money", 100, category="veterans")
        default = me.impact("donate_money", 100)
        track = me.get("/v1/track", user_id=made["user_id"], time_utc=made["time_utc"]).json()
        assert track["donation_category"] == "supporting veterans"
        assert "category" not in track or track["category"] == "veterans"
        track = me.get("/v1/track", user_id=default["user_id"], time_utc=default["time_utc"]).json()
        assert track["donation_category"] == "planting trees"

    def test_track_of_another_account_is_404(self, api: Api) -> None:
        made = api.as_(api.account()).plant(1)
        other = api.as_(api.account())
        response = other.get("/v1/track", user_id=made["user_id"], time_utc=made["time_utc"])
        assert response.status_code == 404

    def test_track_parameters_are_required_and_checked(self, api: Api) -> None:
        me = api.as_(api.account())
        missing = me.get("/v1/track", user_id=me.account.user_id)
        assert missing.status_code == 400
        assert "time_utc" in missing.json()["message"]
        bad = me.get("/v1/track", user_id=me.account.user_id, time_utc="noon")
        assert bad.status_code == 400
        assert "time_utc" in bad.json()["message"]
