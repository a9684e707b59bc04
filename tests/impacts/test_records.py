"""Records and customer records: keyset pages, filters, dates and cursors."""

from __future__ import annotations

import itertools

import pytest
from sqlalchemy import update

from openimpact.impacts.models import Impact
from openimpact.timeutil import parse_iso_ms
from tests.factories import Api, Caller

MIX = ["plant_tree", "clean_ocean", "capture_carbon", "restore_coral", "donate_money"]
KEY = {
    "plant_tree": "tree_planted",
    "clean_ocean": "waste_removed",
    "capture_carbon": "carbon_captured",
    "restore_coral": "coral_restored",
    "donate_money": "money_donated",
}
DAY = 86_400_000


def _seed(me: Caller, count: int, customers: bool = False) -> list[dict]:
    made = []
    for i in range(count):
        fields = {"customer_email": f"c{i % 3}@example.com"} if customers else {}
        made.append(me.impact(MIX[i % len(MIX)], i + 1, **fields))
    return made


def _move_to_days(api: Api, me: Caller, made: list[dict], days: list[str]) -> list[str]:
    """Re-date impacts to noon of the given UTC days (keeps order, unique times)."""
    times = []
    with api.db.session(write=True) as session, session.begin():
        for i, (impact, day) in enumerate(zip(made, days, strict=True)):
            new_ms = parse_iso_ms(f"{day}T12:00:00.000Z") + i  # type: ignore[operator]
            session.execute(
                update(Impact)
                .where(Impact.time_ms == parse_iso_ms(impact["time_utc"]))
                .where(Impact.env == "production")
                .values(time_ms=new_ms)
            )
            times.append(new_ms)
    return times


class TestWalks:
    @pytest.mark.parametrize("limit", [1, 2, 3, 7, 10, 1000])
    @pytest.mark.parametrize("sort_order", ["asc", "desc"])
    def test_every_row_exactly_once_in_order(self, api: Api, limit: int, sort_order: str) -> None:
        me = api.as_(api.account())
        made = _seed(me, 11)
        rows = me.walk("/v1/records", "user_records", limit=limit, sort_order=sort_order)
        times = [r["time_utc"] for r in rows]
        expected = sorted((m["time_utc"] for m in made), reverse=sort_order == "desc")
        assert times == expected

    @pytest.mark.parametrize("limit", [1, 4])
    def test_walk_with_filters(self, api: Api, limit: int) -> None:
        me = api.as_(api.account())
        made = _seed(me, 15)
        wanted = {"tree_planted", "money_donated"}
        rows = me.walk(
            "/v1/records",
            "user_records",
            limit=limit,
            filter_by=["tree_planted", "money_donated"],
        )
        expected = [m["time_utc"] for m in made if wanted & set(m)]
        assert [r["time_utc"] for r in rows] == expected
        assert all(wanted & set(r) for r in rows)

    def test_cursor_only_when_another_page_exists(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 4)
        assert "cursor" in me.get("/v1/records", limit=3).json()
        assert "cursor" not in me.get("/v1/records", limit=4).json()
        assert "cursor" not in me.get("/v1/records", limit=5).json()
        empty = api.as_(api.account()).get("/v1/records").json()
        assert empty == {"user_records": []}

    def test_limit_zero_returns_no_rows(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 2)
        page = me.get("/v1/records", limit=0).json()
        assert page["user_records"] == []
        follow = me.get("/v1/records", limit=10, cursor=page["cursor"]).json()
        assert len(follow["user_records"]) == 2

    def test_default_page_is_ten(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 12)
        assert len(me.get("/v1/records").json()["user_records"]) == 10

    def test_records_and_customer_records_are_split(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 3)
        _seed(me, 4, customers=True)
        assert len(me.walk("/v1/records", "user_records")) == 3
        rows = me.walk("/v1/customer_records", "customer_records", limit=3)
        assert len(rows) == 4
        assert all(set(r["customer"]) >= {"customer_id", "customer_email"} for r in rows)

    def test_customer_records_for_one_customer(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 7, customers=True)
        rows = me.walk("/v1/customer_records", "customer_records", customer_email="C1@example.com")
        assert len(rows) == 2
        assert {r["customer"]["customer_email"] for r in rows} == {"c1@example.com"}
        unknown = me.get("/v1/customer_records", customer_email="nobody@example.com").json()
        assert unknown == {"customer_records": []}

    def test_email_with_plus_sent_unencoded_reads_back(self, api: Api) -> None:
        me = api.as_(api.account())
        me.plant(1, customer_email="jane+shop@example.com")
        # What the official SDK sends: the '+' raw, which a server decodes as a space.
        response = me.client.get(
            "/v1/customer_records?customer_email=jane+shop@example.com", headers=me.headers()
        )
        assert len(response.json()["customer_records"]) == 1
        customers = me.client.get(
            "/v1/customers?customer_email=jane+shop@example.com", headers=me.headers()
        ).json()["customers"]
        assert [c["customer_email"] for c in customers] == ["jane+shop@example.com"]


