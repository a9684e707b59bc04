"""Plans: bonus impacts once a month, flagged on track and counted in the
totals, never against a budget; and the operator's commands for plans,
prices and budgets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import date

import pytest
from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.budgets import service as budgets
from openimpact.cli import main
from openimpact.config import get_settings
from openimpact.db import Database
from openimpact.plans import service
from tests.conftest import TestDatabase
from tests.factories import AccountKeys, Api

Cli = Callable[[Sequence[str]], int]


@pytest.fixture
def cli(database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


def _account_id(api: Api, keys: AccountKeys) -> int:
    return api.db.run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == keys.user_id))
    )


def _on_plan(api: Api, keys: AccountKeys, name: str, bonuses: dict[str, int]) -> None:
    def make(session: object) -> None:
        existing = {p["name"] for p in service.list_plans(session)}  # type: ignore[arg-type]
        if name not in existing:
            service.create_plan(session, name, bonuses)  # type: ignore[arg-type]
        account = session.scalar(select(Account).where(Account.user_id == keys.user_id))  # type: ignore[attr-defined]
        service.assign_plan(session, account, name)  # type: ignore[arg-type]

    api.db.run_sync(make, write=True)


def test_bonus_impacts_come_once_a_month_flagged_and_counted(api: Api) -> None:
    keys = api.account()
    me = api.as_(keys)
    _on_plan(api, keys, "Growth-A", {"tree_planted": 50, "waste_removed": 10})
    account_id = _account_id(api, keys)
    assert service.grant_bonuses(api.db, date(2026, 12, 3), account_id=account_id) == 2
    assert service.grant_bonuses(api.db, date(2026, 12, 20), account_id=account_id) == 0
    records = me.walk("/v1/records", "user_records")
    assert len(records) == 2
    for record in records:
        track = me.get("/v1/track", user_id=keys.user_id, time_utc=record["time_utc"]).json()
        assert track["is_bonus_impact"] is True
    totals = me.get("/v1/impact").json()
    assert totals["tree_planted"] == 50 and totals["waste_removed"] == 10
    # Only in production; the next month brings the next bonus.
    assert api.as_(keys, "sandbox").get("/v1/impact").json()["tree_planted"] == 0
    assert service.grant_bonuses(api.db, date(2027, 1, 1), account_id=account_id) == 2
    assert me.get("/v1/impact").json()["tree_planted"] == 100


def test_racing_workers_grant_a_month_once(api: Api) -> None:
    shops = [api.account() for _ in range(3)]
    for keys in shops:
        _on_plan(api, keys, "Growth-B", {"coral_restored": 7})
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def worker() -> None:
        db = Database(api.db.url)
        try:
            start.wait()
            service.grant_bonuses(db, date(2026, 11, 5))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    for keys in shops:
        assert api.as_(keys).get("/v1/impact").json()["coral_restored"] == 7


def test_bonus_impacts_never_count_against_the_budget(api: Api) -> None:
    keys = api.account()
    api.db.run_sync(lambda s: budgets.set_prices(s, {"tree_planted": 40}), write=True)
    account_id = _account_id(api, keys)
    api.db.run_sync(lambda s: budgets.set_budget(s, account_id, "production", 100), write=True)
    _on_plan(api, keys, "Growth-C", {"tree_planted": 500})
    today = date.fromisoformat(budgets.month_of(budgets.now_ms()) + "-01")
    assert service.grant_bonuses(api.db, today, account_id=account_id) == 1
    me = api.as_(keys)
    assert me.get("/v1/impact").json()["tree_planted"] == 500
    assert me.get("/v1/budget").json()["spent_cents"] == 0
    assert me.post("/v1/plant_tree", {"amount": 2}).status_code == 200


def test_operator_commands(cli: Cli, api: Api, capsys: pytest.CaptureFixture[str]) -> None:
    keys = api.account()
    name = f"Plan-{keys.user_id[-6:]}"
    assert cli(["plans", "create", "--name", name, "--bonus", "tree_planted=50",
                "--bonus", "waste_removed=10", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == {
        "name": name,
        "bonuses": {"tree_planted": 50, "waste_removed": 10},
    }
    assert cli(["plans", "list"]) == 0
    assert name in capsys.readouterr().out
    assert cli(["accounts", "plan", "--user-id", keys.user_id, "--plan", name]) == 0
    assert name in capsys.readouterr().out
    assert cli(["prices", "set", "tree_planted=40", "waste_removed=25", "--json"]) == 0
    prices = json.loads(capsys.readouterr().out)
    assert prices["tree_planted"] == 40 and prices["money_donated"] == 1
    assert cli(["accounts", "budget", "--user-id", keys.user_id, "--env", "production",
                "--monthly-cents", "50000", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["monthly_cents"] == 50000
    assert cli(["accounts", "budget", "--user-id", keys.user_id, "--off"]) == 0
    assert "No budget" in capsys.readouterr().out
    assert cli(["accounts", "plan", "--user-id", keys.user_id, "--none"]) == 0
    capsys.readouterr()

    for bad, named in (
        (["plans", "create", "--name", name, "--bonus", "tree_planted=5"], "exists"),
        (["plans", "create", "--name", "X", "--bonus", "trees=5"], "bonus"),
        (["plans", "create", "--name", "X", "--bonus", "tree_planted=0"], "bonus"),
        (["prices", "set", "sunshine=4"], "prices"),
        (["prices", "set", "tree_planted"], "prices"),
        (["accounts", "plan", "--user-id", keys.user_id, "--plan", "Nope"], "no plan"),
        (["accounts", "budget", "--user-id", keys.user_id, "--monthly-cents", "0"], "monthly"),
    ):
        assert cli(bad) == 2, bad
        assert named in capsys.readouterr().err, bad
