"""The worker's pass: each due period's impact exactly once, whatever the
number of workers; catch-up after downtime, bounded; pause, resume and end
dates; scheduled impacts as ordinary impacts that say where they came from."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from typing import Any

from sqlalchemy import func, select

from openimpact.accounts.models import Account
from openimpact.db import Database
from openimpact.outbox.models import OutboxMessage
from openimpact.schedules import service
from openimpact.schedules.models import Schedule, SchedulePeriod
from openimpact.worker import run_once
from tests.factories import Api, Caller

TREES = {"impact_type": "tree_planted", "amount": 100, "day_of_month": 1, "starts_on": "2026-01-01"}


def _create(me: Caller, *, created_on: str | None = None, **fields: Any) -> dict[str, Any]:
    """A schedule made through the API; ``created_on`` moves it back to that
    day, as if it had been made then (its start is then the first period it
    may create, as for a schedule made on its start day)."""
    response = me.post("/v1/schedules", {**TREES, **fields})
    assert response.status_code == 200, response.text
    made = response.json()
    day = created_on or made["starts_on"]
    if day < service.today().isoformat():
        db = me.client.app.state.db  # type: ignore[attr-defined]

        def backdate(session: Any) -> None:
            schedule = session.scalar(select(Schedule).where(Schedule.schedule_id == made["id"]))
            schedule.not_before = max(schedule.starts_on, day)

        db.run_sync(backdate, write=True)
    return made


def test_a_schedule_starts_with_the_first_period_due_after_it_is_made(api: Api) -> None:
    """Made today with a start months back, it creates nothing for the past."""
    me = api.as_(api.account())
    response = me.post("/v1/schedules", {**TREES, "starts_on": "2025-01-01"})
    made = response.json()
    today = service.today()
    assert made["next_run_on"] >= today.isoformat()
    assert _run(me, today - timedelta(days=1)).created == 0
    report = _run(me, today)
    assert report.created == (1 if today.day == 1 else 0)
    if report.created:
        # Created: the next run is next month's.
        assert me.get(f"/v1/schedules/{made['id']}").json()["next_run_on"] > today.isoformat()


def _records(me: Caller) -> list[dict[str, Any]]:
    return me.walk("/v1/records", "user_records") + me.walk(
        "/v1/customer_records", "customer_records"
    )


def _track(me: Caller, record: dict[str, Any]) -> dict[str, Any]:
    user_id = me.account.user_id
    return me.get("/v1/track", user_id=user_id, time_utc=record["time_utc"]).json()


def _run(me: Caller, as_of: str | date) -> service.PassReport:
    """The worker's pass for ``as_of``, over this account's schedules (the
    test database holds other tests' schedules too)."""
    db = me.client.app.state.db  # type: ignore[attr-defined]
    account_id = db.run_sync(
        lambda s: s.scalar(select(Account.id).where(Account.user_id == me.account.user_id))
    )
    day = date.fromisoformat(as_of) if isinstance(as_of, str) else as_of
    return service.run_due(db, day, account_id=account_id)


def test_due_periods_are_created_once_and_say_where_they_came_from(api: Api) -> None:
    me = api.as_(api.account())
    made = _create(me)
    assert _run(me, "2026-03-15") == service.PassReport(created=3, refused=0)
    assert _run(me, "2026-03-15") == service.PassReport(created=0, refused=0)
    records = me.walk("/v1/records", "user_records")
    assert len(records) == 3
    tracks = sorted((_track(me, r) for r in records), key=lambda t: t["period"])
    assert [t["period"] for t in tracks] == ["2026-01", "2026-02", "2026-03"]
    assert all(t["schedule_id"] == made["id"] and t["tree_planted"] == 100 for t in tracks)
    # Late periods are created now: time_utc stays unique and increasing.
    times = [t["impact_initiated"] for t in tracks]
    assert times == sorted(times) and len(set(times)) == 3
    assert me.get("/v1/impact").json()["tree_planted"] == 300
    assert _run(me, "2026-04-01").created == 1


def test_many_workers_racing_create_each_period_once(api: Api) -> None:
    shops = [api.as_(api.account()) for _ in range(3)]
    for me in shops:
        _create(me)
        _create(me, impact_type="waste_removed", amount=5, day_of_month=10)
    reports: list[service.PassReport] = []
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def worker() -> None:
        db = Database(api.db.url)  # a process of its own would have its own pool
        try:
            start.wait()
            reports.append(service.run_due(db, date(2026, 2, 20)))  # every account
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    # Per shop: trees for 2026-01 and 2026-02, waste for 2026-01 and 2026-02
    # (the passes also ran other tests' schedules: counts are per shop).
    assert sum(r.created for r in reports) >= 3 * 4
    for me in shops:
        totals = me.get("/v1/impact").json()
        assert totals["tree_planted"] == 200 and totals["waste_removed"] == 10
        periods = sorted(_track(me, r)["period"] for r in me.walk("/v1/records", "user_records"))
        assert periods == ["2026-01", "2026-01", "2026-02", "2026-02"]


def test_catch_up_is_bounded(api: Api) -> None:
    me = api.as_(api.account())
    _create(me, starts_on="2025-01-01")
    report = _run(me, "2026-06-15")
    # CATCH_UP_DAYS (92) back from 2026-06-15 is 2026-03-15: April, May, June.
    assert report.created == 3
    periods = sorted(_track(me, r)["period"] for r in me.walk("/v1/records", "user_records"))
    assert periods == ["2026-04", "2026-05", "2026-06"]


def test_end_date(api: Api) -> None:
    me = api.as_(api.account())
    made = _create(me, ends_on="2026-02-15")
    assert _run(me, "2026-03-15").created == 2
    assert "next_run_on" not in me.get(f"/v1/schedules/{made['id']}").json()


def test_paused_months_are_skipped_after_resume(api: Api) -> None:
    me = api.as_(api.account())
    made = _create(me, day_of_month=28)
    path = f"/v1/schedules/{made['id']}"
    me.client.patch(path, json={"status": "paused"}, headers=me.headers())
    assert _run(me, "2026-03-01").created == 0
    me.client.patch(path, json={"status": "active"}, headers=me.headers())
    today = service.today()
    as_of = today + timedelta(days=62)
    expected = sum(1 for n in range(63) if (today + timedelta(days=n)).day == 28)
    assert _run(me, as_of).created == expected
    # Nothing from before the resume, however far back the window reaches.
    for record in me.walk("/v1/records", "user_records"):
        assert _track(me, record)["period"] >= today.isoformat()[:7]


def test_deleted_schedules_stop(api: Api) -> None:
    me = api.as_(api.account())
    made = _create(me)
    me.client.delete(f"/v1/schedules/{made['id']}", headers=me.headers())
    assert _run(me, "2026-03-15").created == 0


def test_a_refused_period_is_kept_with_its_reason_and_not_retried(api: Api) -> None:
    keys = api.account(causes=["oceans", "schools"])
    me = api.as_(keys)
    _create(me, impact_type="money_donated", amount=500, category="schools")

    def drop_cause(session: Any) -> None:
        account = session.scalar(select(Account).where(Account.user_id == keys.user_id))
        account.causes = ["oceans"]

    api.db.run_sync(drop_cause, write=True)
    assert _run(me, "2026-01-20") == service.PassReport(created=0, refused=1)
    assert _run(me, "2026-01-20") == service.PassReport(created=0, refused=0)
    reasons = api.db.run_sync(lambda s: list(s.scalars(select(SchedulePeriod.refused))))
    assert any(r and "schools" in r for r in reasons)
    assert me.get("/v1/impact").json()["money_donated"] == 0


def test_on_behalf_of_a_customer_with_the_usual_email(api: Api) -> None:
    me = api.as_(api.account())
    _create(me, customer_email="Ana@Example.com", customer_name="Ana", metadata={"plan": "m"})
    assert _run(me, "2026-02-02").created == 2
    records = me.walk("/v1/customer_records", "customer_records")
    assert len(records) == 2
    assert {r["customer"]["customer_email"] for r in records} == {"Ana@Example.com"}
    assert all(r["metadata"] == {"plan": "m"} for r in records)
    customers = me.get("/v1/customers").json()["customers"]
    assert len(customers) == 1
    queued = api.db.run_sync(
        lambda s: s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.payload["template"].as_string() == "impact_created")
        )
    )
    assert queued >= 2


def test_the_worker_pass_runs_schedules(api: Api) -> None:
    me = api.as_(api.account())
    today = service.today()
    _create(me, day_of_month=min(today.day, 28), starts_on=today.replace(day=1).isoformat())
    report = run_once(api.db, api.client.app.state.settings)  # type: ignore[attr-defined]
    assert report["scheduled_impacts"] >= 1
    assert len(me.walk("/v1/records", "user_records")) == 1