class TestDates:
    def test_dates_are_inclusive_whole_utc_days(self, api: Api) -> None:
        me = api.as_(api.account())
        made = _seed(me, 4)
        _move_to_days(api, me, made, ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04"])
        rows = me.walk(
            "/v1/records", "user_records", start_date="2025-01-02", end_date="2025-01-03"
        )
        assert [r["time_utc"][:10] for r in rows] == ["2025-01-02", "2025-01-03"]
        only_start = me.walk("/v1/records", "user_records", start_date="2025-01-04")
        assert len(only_start) == 1
        only_end = me.walk("/v1/records", "user_records", end_date="2025-01-01")
        assert len(only_end) == 1

    @pytest.mark.parametrize(
        ("params", "name"),
        [
            ({"start_date": "2025-13-01"}, "start_date"),
            ({"start_date": "2025-02-30"}, "start_date"),
            ({"end_date": "01/02/2025"}, "end_date"),
            ({"start_date": "2025-02-02", "end_date": "2025-02-01"}, "start_date"),
            ({"limit": "-1"}, "limit"),
            ({"limit": "1001"}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"sort_order": "newest"}, "sort_order"),
            ({"filter_by": "trees"}, "filter_by"),
            ({"cursor": "not-a-cursor"}, "cursor"),
        ],
    )
    @pytest.mark.parametrize("path", ["/v1/records", "/v1/customer_records"])
    def test_bad_parameter_is_400_naming_it(
        self, api: Api, path: str, params: dict, name: str
    ) -> None:
        me = api.as_(api.account())
        response = me.get(path, **params)
        assert response.status_code == 400, response.text
        assert response.json()["type"] == "validation_error"
        assert name in response.json()["message"]


class TestCursors:
    def _cursor(self, me: Caller, path: str = "/v1/records", **params: object) -> str:
        body = me.get(path, limit=1, **params).json()
        return body["cursor"]

    def test_tampered_and_truncated_cursors_are_400(self, api: Api) -> None:
        me = api.as_(api.account())
        _seed(me, 3)
        cursor = self._cursor(me)
        flipped = cursor[:5] + ("A" if cursor[5] != "A" else "B") + cursor[6:]
        for bad in (
            cursor[:-3],
            cursor[: len(cursor) // 2],
            flipped,
            cursor + "x",
            "",
            "...",
            "a.b.c",
        ):
            if not bad:
                continue
            response = me.get("/v1/records", cursor=bad)
            assert response.status_code == 400, bad
            assert "cursor" in response.json()["message"]

    def test_foreign_cursors_are_400(self, api: Api) -> None:
        account = api.account()
        me = api.as_(account)
        _seed(me, 3)
        _seed(me, 3, customers=True)
        cursor = self._cursor(me)
        other_account = api.as_(api.account())
        _seed(other_account, 3)
        sandbox = api.as_(account, "sandbox")
        _seed(sandbox, 3)
        assert other_account.get("/v1/records", cursor=cursor).status_code == 400
        assert sandbox.get("/v1/records", cursor=cursor).status_code == 400
        assert me.get("/v1/customer_records", cursor=cursor).status_code == 400
        assert me.get("/v1/customers", cursor=cursor).status_code == 400
        assert me.get("/v1/records", cursor=cursor, sort_order="desc").status_code == 400
        assert me.get("/v1/records", cursor=cursor, filter_by="tree_planted").status_code == 400
        assert me.get("/v1/records", cursor=cursor).status_code == 200


class TestCustomersList:
    @pytest.mark.parametrize(
        ("limit", "sort_order"), list(itertools.product([1, 2, 5], ["asc", "desc"]))
    )
    def test_walk_customers(self, api: Api, limit: int, sort_order: str) -> None:
        me = api.as_(api.account())
        for i in range(7):
            me.plant(1, customer_email=f"person{i}@example.com")
        rows = me.walk("/v1/customers", "customers", limit=limit, sort_order=sort_order)
        emails = [r["customer_email"] for r in rows]
        expected = [f"person{i}@example.com" for i in range(7)]
        assert emails == (expected if sort_order == "asc" else expected[::-1])

    def test_customers_bad_parameters(self, api: Api) -> None:
        me = api.as_(api.account())
        for params, name in (
            ({"limit": 5000}, "limit"),
            ({"sort_order": "x"}, "sort_order"),
            ({"cursor": "zz"}, "cursor"),
        ):
            response = me.get("/v1/customers", **params)
            assert response.status_code == 400
            assert name in response.json()["message"]
