"""The official Python SDK (makeimpact 2.0.0) against a live server.

Its base URL is the only thing changed: every SDK method must work as it does
against the public service.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest
from makeimpact import Environment, OneClickImpact, OneClickImpactError

from tests.conftest import TestDatabase
from tests.live import LiveServer, create_account, server_env


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def live(request: pytest.FixtureRequest) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    database: TestDatabase = request.getfixturevalue(f"{request.param}_database")
    env = server_env(database.url)
    server = LiveServer(env, workers=2).start()
    try:
        yield server, env
    finally:
        server.stop()


def _sdk(server: LiveServer, key: str, environment: Environment) -> OneClickImpact:
    sdk = OneClickImpact(key, environment)
    sdk.base_url = server.url
    return sdk


def test_every_sdk_method(live: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = live
    account = create_account(env, "sdk@example.com")
    sdk = _sdk(server, account["production_key"], Environment.PRODUCTION)

    who = sdk.who_am_i()
    assert (who.user_id, who.email) == (account["user_id"], "sdk@example.com")

    tree = sdk.plant_tree(amount=5, category="food", metadata={"order_id": "ORD-1"})
    assert tree.tree_planted == 5 and tree.category == "food" and tree.customer is None
    ocean = sdk.clean_ocean(amount=12, customer_email="jane+vip@example.com", customer_name="Jane")
    assert ocean.waste_removed == 12
    assert ocean.customer is not None
    assert ocean.customer.customer_info.customer_email == "jane+vip@example.com"
    assert ocean.customer.customer_info.customer_name == "Jane"
    carbon = sdk.capture_carbon(amount=30, notify=False)
    assert carbon.carbon_captured == 30
    coral = sdk.restore_coral(amount=4, customer_email="jane+vip@example.com")
    assert coral.coral_restored == 4
    assert coral.customer is not None
    assert coral.customer.customer_id == ocean.customer.customer_id
    money = sdk.donate_money(amount=500)
    assert money.money_donated == 500 and money.category is None

    totals = sdk.get_impact()
    assert (totals.tree_planted, totals.waste_removed, totals.carbon_captured) == (5, 12, 30)
    assert (totals.coral_restored, totals.money_donated) == (4, 500)
    assert totals.customer_impact.waste_removed == 12
    assert totals.user_impact.waste_removed == 0

    daily = sdk.get_daily_impact()
    assert sum(d.tree_planted for d in daily.daily_impact) == 5
    day = daily.daily_impact[0].date
    assert sdk.get_daily_impact(start_date=day, end_date=day).daily_impact[0].money_donated == 500

    records = sdk.get_records(limit=2)
    assert len(records.user_records) == 2 and records.cursor
    rest = sdk.get_records(limit=2, cursor=records.cursor)
    # Direct impacts only: the tree, the carbon and the donation.
    assert [type(r).__name__ for r in records.user_records + rest.user_records] == [
        "TreePlantedRecord",
        "CarbonCapturedRecord",
        "MoneyDonatedRecord",
    ]
    assert rest.cursor is None
    assert records.user_records[0].metadata == {"order_id": "ORD-1"}
    only_trees = sdk.get_records(filter_by="tree_planted", sort_order="desc")
    assert [r.tree_planted for r in only_trees.user_records] == [5]  # type: ignore[union-attr]

    customer_records = sdk.get_customer_records(customer_email="jane+vip@example.com", limit=1)
    assert len(customer_records.customer_records) == 1 and customer_records.cursor
    assert customer_records.customer_records[0].customer.customer_id == ocean.customer.customer_id
    customers = sdk.get_customers(customer_email="jane+vip@example.com")
    assert [c.customer_name for c in customers.customers] == ["Jane"]

    track = sdk.track(user_id=tree.user_id, time_utc=tree.time_utc)
    assert track.tracking_id == f"{tree.user_id}-{tree.time_utc}"
    assert track.tree_planted == 5 and track.category == "food"
    assert track.certificate and track.certificate.startswith(server.url)

    cancelled = sdk.cancel_impact(user_id=money.user_id, time_utc=money.time_utc, reason="refund")
    assert cancelled.message == "impact cancelled" and cancelled.money_donated == 500
    again = sdk.cancel_impact(user_id=money.user_id, time_utc=money.time_utc)
    assert again.message == "impact was already cancelled"
    assert sdk.get_impact().money_donated == 0

    projects = sdk.get_projects(type="coral", locale="de")
    assert projects.projects and all(p.type == "coral" for p in projects.projects)
    project = sdk.get_project_by_id(projects.projects[0].project_id)
    assert project.sdgs and isinstance(project.latitude, float)

    sandbox = _sdk(server, account["sandbox_key"], Environment.SANDBOX)
    test_tree = sandbox.plant_tree(amount=1)
    test_track = sandbox.track(user_id=test_tree.user_id, time_utc=test_tree.time_utc)
    assert test_track.is_test_transaction is True and test_track.certificate is None
    assert sandbox.get_impact().tree_planted == 1


def test_sdk_errors_carry_type_and_message(live: tuple[LiveServer, dict[str, str]]) -> None:
    server, env = live
    unknown = _sdk(server, "oi_live_thiskeydoesnotexist", Environment.PRODUCTION)
    # The SDK re-wraps its own error (its generic except), keeping our message
    # but dropping the type: "1ClickImpact SDK Error: API Key does not exist".
    with pytest.raises(OneClickImpactError, match=r"API Key does not exist$"):
        unknown.who_am_i()

    account = create_account(env, "sdk-errors@example.com")
    sdk = _sdk(server, account["production_key"], Environment.PRODUCTION)
    with pytest.raises(OneClickImpactError, match="amount: Input should be greater than"):
        sdk.plant_tree(amount=0)
    with pytest.raises(OneClickImpactError, match="no impact with this user_id and time_utc"):
        sdk.track(user_id=account["user_id"], time_utc="2020-01-01T00:00:00.000Z")
    with pytest.raises(OneClickImpactError, match="no project with id nope"):
        sdk.get_project_by_id("nope")


def test_concurrent_posts_get_unique_times(live: tuple[LiveServer, dict[str, str]]) -> None:
    """Two workers, eight clients, one account: every time_utc is distinct."""
    server, env = live
    account = create_account(env, "burst@example.com")
    headers = {"x-api-key": account["production_key"]}
    results: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as http:
            for _ in range(25):
                response = http.post("/v1/plant_tree", json={"amount": 1})
                with lock:
                    if response.status_code == 200:
                        results.append(response.json()["time_utc"])
                    else:
                        errors.append(response.text)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(results) == 200
    assert len(set(results)) == 200
    totals = httpx.get(f"{server.url}/v1/impact", headers=headers).json()
    assert totals["tree_planted"] == 200
