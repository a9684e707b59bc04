"""The dashboard's Plan and budget page, and the budget banner of the pages."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.budgets import service as budgets
from openimpact.plans import service as plans
from tests.dashboard.helpers import FORM_ERROR, db_of, field_error, signed_in, visible_text
from tests.factories import Caller


def test_owner_sets_and_removes_the_budget(client: TestClient) -> None:
    owner = signed_in(client)
    assert "No budget" in visible_text(owner.page("/dashboard/budget"))
    assert owner.post("/dashboard/budget", {"monthly": "1,250.50"}).status_code == 303
    api = Caller(client, owner.account.production_key, owner.account)
    assert api.get("/v1/budget").json()["monthly_cents"] == 125050
    text = visible_text(owner.page("/dashboard/budget"))
    assert "$1,250.50 a month" in text and "Resets on" in text
    assert owner.post("/dashboard/budget", {"remove": "1"}).status_code == 303
    assert api.get("/v1/budget").json()["monthly_cents"] is None


def test_bad_amounts_are_shown_next_to_the_field(client: TestClient) -> None:
    owner = signed_in(client)
    for value in ("abc", "-5", "0", "12.345", ""):
        response = owner.post("/dashboard/budget", {"monthly": value})
        assert response.status_code == FORM_ERROR, value
        assert field_error(response.text, "monthly"), value
    api = Caller(client, owner.account.production_key, owner.account)
    assert api.get("/v1/budget").json()["monthly_cents"] is None


def test_members_see_but_do_not_change(client: TestClient) -> None:
    owner = signed_in(client)
    member = signed_in(client, owner.account, role="member")
    assert "Save budget" not in member.page("/dashboard/budget")
    assert member.post("/dashboard/budget", {"monthly": "10"}).status_code == 403


def test_the_plan_and_the_banner_when_close(client: TestClient) -> None:
    owner = signed_in(client)
    db = db_of(client)
    account_id = db.run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == owner.account.user_id))
    )

    def setup(session: object) -> None:
        budgets.set_prices(session, {"coral_restored": 100})  # type: ignore[arg-type]
        name = f"Reef-{owner.account.user_id[-6:]}"
        plans.create_plan(session, name, {"coral_restored": 3})  # type: ignore[arg-type]
        plans.assign_plan(session, session.get(Account, account_id), name)  # type: ignore[attr-defined,arg-type]
        budgets.set_budget(session, account_id, "production", 1000)  # type: ignore[arg-type]

    db.run_sync(setup, write=True)
    text = visible_text(owner.page("/dashboard/budget"))
    assert "Reef-" in text and "3 coral fragments" in text
    assert "almost spent" not in visible_text(owner.page("/dashboard"))
    api = Caller(client, owner.account.production_key, owner.account)
    assert api.post("/v1/restore_coral", {"amount": 8}).status_code == 200
    for page in ("/dashboard", "/dashboard/impacts", "/dashboard/schedules", "/dashboard/budget"):
        banner = visible_text(owner.page(page))
        assert "almost spent" in banner and "$8.00 of $10.00" in banner, page
    assert api.post("/v1/restore_coral", {"amount": 2}).status_code == 200
    assert "budget is reached" in visible_text(owner.page("/dashboard"))
