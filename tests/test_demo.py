"""``serve --demo``: ninety days of a shop's history, written through the real
write path, read back the way a client reads it.

The demo is only created into an empty store, so this module builds one store
per backend, creates the demo once, and lets every test read it through the
usual ``settings`` and ``client`` fixtures (conftest.py).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openimpact.config import Settings, driver_url
from openimpact.db import Database
from openimpact.demo import create_demo
from openimpact.impacts.models import Impact
from openimpact.lifecycle.models import ImpactTransition
from openimpact.migrate import prepare_database
from openimpact.timeutil import MS_PER_DAY, ms_to_datetime, now_ms, parse_iso_ms
from openimpact.worker import advance_sandbox
from tests.conftest import (
    BACKENDS,
    TestDatabase,
    _create_postgres_database,
    _drop_postgres_database,
)

TYPES = ("tree_planted", "waste_removed", "carbon_captured", "coral_restored", "money_donated")
HOUR = 3_600_000
SANDBOX_STAGES = ("donation_available", "donation_sent", "impact_completed")
# The track fields that say something happened: none may lie in the future.
# (live_session_date may: it is a session the partner has scheduled.)
HAPPENED = ("impact_initiated", *SANDBOX_STAGES, "cancelled_on")
_VIDEO = re.compile(r"^https://(www\.youtube\.com/watch\?v=[A-Za-z0-9_-]{11}|vimeo\.com/\d{6,12})$")


@dataclass
class DemoStore:
    database: TestDatabase
    created: dict[str, Any]


@pytest.fixture(scope="module", params=BACKENDS)
def demo_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoStore]:
    def create(database: TestDatabase) -> DemoStore:
        db = Database(database.settings().sqlalchemy_url, pool_size=1)
        try:
            created = create_demo(db)
        finally:
            db.dispose()
        assert created is not None
        return DemoStore(database, created)

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'openimpact.db'}"
        prepare_database(url)
        yield create(TestDatabase("sqlite", url))
        return
    server = request.getfixturevalue("postgres_server")
    name, url = _create_postgres_database(server)
    try:
        prepare_database(driver_url(url))
        yield create(TestDatabase("postgresql", url))
    finally:
        _drop_postgres_database(server, name)


@pytest.fixture
def database(demo_store: DemoStore) -> TestDatabase:
    return demo_store.database


@pytest.fixture
def demo(demo_store: DemoStore) -> dict[str, Any]:
    return demo_store.created


def walk(client: TestClient, key: str, path: str, field: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        response = client.get(path, params=params, headers={"x-api-key": key})
        assert response.status_code == 200, response.text
        body = response.json()
        rows.extend(body[field])
        if "cursor" not in body:
            return rows
        params["cursor"] = body["cursor"]


def records(client: TestClient, key: str) -> list[dict[str, Any]]:
    """Every impact of the environment, oldest first."""
    found = walk(client, key, "/v1/records", "user_records")
    found += walk(client, key, "/v1/customer_records", "customer_records")
    return sorted(found, key=lambda r: r["time_utc"])


def impact_type(record: dict[str, Any]) -> str:
    (found,) = [t for t in TYPES if t in record]
    return found


def track(client: TestClient, key: str, record: dict[str, Any]) -> dict[str, Any]:
    response = client.get(
        "/v1/track",
        params={"user_id": record["user_id"], "time_utc": record["time_utc"]},
        headers={"x-api-key": key},
    )
    assert response.status_code == 200, response.text
    return response.json()


def ms(view: dict[str, Any], field: str) -> int:
    found = parse_iso_ms(view[field])
    assert found is not None
    return found


def records_with_times(client: TestClient, key: str) -> list[tuple[int, dict[str, Any]]]:
    return [(ms(r, "time_utc"), r) for r in records(client, key)]


def test_only_into_an_empty_store(client: TestClient) -> None:
    assert create_demo(client.app.state.db) is None  # type: ignore[attr-defined]


class TestTotalsEqualTheRecords:
    @pytest.mark.parametrize("env", ["production", "sandbox"])
    def test_totals_and_daily_series(
        self, client: TestClient, demo: dict[str, Any], env: str
    ) -> None:
        key = demo[f"{env}_key"]
        expected = {who: Counter[str]() for who in ("user_impact", "customer_impact")}
        by_day: dict[str, Counter[str]] = {}
        for record in records(client, key):
            if "cancelled_on" in record:
                continue
            kind = impact_type(record)
            who = "customer_impact" if "customer" in record else "user_impact"
            expected[who][kind] += record[kind]
            by_day.setdefault(record["time_utc"][:10], Counter())[kind] += record[kind]

        totals = client.get("/v1/impact", headers={"x-api-key": key}).json()
        for who, amounts in expected.items():
            assert totals[who] == {kind: amounts[kind] for kind in TYPES}
        daily = client.get("/v1/impact/daily", headers={"x-api-key": key}).json()["daily_impact"]
        assert {row["date"]: {k: row[k] for k in TYPES} for row in daily} == {
            day: {k: amounts[k] for k in TYPES} for day, amounts in by_day.items()
        }


class TestActivity:
    def test_production_spans_the_last_ninety_days(
        self, client: TestClient, demo: dict[str, Any]
    ) -> None:
        now = now_ms()
        found = records(client, demo["production_key"])
        today = ms_to_datetime(now).date()
        first_day = today - timedelta(days=89)
        days = {record["time_utc"][:10] for record in found}
        assert min(days) >= first_day.isoformat()
        assert sum(1 for day in days if day <= today.isoformat()) >= 80
        assert all(ms(r, "time_utc") <= now for r in found)
        assert 300 <= len(found) <= 1100

        assert set(Counter(impact_type(r) for r in found)) == set(TYPES)
        on_behalf = [r for r in found if "customer" in r]
        assert 0.35 <= len(on_behalf) / len(found) <= 0.65
        per_customer = Counter(r["customer"]["customer_email"] for r in on_behalf)
        assert 30 <= len(per_customer) <= 50
        assert per_customer.most_common(1)[0][1] >= 15  # a few regulars
        assert all(email.endswith(("@example.com", "@example.org")) for email in per_customer)
        assert all(" " in r["customer"]["customer_name"] for r in on_behalf)
        assert any(r.get("category") == "food" for r in found)
        assert any(r.get("metadata", {}).get("order_id", "").startswith("ORD-") for r in found)
        assert any("money_donated" in r and "category" in r for r in found)

        customers = walk(client, demo["production_key"], "/v1/customers", "customers")
        assert len(customers) == len(per_customer)
        assert all(first_day.isoformat() <= c["onboarded_on"] for c in customers)
        assert all(ms(c, "onboarded_on") <= now for c in customers)

    def test_sandbox_is_test_data_of_the_last_month(
        self, client: TestClient, demo: dict[str, Any]
    ) -> None:
        found = records(client, demo["sandbox_key"])
        today = ms_to_datetime(now_ms()).date()
        assert 20 <= len(found) <= 120
        assert min(r["time_utc"][:10] for r in found) >= (today - timedelta(days=29)).isoformat()
        assert track(client, demo["sandbox_key"], found[0])["is_test_transaction"] is True


class TestLifecycle:
    def test_stages_follow_each_other_days_apart(
        self, client: TestClient, demo: dict[str, Any]
    ) -> None:
        key = demo["production_key"]
        now = now_ms()
        found = records(client, key)
        # Every fifth impact, and every food tree and refund: those carry the
        # dates this test is about.
        sample = [
            r
            for i, r in enumerate(found)
            if i % 5 == 0 or r.get("category") == "food" or "cancelled_on" in r
        ]
        reached: Counter[str] = Counter()
        for record in sample:
            view = track(client, key, record)
            initiated = ms(view, "impact_initiated")
            assert all(ms(view, f) <= now for f in HAPPENED if f in view), view
            age_days = (now - initiated) / MS_PER_DAY

            if "cancelled_on" in view:
                reached["cancelled"] += 1
                assert 2 * HOUR <= ms(view, "cancelled_on") - initiated <= 48 * HOUR
                assert view["cancellation_reason"]
                assert "donation_sent" not in view
                continue
            if "donation_available" not in view:
                reached["initiated"] += 1
                assert age_days < 8, view
                continue
            assert ms(view, "donation_available") - initiated >= MS_PER_DAY
            if "donation_sent" not in view:
                reached["donation_received"] += 1
                continue
            assert ms(view, "donation_sent") - ms(view, "donation_available") >= 3 * MS_PER_DAY
            assert view["project_id"] and view["assigned_agent"]
            if "impact_completed" not in view:
                reached["transferred"] += 1
                assert age_days < 60, view  # older ones have all been completed
                continue
            reached["completed"] += 1
            completed = ms(view, "impact_completed")
            assert completed - ms(view, "donation_sent") >= 10 * MS_PER_DAY
            assert view["certificate"].endswith(f"/certificate/{view['tracking_id']}")
            if "impact_video" in view:
                reached["video"] += 1
                assert _VIDEO.match(view["impact_video"]), view["impact_video"]
            if view.get("category") == "food":
                # The partner's weekly live planting session, the Saturday after.
                live = ms(view, "live_session_date")
                assert 0 < live - completed <= 7 * MS_PER_DAY
                at = ms_to_datetime(live)
                assert (at.weekday(), at.hour, at.minute) == (5, 13, 0)
                reached["live_session"] += 1
        assert set(reached) == {
            "initiated",
            "donation_received",
            "transferred",
            "completed",
            "cancelled",
            "video",
            "live_session",
        }, reached
        assert reached["completed"] > reached["transferred"] > 0

    def test_recent_impacts_are_still_open(self, client: TestClient, demo: dict[str, Any]) -> None:
        key = demo["production_key"]
        now = now_ms()
        recent = [r for at, r in records_with_times(client, key) if now - at < MS_PER_DAY]
        assert recent
        for record in recent:
            assert "donation_available" not in track(client, key, record)

    def test_certificates_are_final_or_void(self, client: TestClient, demo: dict[str, Any]) -> None:
        db = client.app.state.db  # type: ignore[attr-defined]

        def certificates(session: Any) -> dict[str, list[str]]:
            found: dict[str, list[str]] = {"completed": [], "void": []}
            for certificate_id, stage, cancelled in session.execute(
                select(Impact.certificate_id, Impact.stage, Impact.cancelled_ms)
                .where(Impact.env == "production")
                .order_by(Impact.id)
            ):
                if cancelled is not None:
                    found["void"].append(certificate_id)
                elif stage == "completed":
                    found["completed"].append(certificate_id)
            return found

        found = db.run_sync(certificates)
        for status, ids in found.items():
            assert ids
            for certificate_id in ids[:3]:
                body = client.get(f"/v1/certificates/{certificate_id}").json()
                assert body["status"] == status, body
        showcase = client.get(f"/certificate/{demo['completed_tracking_id']}")
        assert showcase.status_code == 200

    def test_production_moved_only_by_the_demo_operator(
        self, client: TestClient, demo: dict[str, Any]
    ) -> None:
        db = client.app.state.db  # type: ignore[attr-defined]
        actors = db.run_sync(
            lambda s: set(
                s.scalars(
                    select(ImpactTransition.actor)
                    .join(Impact, Impact.id == ImpactTransition.impact_id)
                    .where(Impact.env == "production")
                )
            )
        )
        assert actors == {"demo"}


class TestSandboxSchedule:
    def test_first_worker_pass_completes_the_past(
        self, client: TestClient, settings: Settings, demo: dict[str, Any]
    ) -> None:
        db = client.app.state.db  # type: ignore[attr-defined]
        advance_sandbox(db, settings)
        step_ms = settings.sandbox_stage_seconds * 1000
        now = now_ms()
        key = demo["sandbox_key"]
        cancelled = 0
        for record in records(client, key):
            view = track(client, key, record)
            initiated = ms(view, "impact_initiated")
            if "cancelled_on" in view:
                cancelled += 1
                assert 0 < ms(view, "cancelled_on") - initiated < step_ms
                assert "donation_available" not in view
                continue
            assert "certificate" not in view
            # The stages are the schedule's times, not the worker's.
            for number, field in enumerate(SANDBOX_STAGES, start=1):
                if now - initiated >= number * step_ms:
                    assert ms(view, field) == initiated + number * step_ms, view
        assert cancelled > 0


def test_schedules_plan_and_budget_are_ready(client: TestClient, demo: dict[str, Any]) -> None:
    """Two schedules from this month on, the Growth plan, prices and a budget:
    the worker's first pass creates what is due, once."""
    from openimpact.worker import grant_bonuses, run_schedules

    key = demo["production_key"]
    listed = client.get("/v1/schedules", headers={"x-api-key": key}).json()["schedules"]
    assert [s["impact_type"] for s in listed] == ["tree_planted", "money_donated"]
    budget = client.get("/v1/budget", headers={"x-api-key": key}).json()
    assert budget["monthly_cents"] == 75_000 and budget["spent_cents"] >= 0
    db = client.app.state.db  # type: ignore[attr-defined]
    settings = client.app.state.settings  # type: ignore[attr-defined]
    before = len(records(client, key))
    made = run_schedules(db, settings) + grant_bonuses(db, settings)
    assert made >= 2  # at least this month's bonuses
    assert run_schedules(db, settings) + grant_bonuses(db, settings) == 0
    after = records(client, key)
    assert len(after) == before + made
    bonus = [r for r in after if track(client, key, r).get("is_bonus_impact")]
    assert len(bonus) == 2
