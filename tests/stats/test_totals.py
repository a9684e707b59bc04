"""/v1/impact and /v1/impact/daily equal the sum of the non-cancelled records."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.impacts.models import DailyImpact
from openimpact.kit import RECORD_KEYS
from tests.factories import Api


def test_totals_split_direct_and_customer_impact(api: Api) -> None:
    me = api.as_(api.account())
    me.impact("plant_tree", 60)
    me.impact("plant_tree", 40, customer_email="a@example.com")
    me.impact("clean_ocean", 30)
    me.impact("capture_carbon", 45, customer_email="b@example.com")
    me.impact("restore_coral", 3)
    me.impact("donate_money", 15_000, customer_email="a@example.com")
    body = me.get("/v1/impact").json()
    assert body == {
        "user_id": me.account.user_id,
        "tree_planted": 100,
        "waste_removed": 30,
        "carbon_captured": 45,
        "coral_restored": 3,
        "money_donated": 15_000,
        "user_impact": {
            "tree_planted": 60,
            "waste_removed": 30,
            "carbon_captured": 0,
            "coral_restored": 3,
            "money_donated": 0,
        },
        "customer_impact": {
            "tree_planted": 40,
            "waste_removed": 0,
            "carbon_captured": 45,
            "coral_restored": 0,
            "money_donated": 15_000,
        },
    }


def test_totals_and_daily_match_records_after_cancels(api: Api) -> None:
    me = api.as_(api.account())
    made = [
        me.impact(endpoint, amount, **({"customer_email": "x@example.com"} if amount % 2 else {}))
        for endpoint, amount in [
            ("plant_tree", 3),
            ("plant_tree", 8),
            ("clean_ocean", 5),
            ("donate_money", 250),
            ("restore_coral", 7),
        ]
    ]
    for victim in (made[1], made[3]):
        me.post("/v1/cancel_impact", {"user_id": victim["user_id"], "time_utc": victim["time_utc"]})
    records = me.walk("/v1/records", "user_records", limit=2) + me.walk(
        "/v1/customer_records", "customer_records", limit=2
    )
    expected: Counter[str] = Counter()
    per_day: dict[str, Counter[str]] = defaultdict(Counter)
    for record in records:
        if "cancelled_on" in record:
            continue
        key = next(k for k in RECORD_KEYS if k in record)
        expected[key] += record[key]
        per_day[record["time_utc"][:10]][key] += record[key]
    totals = me.get("/v1/impact").json()
    assert {k: totals[k] for k in RECORD_KEYS} == {k: expected[k] for k in RECORD_KEYS}
    daily = me.get("/v1/impact/daily").json()["daily_impact"]
    assert {d["date"]: {k: d[k] for k in RECORD_KEYS} for d in daily} == {
        day: {k: c[k] for k in RECORD_KEYS} for day, c in per_day.items()
    }


def test_daily_range_is_inclusive_and_ascending(api: Api) -> None:
    me = api.as_(api.account())
    me.plant(1)
    # Add past days directly to the aggregate, as a long-lived account would have.
    with api.db.session(write=True) as session, session.begin():
        account_id = session.scalar(select(Account.id).where(Account.user_id == me.account.user_id))
        for day, trees in (("2025-01-15", 5), ("2025-01-21", 2), ("2025-03-01", 9)):
            session.add(
                DailyImpact(account_id=account_id, env="production", day=day, tree_planted=trees)
            )
    series = me.get("/v1/impact/daily", start_date="2025-01-15", end_date="2025-03-01").json()
    assert [d["date"] for d in series["daily_impact"]] == ["2025-01-15", "2025-01-21", "2025-03-01"]
    assert series["daily_impact"][0] == {
        "date": "2025-01-15",
        "tree_planted": 5,
        "waste_removed": 0,
        "carbon_captured": 0,
        "coral_restored": 0,
        "money_donated": 0,
    }
    narrow = me.get("/v1/impact/daily", start_date="2025-01-16", end_date="2025-01-21").json()
    assert [d["date"] for d in narrow["daily_impact"]] == ["2025-01-21"]


def test_daily_rejects_bad_dates(api: Api) -> None:
    me = api.as_(api.account())
    for params, name in (
        ({"start_date": "2025-1-1"}, "start_date"),
        ({"end_date": "tomorrow"}, "end_date"),
        ({"start_date": "2025-02-01", "end_date": "2025-01-01"}, "start_date"),
    ):
        response = me.get("/v1/impact/daily", **params)
        assert response.status_code == 400
        assert name in response.json()["message"]


def test_new_account_has_zero_totals(api: Api) -> None:
    me = api.as_(api.account(), "sandbox")
    body = me.get("/v1/impact").json()
    assert all(body[k] == 0 for k in RECORD_KEYS)
    assert me.get("/v1/impact/daily").json() == {
        "user_id": me.account.user_id,
        "daily_impact": [],
    }
