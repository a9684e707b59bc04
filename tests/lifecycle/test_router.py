"""The lifecycle through the operator API: stages, rules, selections, dry runs."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient

from openimpact.timeutil import datetime_to_ms, ms_to_iso, parse_iso_ms
from tests.factories import Api
from tests.lifecycle.conftest import (
    OPERATOR_TOKEN,
    Operator,
    impact_row,
    set_impact,
    tracking_id,
    transitions,
)


def _track(api: Api, account: Any, created: dict[str, Any], env: str = "production") -> dict:
    response = api.as_(account, env).get(
        "/v1/track", user_id=account.user_id, time_utc=created["time_utc"]
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestOperatorAuth:
    def test_needs_the_operator_token(self, client: TestClient, api: Api) -> None:
        account = api.account()
        path = "/admin/v1/lifecycle/status"
        assert client.get(path).status_code == 401
        wrong = client.get(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401
        assert wrong.json()["type"] == "key_error"
        # An account key is never an operator token, however it is presented.
        for key in (account.production_key, account.sandbox_key):
            assert client.get(path, headers={"Authorization": f"Bearer {key}"}).status_code == 401
            assert client.get(path, headers={"x-api-key": key}).status_code == 401
        ok = client.get(path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        assert ok.status_code == 200

    def test_operator_token_is_not_an_account_key(self, client: TestClient) -> None:
        for path in ("/v1/whoami", "/v1/impact"):
            response = client.get(path, headers={"x-api-key": OPERATOR_TOKEN})
            assert response.status_code == 401
            assert response.json() == {"type": "key_error", "message": "API Key does not exist"}

    def test_disabled_without_a_configured_token(self, database: Any) -> None:
        from openimpact.app import create_app

        with TestClient(create_app(database.settings())) as plain:
            response = plain.post(
                "/admin/v1/lifecycle/receive",
                json={"selection": {"all": True}},
                headers={"Authorization": "Bearer anything"},
            )
        assert response.status_code == 403
        assert "OPENIMPACT_ADMIN_TOKEN" in response.json()["message"]


class TestFullLifecycle:
    def test_each_stage_adds_its_track_fields(self, api: Api, operator: Operator) -> None:
        account = api.account(name="Acme")
        caller = api.as_(account)
        created = caller.plant(10, category="food")
        selection = {"tracking_ids": [tracking_id(account.user_id, created)]}

        track = _track(api, account, created)
        lifecycle_fields = {
            "donation_available",
            "donation_sent",
            "assigned_agent",
            "project_location",
            "location_map",
            "project_id",
            "impact_completed",
            "live_session_date",
            "impact_video",
        }
        assert not lifecycle_fields & track.keys()
        assert track["certificate"].endswith(f"/certificate/{track['tracking_id']}")
        assert "is_test_transaction" not in track

        report = operator.ok("receive", selection)
        assert (report["changed"], report["matched"]) == (1, 1)
        track = _track(api, account, created)
        assert "donation_available" in track
        assert not (lifecycle_fields - {"donation_available"}) & track.keys()

        report = operator.ok("transfer", selection)
        assert report["by_project"] == {"food-trees-rwenzori-uganda": 1}
        track = _track(api, account, created)
        assert track["project_id"] == "food-trees-rwenzori-uganda"
        assert track["assigned_agent"] == "Rwenzori Smallholder Agroforestry Cooperative"
        assert track["project_location"] == (
            "Kasese District, Uganda with Rwenzori Smallholder Agroforestry Cooperative."
        )
        assert track["location_map"] == (
            "https://maps.google.com/maps?q=0.2975,30.093&z=10&output=embed"
        )
        assert not {"impact_completed", "live_session_date", "impact_video"} & track.keys()

        video = "https://videos.example.org/session-42"
        operator.ok("complete", selection, impact_video=video, notes="42 seedlings, all alive")
        track = _track(api, account, created)
        assert track["impact_video"] == video
        times = [
            track[k]
            for k in ("impact_initiated", "donation_available", "donation_sent", "impact_completed")
        ]
        assert times == sorted(times)
        # Food trees get a live planting session: the next Saturday, 13:00 UTC.
        live = datetime.fromisoformat(track["live_session_date"].replace("Z", "+00:00"))
        assert (live.weekday(), live.hour, live.minute) == (5, 13, 0)
        assert 0 < datetime_to_ms(live) - parse_iso_ms(track["impact_completed"]) <= 7 * 86_400_000

        history = operator.get(f"/admin/v1/impacts/{track['tracking_id']}/transitions").json()
        assert [(t["from_stage"], t["to_stage"]) for t in history["transitions"]] == [
            ("initiated", "donation_received"),
            ("donation_received", "transferred"),
            ("transferred", "completed"),
        ]
        assert {t["actor"] for t in history["transitions"]} == {"admin-api"}
        assert history["stage"] == "completed"
        assert history["completion_notes"] == "42 seedlings, all alive"
        assert [t["at"] for t in history["transitions"]] == times[1:]

    def test_donations_go_to_their_cause(self, api: Api, operator: Operator) -> None:
        account = api.account(causes=["trees", "veterans"])
        caller = api.as_(account)
        to_veterans = caller.impact("donate_money", 500, category="veterans")
        by_default = caller.impact("donate_money", 700)
        ocean = caller.impact("clean_ocean", 3)
        selection = {"user_id": account.user_id}
        operator.ok("receive", selection)
        report = operator.ok("transfer", selection)
        assert report["by_type"] == {"money_donated": 2, "waste_removed": 1}
        assert _track(api, account, to_veterans)["project_id"] == (
            "veteran-reforestation-sierra-nevada-usa"
        )
        assert _track(api, account, by_default)["project_id"] == (
            "atlantic-forest-ribeira-valley-brazil"
        )
        ocean_track = _track(api, account, ocean)
        assert ocean_track["project_id"] == "coastal-plastic-collection-bali-indonesia"
        operator.ok("complete", selection)
        # Only food-tree projects hold live sessions.
        assert "live_session_date" not in _track(api, account, ocean)


class TestRules:
    def test_forward_only_one_stage_at_a_time(self, api: Api, operator: Operator) -> None:
        account = api.account()
        created = api.as_(account).plant(1)
        selection = {"user_id": account.user_id}
        for action, stage in (("transfer", "initiated"), ("complete", "initiated")):
            report = operator.ok(action, selection)
            assert report["changed"] == 0
            assert report["skipped"] == {stage: 1}
        operator.ok("receive", selection)
        again = operator.ok("receive", selection)
        assert (again["changed"], again["skipped"]) == (0, {"donation_received": 1})
        assert operator.ok("complete", selection)["changed"] == 0
        impact = impact_row(api.db, account.user_id, created["time_utc"])
        assert impact.stage == "donation_received"
        assert len(transitions(api.db, impact.id)) == 1

    def test_stage_filter_must_match_the_action(self, api: Api, operator: Operator) -> None:
        account = api.account()
        response = operator.run("transfer", {"user_id": account.user_id, "stage": "initiated"})
        assert response.status_code == 400
        assert response.json()["message"].startswith("selection.stage:")
        response = operator.run("receive", {"project_id": "food-trees-rwenzori-uganda"})
        assert response.status_code == 400
        assert "selection.project_id" in response.json()["message"]

    def test_bad_selections_are_refused(self, api: Api, operator: Operator) -> None:
        cases = [
            ({}, "selection"),
            ({"user_id": "U0"}, "selection.user_id"),
            ({"tracking_ids": ["not-a-tracking-id"]}, "selection.tracking_ids"),
            ({"start_date": "2024-13-01"}, "selection.start_date"),
            ({"start_date": "2024-02-02", "end_date": "2024-02-01"}, "selection.start_date"),
            ({"impact_type": "trees"}, "selection.impact_type"),
            ({"env": "staging"}, "selection.env"),
            ({"all": True, "surprise": 1}, "selection.surprise"),
            ({"tracking_ids": []}, "selection.tracking_ids"),
            ({"tracking_ids": [" U1-2024-09-16T20:34:04.429Z"]}, "selection.tracking_ids.0"),
            ({"tracking_ids": ["U1-2024-09-16T20:34:04Z"]}, "selection.tracking_ids.0"),
            ({"user_id": ""}, "selection.user_id"),
            # Only complete selects by project, and not even a null one elsewhere.
            ({"all": True, "project_id": None}, "selection.project_id"),
        ]
        for selection, field in cases:
            response = operator.run("receive", selection)
            assert response.status_code == 400, (selection, response.text)
            assert response.json()["type"] == "validation_error"
            assert response.json()["message"].startswith(field), response.json()
        bad_video = operator.run("complete", {"all": True}, impact_video="javascript:alert(1)")
        assert bad_video.status_code == 400
        assert "impact_video" in bad_video.json()["message"]
        for video in (" https://example.com/v", "https://exa mple.com/", "HTTPS://example.com"):
            bad_video = operator.run("complete", {"all": True}, impact_video=video)
            assert bad_video.status_code == 400, video
            assert bad_video.json()["message"].startswith("impact_video:")
        for when in ("next week", "2025-02-30T13:00:00Z", "1999-12-31T13:00:00Z", "2025-04-16"):
            bad_time = operator.run("complete", {"all": True}, live_session_date=when)
            assert bad_time.status_code == 400, when
            assert bad_time.json()["message"].startswith("live_session_date:")
        too_big = operator.run("receive", {"all": True}, chunk_size=0)
        assert too_big.status_code == 400
        assert "chunk_size" in too_big.json()["message"]

    def test_timestamps_never_go_back(self, api: Api, operator: Operator) -> None:
        account = api.account()
        created = api.as_(account).plant(1)
        impact = impact_row(api.db, account.user_id, created["time_utc"])
        selection = {"user_id": account.user_id}
        operator.ok("receive", selection)
        # The funds were recorded as received in the future (another clock):
        # the next stage may not be dated before it.
        future = impact.time_ms + 3_600_000
        set_impact(api.db, impact.id, donation_available_ms=future)
        operator.ok("transfer", selection)
        track = _track(api, account, created)
        assert track["donation_sent"] == ms_to_iso(future)
        operator.ok("complete", selection)
        assert _track(api, account, created)["impact_completed"] == ms_to_iso(future)

    def test_cancelled_impacts_never_advance(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        kept, cancelled = caller.plant(1), caller.plant(2)
        response = caller.post(
            "/v1/cancel_impact", {"user_id": account.user_id, "time_utc": cancelled["time_utc"]}
        )
        assert response.status_code == 200
        report = operator.ok("receive", {"user_id": account.user_id})
        assert (report["changed"], report["skipped"]) == (1, {"cancelled": 1})
        track = _track(api, account, cancelled)
        assert "donation_available" not in track and "cancelled_on" in track
        assert "donation_available" in _track(api, account, kept)

    def test_cancel_is_refused_once_transferred(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        received, transferred = caller.plant(1), caller.plant(2)
        operator.ok("receive", {"user_id": account.user_id})
        operator.ok("transfer", {"tracking_ids": [tracking_id(account.user_id, transferred)]})

        def cancel(created: dict[str, Any]) -> Any:
            body = {"user_id": account.user_id, "time_utc": created["time_utc"]}
            return caller.post("/v1/cancel_impact", body)

        refused = cancel(transferred)
        assert refused.status_code == 400
        assert "transferred to the partner" in refused.json()["message"]
        assert "Donation Received" in refused.json()["message"]
        assert cancel(received).status_code == 200  # still only Donation Received
        # And the refused one still completes.
        report = operator.ok("complete", {"user_id": account.user_id})
        assert (report["changed"], report["skipped"]) == (1, {"cancelled": 1})


class TestSelections:
    def test_criteria_combine(self, api: Api, operator: Operator) -> None:
        account = api.account(causes=["trees", "veterans"])
        other = api.account()
        caller = api.as_(account)
        food = caller.plant(3, category="food")
        plain = caller.plant(4)
        veterans = caller.impact("donate_money", 100, category="veterans")
        ocean = caller.impact("clean_ocean", 5)
        api.as_(other).plant(9)
        me = {"user_id": account.user_id}

        def would(selection: dict[str, Any]) -> int:
            report = operator.ok("receive", {**me, **selection}, dry_run=True)
            return report["would_change"]

        assert would({}) == 4
        assert would({"impact_type": "tree_planted"}) == 2
        assert would({"category": "food"}) == 1
        assert would({"category": "veterans"}) == 1
        assert would({"impact_type": "waste_removed", "category": "food"}) == 0
        assert would({"stage": "initiated"}) == 4
        ids = [tracking_id(account.user_id, c) for c in (food, ocean)]
        assert would({"tracking_ids": ids}) == 2

        # Dates: move two impacts into the past.
        old_day = datetime(2024, 3, 10, 12, tzinfo=UTC)
        for offset, created in enumerate((plain, veterans)):
            row = impact_row(api.db, account.user_id, created["time_utc"])
            set_impact(api.db, row.id, time_ms=datetime_to_ms(old_day) + offset)
        assert would({"start_date": "2024-03-10", "end_date": "2024-03-10"}) == 2
        assert would({"end_date": "2024-03-09"}) == 0
        assert would({"start_date": "2024-03-11"}) == 2

    def test_unknown_tracking_ids_are_reported(self, api: Api, operator: Operator) -> None:
        account = api.account()
        created = api.as_(account).plant(1)
        missing = f"{account.user_id}-2001-01-01T00:00:00.000Z"
        report = operator.ok(
            "receive", {"tracking_ids": [tracking_id(account.user_id, created), missing]}
        )
        assert report["changed"] == 1
        assert (report["not_found"], report["not_found_count"]) == ([missing], 1)

    def test_a_tracking_id_at_a_time_that_does_not_exist_names_no_impact(
        self, api: Api, operator: Operator
    ) -> None:
        account = api.account()
        never = f"{account.user_id}-2025-02-30T25:00:00.000Z"
        report = operator.ok("receive", {"tracking_ids": [never, never]}, dry_run=True)
        assert (report["matched"], report["not_found"]) == (0, [never])

    def test_complete_by_project(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        caller.plant(1, category="food")
        caller.plant(1)
        me = {"user_id": account.user_id}
        operator.ok("receive", me)
        operator.ok("transfer", me)
        report = operator.ok("complete", {**me, "project_id": "food-trees-rwenzori-uganda"})
        assert (report["changed"], report["by_type"]) == (1, {"tree_planted": 1})
        assert report["skipped"] == {}  # the other tree is at another project: not matched


class TestDryRunAndChunks:
    def test_dry_run_counts_and_changes_nothing(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        created = [caller.plant(1), caller.impact("capture_carbon", 2), caller.plant(3)]
        me = {"user_id": account.user_id}
        operator.ok("receive", {"tracking_ids": [tracking_id(account.user_id, created[0])]})
        report = operator.ok("receive", me, dry_run=True)
        assert report["dry_run"] is True
        assert (report["matched"], report["would_change"]) == (3, 2)
        assert report["by_type"] == {"carbon_captured": 1, "tree_planted": 1}
        assert report["skipped"] == {"donation_received": 1}
        assert "changed" not in report and "batch_id" not in report
        transfer = operator.ok("transfer", me, dry_run=True)
        assert transfer["would_change"] == 1
        assert transfer["by_project"] == {"mangroves-menabe-madagascar": 1}
        for c in created[1:]:
            assert "donation_available" not in _track(api, account, c)
        assert "donation_sent" not in _track(api, account, created[0])

    def test_chunks_report_what_each_changed(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        for _ in range(25):
            caller.plant(1)
        report = operator.ok("receive", {"user_id": account.user_id}, chunk_size=10)
        assert report["changed"] == 25
        assert report["chunks"] == [
            {"chunk": 1, "changed": 10},
            {"chunk": 2, "changed": 10},
            {"chunk": 3, "changed": 5},
        ]

    def test_two_batches_at_once_advance_each_impact_once(
        self, api: Api, operator: Operator
    ) -> None:
        account = api.account()
        caller = api.as_(account)
        count = 60
        for _ in range(count):
            caller.plant(1)
        me = {"user_id": account.user_id}
        reports: list[dict[str, Any]] = []
        barrier = threading.Barrier(2)

        def batch(chunk_size: int) -> None:
            barrier.wait()
            reports.append(operator.ok("receive", me, chunk_size=chunk_size))

        threads = [threading.Thread(target=batch, args=(size,)) for size in (7, 11)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sum(r["changed"] for r in reports) == count
        batches = {r["batch_id"] for r in reports}
        seen = 0
        for row in _all_rows(api, account.user_id):
            steps = transitions(api.db, row)
            assert len([t for t in steps if t.to_stage == "donation_received"]) <= 1
            seen += len(steps)
            assert {t.batch_id for t in steps} <= batches
        assert seen == count


def _all_rows(api: Api, user_id: str) -> list[int]:
    from sqlalchemy import select

    from openimpact.accounts.models import Account
    from openimpact.impacts.models import Impact

    return api.db.run_sync(
        lambda s: list(
            s.scalars(
                select(Impact.id)
                .join(Account, Account.id == Impact.account_id)
                .where(Account.user_id == user_id, Impact.env == "production")
            )
        )
    )


class TestBodyLimit:
    def test_the_largest_batch_the_schema_allows_gets_through(
        self, api: Api, operator: Operator
    ) -> None:
        """Every field at its longest, as many tracking ids as allowed, each
        character as long as JSON can make it; only just over the limit is 413."""
        import json

        from openimpact.lifecycle.schemas import BATCH_BODY_BYTES, MAX_TRACKING_IDS

        wide = "\U0001d4e3"  # a 12-byte \ud835\udce3 in JSON
        user = '"' * 30 + "\\" * 34  # 64 characters of 2 bytes each
        ids = [f"{user}-{ms_to_iso(1_700_000_000_000 + n)}" for n in range(MAX_TRACKING_IDS)]
        body = {
            "selection": {
                "env": "production",
                "impact_type": "tree_planted",
                "category": wide * 40,
                "start_date": "2024-01-01",
                "end_date": "2024-12-31",
                "stage": "transferred",
                "project_id": wide * 80,
                "tracking_ids": ids,
                "all": False,
            },
            "dry_run": True,
            "chunk_size": 1000,
            "impact_video": "https://example.com/" + wide * 480,
            "live_session_date": "2025-04-16T13:00:00.000000+00:00",
            "notes": wide * 2000,
        }
        data = json.dumps(body).encode()
        assert 1_500_000 < len(data) <= BATCH_BODY_BYTES
        headers = {**operator.headers, "Content-Type": "application/json"}
        response = operator.client.post(
            "/admin/v1/lifecycle/complete", content=data, headers=headers
        )
        assert response.status_code == 200, response.text[:300]
        assert response.json()["not_found_count"] == MAX_TRACKING_IDS

        padded = data[:-1] + b" " * (BATCH_BODY_BYTES - len(data) + 1) + b"}"
        too_big = operator.client.post(
            "/admin/v1/lifecycle/complete", content=padded, headers=headers
        )
        assert too_big.status_code == 413
        assert too_big.json()["message"] == f"request body must be at most {BATCH_BODY_BYTES} bytes"
        # Everything else keeps the ordinary limit.
        elsewhere = operator.client.put(
            "/admin/v1/accounts/U0/projects", content=b" " * 65537, headers=headers
        )
        assert elsewhere.status_code == 413


class TestAssignment:
    def test_account_override(self, api: Api, operator: Operator) -> None:
        account = api.account()
        path = f"/admin/v1/accounts/{account.user_id}/projects"
        assert operator.get(path).json() == {"user_id": account.user_id, "project_overrides": {}}
        response = operator.client.put(
            path,
            json={"project_overrides": {"tree_planted": "mangroves-menabe-madagascar"}},
            headers=operator.headers,
        )
        assert response.status_code == 200, response.text
        assert response.json()["project_overrides"] == {
            "tree_planted": "mangroves-menabe-madagascar"
        }
        caller = api.as_(account)
        plain, food = caller.plant(1), caller.plant(1, category="food")
        me = {"user_id": account.user_id}
        operator.ok("receive", me)
        operator.ok("transfer", me)
        assert _track(api, account, plain)["project_id"] == "mangroves-menabe-madagascar"
        # The plain-tree override does not apply to food trees.
        assert _track(api, account, food)["project_id"] == "food-trees-rwenzori-uganda"

    def test_bad_overrides_are_refused(self, api: Api, operator: Operator) -> None:
        account = api.account()
        path = f"/admin/v1/accounts/{account.user_id}/projects"
        cases = [
            ({"trees": "mangroves-menabe-madagascar"}, "unknown key"),
            ({"tree_planted": "no-such-project"}, "no project"),
            ({"waste_removed": "mangroves-menabe-madagascar"}, "does not execute"),
            ({"tree_planted:food": "mangroves-menabe-madagascar"}, "does not execute"),
        ]
        for overrides, text in cases:
            response = operator.client.put(
                path, json={"project_overrides": overrides}, headers=operator.headers
            )
            assert response.status_code == 400, response.text
            assert text in response.json()["message"]
        missing = operator.client.put(
            "/admin/v1/accounts/U0/projects",
            json={"project_overrides": {}},
            headers=operator.headers,
        )
        assert missing.status_code == 404
        # The shape of a key is a rule of the request, whoever the account is.
        for overrides in ({"days": ""}, {"money_donated:": "x"}, {"tree_planted": False}):
            shape = operator.client.put(
                "/admin/v1/accounts/U0/projects",
                json={"project_overrides": overrides},
                headers=operator.headers,
            )
            assert shape.status_code == 400, overrides
            assert shape.json()["message"].startswith("project_overrides")

    def test_explicit_project_must_fit(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account)
        caller.plant(1)
        caller.impact("clean_ocean", 1)
        me = {"user_id": account.user_id}
        operator.ok("receive", me)
        refused = operator.run("transfer", me, project_id="mangroves-menabe-madagascar")
        assert refused.status_code == 400
        assert "does not execute waste_removed" in refused.json()["message"]
        unknown = operator.run("transfer", me, project_id="nowhere")
        assert unknown.status_code == 400
        # Nothing was half-written.
        assert operator.ok("transfer", me, dry_run=True)["would_change"] == 2
        trees_only = {**me, "impact_type": "tree_planted"}
        report = operator.ok("transfer", trees_only, project_id="mangroves-menabe-madagascar")
        assert report["by_project"] == {"mangroves-menabe-madagascar": 1}


class TestStatus:
    def test_counts_and_oldest_waiting(self, api: Api, operator: Operator) -> None:
        account = api.account()
        caller = api.as_(account, "sandbox")  # its own environment: counts are exact
        first = caller.plant(1)
        caller.plant(2)
        caller.impact("clean_ocean", 3)
        row = impact_row(api.db, account.user_id, first["time_utc"], "sandbox")
        # Far in the past, so it is the oldest in the shared sandbox environment.
        set_impact(api.db, row.id, time_ms=0)
        status = operator.get("/admin/v1/lifecycle/status", env="sandbox").json()
        initiated = status["stages"][0]
        assert initiated["stage"] == "initiated"
        assert initiated["by_type"]["tree_planted"] >= 2
        assert initiated["oldest"]["tracking_id"] == f"{account.user_id}-{ms_to_iso(0)}"
        assert initiated["oldest"]["waiting_seconds"] > 1_000_000_000
        assert [s["stage"] for s in status["stages"]] == [
            "initiated",
            "donation_received",
            "transferred",
            "completed",
        ]
        assert operator.get("/admin/v1/lifecycle/status", env="nope").status_code == 400

    def test_unknown_impact_history_is_404(self, operator: Operator) -> None:
        response = operator.get("/admin/v1/impacts/U0-2024-01-01T00:00:00.000Z/transitions")
        assert response.status_code == 404
        assert response.json()["type"] == "not_found"
