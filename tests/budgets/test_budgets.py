"""Monthly budget caps: the 402 that creates nothing, concurrent writes that
never pass the cap, cancellations giving spend back, bonus impacts that never
count, the owners' emails at 80 % and 100 % once each, GET /v1/budget."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from typing import Any

import httpx
from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.budgets import emails, service
from openimpact.budgets.models import BudgetMonth
from openimpact.schedules.service import run_due
from openimpact.timeutil import day_of, now_ms
from tests.dashboard.helpers import add_user, outbox_payloads
from tests.factories import AccountKeys, Api, Caller


def _account_id(api: Api, keys: AccountKeys) -> int:
    return api.db.run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == keys.user_id))
    )


def _budget(api: Api, keys: AccountKeys, cents: int | None, env: str = "production") -> None:
    account_id = _account_id(api, keys)
    api.db.run_sync(lambda s: service.set_budget(s, account_id, env, cents), write=True)


def _prices(api: Api, **prices: int) -> None:
    api.db.run_sync(lambda s: service.set_prices(s, prices), write=True)


def _spent(api: Api, keys: AccountKeys) -> int:
    account_id = _account_id(api, keys)
    month = service.month_of(__import__("openimpact.timeutil").timeutil.now_ms())
    row = api.db.run_sync(lambda s: s.get(BudgetMonth, (account_id, "production", month)))
    return row.spent_cents if row else 0


def test_without_a_budget_nothing_is_refused(api: Api) -> None:
    _prices(api, tree_planted=40)
    me = api.as_(api.account())
    assert me.post("/v1/plant_tree", {"amount": 1_000_000}).status_code == 200
    body = me.get("/v1/budget").json()
    assert body["monthly_cents"] is None and body["spent_cents"] is None
    assert body["resets_on"].endswith("-01")


def test_the_cap_refuses_with_a_402_that_names_cap_spend_and_reset(api: Api) -> None:
    _prices(api, tree_planted=40)
    keys = api.account()
    me = api.as_(keys)
    _budget(api, keys, 1000)  # $10.00: 25 trees
    assert me.post("/v1/plant_tree", {"amount": 20}).status_code == 200  # $8.00
    refused = me.post("/v1/plant_tree", {"amount": 6}, **{"Idempotency-Key": "k-402"})
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert body["type"] == "budget_exceeded"
    for fact in ("$10.00", "$8.00", "$2.40", "resets on"):
        assert fact in body["message"]
    assert me.get("/v1/impact").json()["tree_planted"] == 20
    assert len(me.walk("/v1/records", "user_records")) == 1
    budget = me.get("/v1/budget").json()
    assert budget["monthly_cents"] == 1000 and budget["spent_cents"] == 800
    assert budget["remaining_cents"] == 200
    # Exactly at the cap is allowed; a raised cap lets the same key through.
    assert me.post("/v1/plant_tree", {"amount": 5}).status_code == 200
    _budget(api, keys, 2000)
    again = me.post("/v1/plant_tree", {"amount": 6}, **{"Idempotency-Key": "k-402"})
    assert again.status_code == 200
    # The sandbox has its own budget (none here).
    assert api.as_(keys, "sandbox").post("/v1/plant_tree", {"amount": 100}).status_code == 200


def test_concurrent_writes_never_pass_the_cap(api: Api) -> None:
    _prices(api, tree_planted=100)
    keys = api.account()
    _budget(api, keys, 1000)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            return await asyncio.gather(
                *(
                    http.post(
                        "/v1/plant_tree",
                        json={"amount": 1},
                        headers={"x-api-key": keys.production_key},
                    )
                    for _ in range(40)
                )
            )

    statuses = sorted(r.status_code for r in asyncio.run(burst()))
    assert statuses == [200] * 10 + [402] * 30
    assert api.as_(keys).get("/v1/impact").json()["tree_planted"] == 10
    assert _spent(api, keys) == 1000


def test_a_cancellation_gives_its_cost_back(api: Api) -> None:
    _prices(api, waste_removed=50)
    keys = api.account()
    me = api.as_(keys)
    _budget(api, keys, 500)
    made = me.post("/v1/clean_ocean", {"amount": 10}).json()
    assert me.post("/v1/clean_ocean", {"amount": 1}).status_code == 402
    cancel = me.post("/v1/cancel_impact", {"user_id": keys.user_id, "time_utc": made["time_utc"]})
    assert cancel.status_code == 200
    assert _spent(api, keys) == 0
    assert me.post("/v1/clean_ocean", {"amount": 10}).status_code == 200
    # A second cancel reverses nothing, and gives nothing back twice.
    me.post("/v1/cancel_impact", {"user_id": keys.user_id, "time_utc": made["time_utc"]})
    assert _spent(api, keys) == 500


def test_setting_a_budget_counts_the_month_so_far(api: Api) -> None:
    _prices(api, coral_restored=200)
    keys = api.account()
    me = api.as_(keys)
    me.post("/v1/restore_coral", {"amount": 3})
    cancelled = me.post("/v1/restore_coral", {"amount": 4}).json()
    me.post("/v1/cancel_impact", {"user_id": keys.user_id, "time_utc": cancelled["time_utc"]})
    _budget(api, keys, 1000)
    assert me.get("/v1/budget").json()["spent_cents"] == 600


def test_owners_are_emailed_at_80_and_100_percent_once_each(api: Api) -> None:
    _prices(api, tree_planted=10)
    keys = api.account()
    me = api.as_(keys)
    _, owner = add_user(api.db, keys, role="owner")
    add_user(api.db, keys, role="member")
    _budget(api, keys, 100)
    me.post("/v1/plant_tree", {"amount": 7})
    assert outbox_payloads(api.db, keys, "budget_threshold") == []
    me.post("/v1/plant_tree", {"amount": 1})  # 80 %
    me.post("/v1/plant_tree", {"amount": 1})
    (warned,) = outbox_payloads(api.db, keys, "budget_threshold")
    assert warned["to"] == owner and warned["spent_cents"] == 80 and warned["monthly_cents"] == 100
    assert outbox_payloads(api.db, keys, "budget_exceeded") == []
    assert me.post("/v1/plant_tree", {"amount": 5}).status_code == 402
    assert me.post("/v1/plant_tree", {"amount": 5}).status_code == 402
    (exceeded,) = outbox_payloads(api.db, keys, "budget_exceeded")
    assert exceeded["to"] == owner
    assert len(outbox_payloads(api.db, keys, "budget_threshold")) == 1
    mail = emails.compose(exceeded, "impact@openimpact.local")
    assert "reached" in mail["Subject"]
    assert "$0.90" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "402" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]


def test_a_scheduled_impact_over_the_cap_is_refused_with_its_reason(api: Api) -> None:
    _prices(api, tree_planted=40)
    keys = api.account()
    me = api.as_(keys)
    _budget(api, keys, 1000)
    # Due today, or (days 29 to 31, past the last day a schedule may name) on
    # the 1st of next month, where the run is dated.
    today = date.fromisoformat(day_of(now_ms()))
    due = today if today.day <= 28 else (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    response = me.post(
        "/v1/schedules",
        {
            "impact_type": "tree_planted",
            "amount": 100,
            "day_of_month": due.day,
            "starts_on": today.isoformat(),
        },
    )
    assert response.status_code == 200
    report = run_due(api.db, due, account_id=_account_id(api, keys))
    assert report.created == 0 and report.refused >= 1
    assert me.get("/v1/impact").json()["tree_planted"] == 0


def test_the_402_is_in_the_contract(api: Api) -> None:
    paths: dict[str, Any] = api.client.get("/openapi.json").json()["paths"]
    assert "402" in paths["/v1/plant_tree"]["post"]["responses"]
    assert paths["/v1/budget"]["get"]["tags"] == ["budget (extension of v1)"]


def test_a_caller_helper_sees_only_its_environment(api: Api) -> None:
    keys = api.account()
    _budget(api, keys, 5000, env="sandbox")
    assert api.as_(keys).get("/v1/budget").json()["monthly_cents"] is None
    assert api.as_(keys, "sandbox").get("/v1/budget").json()["monthly_cents"] == 5000
    assert isinstance(api.as_(keys), Caller)


def test_a_budget_removed_and_set_again_counts_the_month_again(api: Api) -> None:
    _prices(api, tree_planted=10)
    keys = api.account()
    me = api.as_(keys)
    _budget(api, keys, 1000)
    me.post("/v1/plant_tree", {"amount": 10})  # $1.00, counted
    _budget(api, keys, None)
    unbudgeted = me.post("/v1/plant_tree", {"amount": 20}).json()  # $2.00, no budget
    _budget(api, keys, 1000)
    assert me.get("/v1/budget").json()["spent_cents"] == 300
    # Its cost was stamped when the month was counted: a cancel gives it back.
    me.post("/v1/cancel_impact", {"user_id": keys.user_id, "time_utc": unbudgeted["time_utc"]})
    assert me.get("/v1/budget").json()["spent_cents"] == 100


def test_cancels_and_writes_at_once_keep_the_spend_exact(api: Api) -> None:
    _prices(api, coral_restored=10)
    keys = api.account()
    me = api.as_(keys)
    _budget(api, keys, 100_000)
    made = [me.post("/v1/restore_coral", {"amount": 5}).json() for _ in range(20)]

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=api.client.app)
        headers = {"x-api-key": keys.production_key}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            writes = [
                http.post("/v1/restore_coral", json={"amount": 3}, headers=headers)
                for _ in range(20)
            ]
            cancels = [
                http.post(
                    "/v1/cancel_impact",
                    json={"user_id": keys.user_id, "time_utc": m["time_utc"]},
                    headers=headers,
                )
                for m in made[:10]
            ]
            return await asyncio.gather(*writes, *cancels)

    assert {r.status_code for r in asyncio.run(burst())} == {200}
    # 10 of the first 20 remain (5 each) and the 20 new ones (3 each), at 10 cents.
    assert _spent(api, keys) == (10 * 5 + 20 * 3) * 10
    assert me.get("/v1/impact").json()["coral_restored"] == 10 * 5 + 20 * 3
