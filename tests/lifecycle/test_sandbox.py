"""The sandbox simulation: a deterministic, compressed schedule, seen by track
and cancel even when no worker runs, and safe with many workers."""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

from openimpact.config import Settings
from openimpact.lifecycle import sandbox
from openimpact.timeutil import ms_to_iso, now_ms, parse_iso_ms
from openimpact.worker import advance_sandbox
from tests.factories import Api
from tests.lifecycle.conftest import impact_row, set_impact, transitions

STEP_MS = 120_000  # the default OPENIMPACT_SANDBOX_STAGE_SECONDS


def _age(api: Api, account: Any, created: dict[str, Any], ms: int, env: str = "sandbox") -> int:
    """Move an impact ``ms`` into the past; returns its new time."""
    row = impact_row(api.db, account.user_id, created["time_utc"], env)
    new_time = now_ms() - ms
    set_impact(api.db, row.id, time_ms=new_time)
    created["time_utc"] = ms_to_iso(new_time)
    return row.id


def _track(api: Api, account: Any, created: dict[str, Any], env: str = "sandbox") -> dict:
    response = api.as_(account, env).get(
        "/v1/track", user_id=account.user_id, time_utc=created["time_utc"]
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestSchedule:
    def test_track_follows_the_schedule_without_a_worker(self, api: Api) -> None:
        account = api.account()
        created = api.as_(account, "sandbox").plant(4)
        fresh = _track(api, account, created)
        assert fresh["is_test_transaction"] is True
        assert "donation_available" not in fresh and "certificate" not in fresh

        impact_id = _age(api, account, created, 2 * STEP_MS + 5_000)
        start = parse_iso_ms(created["time_utc"])
        track = _track(api, account, created)
        assert track["donation_available"] == ms_to_iso(start + STEP_MS)
        assert track["donation_sent"] == ms_to_iso(start + 2 * STEP_MS)
        assert track["project_id"] == "mangroves-menabe-madagascar"
        assert track["location_map"].startswith("https://maps.google.com/maps?q=")
        assert "impact_completed" not in track and "certificate" not in track
        log = transitions(api.db, impact_id)
        assert [(t.to_stage, t.at_ms, t.actor) for t in log] == [
            ("donation_received", start + STEP_MS, "sandbox"),
            ("transferred", start + 2 * STEP_MS, "sandbox"),
        ]
        # Asking again changes nothing: the schedule is materialized once.
        assert _track(api, account, created) == track
        assert len(transitions(api.db, impact_id)) == 2

    def test_a_food_tree_completes_with_a_live_session(self, api: Api) -> None:
        account = api.account()
        created = api.as_(account, "sandbox").plant(2, category="food")
        _age(api, account, created, 3 * STEP_MS)
        track = _track(api, account, created)
        start = parse_iso_ms(created["time_utc"])
        assert track["impact_completed"] == ms_to_iso(start + 3 * STEP_MS)
        assert track["project_id"] == "food-trees-rwenzori-uganda"
        live = datetime.fromisoformat(track["live_session_date"].replace("Z", "+00:00"))
        assert (live.weekday(), live.hour) == (5, 13)
        assert "certificate" not in track

    def test_the_schedule_is_configurable(self, api: Api, database: Any) -> None:
        account = api.account()
        created = api.as_(account, "sandbox").impact("restore_coral", 3)
        row = impact_row(api.db, account.user_id, created["time_utc"], "sandbox")
        seconds = 7

        def at(offset_ms: int) -> int:
            return api.db.run_sync(
                lambda s: sandbox.advance_due(
                    s, row.time_ms + offset_ms, seconds, impact_ids=[row.id]
                ),
                write=True,
            )

        assert at(6_999) == 0
        assert at(7_000) == 1
        assert at(20_999) == 1  # 14 s: transferred; completion is due at 21 s
        assert impact_row(api.db, account.user_id, created["time_utc"], "sandbox").stage == (
            "transferred"
        )
        assert at(21_000) == 1
        assert at(10**9) == 0  # completed: the end
        done = impact_row(api.db, account.user_id, created["time_utc"], "sandbox")
        assert (done.donation_available_ms, done.donation_sent_ms, done.completed_ms) == (
            row.time_ms + 7_000,
            row.time_ms + 14_000,
            row.time_ms + 21_000,
        )

    def test_production_impacts_are_not_simulated(self, api: Api) -> None:
        account = api.account()
        created = api.as_(account).plant(1)
        _age(api, account, created, 10 * STEP_MS, env="production")
        track = _track(api, account, created, env="production")
        assert "donation_available" not in track


class TestCancel:
    def test_cancel_sees_the_schedule(self, api: Api) -> None:
        account = api.account()
        caller = api.as_(account, "sandbox")
        early, late = caller.plant(1), caller.plant(2)
        _age(api, account, early, STEP_MS + 1_000)  # Donation Received: still cancellable
        _age(api, account, late, 2 * STEP_MS + 1_000)  # Transferred: no longer

        def cancel(created: dict[str, Any]) -> Any:
            body = {"user_id": account.user_id, "time_utc": created["time_utc"]}
            return caller.post("/v1/cancel_impact", body)

        refused = cancel(late)
        assert refused.status_code == 400
        assert "transferred to the partner" in refused.json()["message"]
        assert cancel(early).status_code == 200
        # A cancelled sandbox impact stays where it was, whatever the clock says.
        row = impact_row(api.db, account.user_id, early["time_utc"], "sandbox")
        set_impact(api.db, row.id, time_ms=row.time_ms - 10 * STEP_MS)
        early["time_utc"] = ms_to_iso(row.time_ms - 10 * STEP_MS)
        track = _track(api, account, early)
        assert "donation_sent" not in track and "cancelled_on" in track


class TestWorker:
    def test_worker_passes_are_safe_together(self, api: Api, database: Any) -> None:
        account = api.account()
        caller = api.as_(account, "sandbox")
        ids = []
        for amount in range(1, 13):
            created = caller.plant(amount)
            ids.append(_age(api, account, created, 4 * STEP_MS))
        settings: Settings = database.settings(sandbox_stage_seconds=120)
        results: list[int] = []
        barrier = threading.Barrier(3)

        def work() -> None:
            barrier.wait()
            results.append(advance_sandbox(api.db, settings))

        threads = [threading.Thread(target=work) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(results) >= 36  # other tests' old sandbox impacts may move too
        for impact_id in ids:
            log = transitions(api.db, impact_id)
            assert [t.to_stage for t in log] == ["donation_received", "transferred", "completed"]
            assert all(t.actor == "sandbox" for t in log)
