"""The dashboard's Schedules page: the API's schedules, created, paused,
resumed and deleted by owners through the same service, seen by members."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.dashboard.helpers import (
    FORM_ERROR,
    XSS_IMG,
    XSS_SCRIPT,
    field_error,
    signed_in,
    visible_text,
)
from tests.factories import Caller

FORM = {
    "impact_type": "tree_planted",
    "amount": "100",
    "day_of_month": "1",
    "starts_on": "2026-01-01",
}


def _api(client: TestClient, keys: object) -> Caller:
    return Caller(client, keys.production_key, keys)  # type: ignore[attr-defined]


def test_owner_creates_pauses_resumes_and_deletes(client: TestClient) -> None:
    owner = signed_in(client)
    made = owner.post("/dashboard/schedules", {**FORM, "customer_email": "ana@example.com"})
    assert made.status_code == 303, made.text
    schedule_id = made.headers["location"].split("created=")[1]
    page = owner.page("/dashboard/schedules")
    text = visible_text(page)
    assert schedule_id in text and "ana@example.com" in text and "Active" in text
    listed = _api(client, owner.account).get(f"/v1/schedules/{schedule_id}").json()
    assert listed["amount"] == 100 and listed["customer_email"] == "ana@example.com"

    assert owner.post(f"/dashboard/schedules/{schedule_id}/pause").status_code == 303
    assert "Paused" in visible_text(owner.page("/dashboard/schedules"))
    assert _api(client, owner.account).get(f"/v1/schedules/{schedule_id}").json()["status"] == (
        "paused"
    )
    assert owner.post(f"/dashboard/schedules/{schedule_id}/resume").status_code == 303
    assert owner.post(f"/dashboard/schedules/{schedule_id}/delete").status_code == 303
    assert "No schedules yet" in visible_text(owner.page("/dashboard/schedules"))


def test_bad_input_is_shown_next_to_the_field(client: TestClient) -> None:
    owner = signed_in(client)
    for fields, name in (
        ({"day_of_month": "31"}, "day_of_month"),
        ({"amount": "lots"}, "amount"),
        ({"amount": ""}, "amount"),
        ({"starts_on": "2026-13-01"}, "starts_on"),
        ({"ends_on": "2025-01-01"}, "ends_on"),
        ({"impact_type": "waste_removed", "category": "food"}, "category"),
        ({"impact_type": "money_donated", "category": "wildlife"}, "category"),
    ):
        response = owner.post("/dashboard/schedules", {**FORM, **fields})
        assert response.status_code == FORM_ERROR, (fields, response.status_code)
        assert field_error(response.text, name), (fields, response.text[:3000])
    assert _api(client, owner.account).get("/v1/schedules").json()["schedules"] == []


def test_customer_text_is_escaped(client: TestClient) -> None:
    owner = signed_in(client)
    _api(client, owner.account).post(
        "/v1/schedules",
        {
            "impact_type": "tree_planted",
            "amount": 1,
            "day_of_month": 1,
            "starts_on": "2026-01-01",
            "customer_email": "x@example.com",
            "customer_name": XSS_SCRIPT + XSS_IMG,
        },
    )
    page = owner.page("/dashboard/schedules")
    assert "<script>alert(1)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page


def test_members_see_but_do_not_change(client: TestClient) -> None:
    owner = signed_in(client)
    made = owner.post("/dashboard/schedules", FORM)
    schedule_id = made.headers["location"].split("created=")[1]
    member = signed_in(client, owner.account, role="member")
    page = member.page("/dashboard/schedules")
    assert schedule_id in page and "New schedule" not in page
    assert member.post("/dashboard/schedules", FORM).status_code == 403
    assert member.post(f"/dashboard/schedules/{schedule_id}/pause").status_code == 403
    assert _api(client, owner.account).get(f"/v1/schedules/{schedule_id}").json()["status"] == (
        "active"
    )


def test_another_accounts_schedule_is_not_found(client: TestClient) -> None:
    owner = signed_in(client)
    made = owner.post("/dashboard/schedules", FORM)
    schedule_id = made.headers["location"].split("created=")[1]
    stranger = signed_in(client)
    assert stranger.post(f"/dashboard/schedules/{schedule_id}/delete").status_code == 404
    assert schedule_id not in stranger.page("/dashboard/schedules")
    assert _api(client, owner.account).get(f"/v1/schedules/{schedule_id}").status_code == 200


def test_the_track_view_says_which_schedule_and_month(client: TestClient) -> None:
    from datetime import date

    from sqlalchemy import select

    from openimpact.accounts.models import Account
    from openimpact.schedules.service import run_due
    from tests.dashboard.helpers import db_of

    owner = signed_in(client)
    made = owner.post("/dashboard/schedules", FORM)
    schedule_id = made.headers["location"].split("created=")[1]
    db = db_of(client)
    account_id = db.run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == owner.account.user_id))
    )
    from openimpact.schedules.models import Schedule

    def backdate(session: object) -> None:  # as if made on its start day
        schedule = session.scalar(select(Schedule).where(Schedule.schedule_id == schedule_id))  # type: ignore[attr-defined]
        schedule.not_before = schedule.starts_on

    db.run_sync(backdate, write=True)
    assert run_due(db, date(2026, 1, 2), account_id=account_id).created == 1
    (record,) = _api(client, owner.account).walk("/v1/records", "user_records")
    tracking_id = f"{owner.account.user_id}-{record['time_utc']}"
    page = owner.page(f"/dashboard/impacts/{tracking_id}")
    origin = " ".join(visible_text(page).split())
    assert "From schedule" in origin and schedule_id in origin and "for 2026-01" in origin
