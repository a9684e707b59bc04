"""``openimpact lifecycle ...`` and ``openimpact accounts projects`` do what the
admin API does, on the same database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openimpact.cli import main
from openimpact.config import get_settings
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.lifecycle.conftest import tracking_id


@pytest.fixture
def cli(
    database: TestDatabase, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Any]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    get_settings.cache_clear()

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    get_settings.cache_clear()


def test_drive_an_impact_to_completed(api: Api, cli: Any) -> None:
    account = api.account(name="Acme")
    caller = api.as_(account)
    created = caller.plant(3, category="food")
    caller.plant(1)
    tid = tracking_id(account.user_id, created)

    code, out, _ = cli("lifecycle", "receive", "--user-id", account.user_id, "--dry-run")
    assert code == 0
    assert "would change 2 of 2 matched production impacts" in out

    code, out, _ = cli("lifecycle", "receive", "--tracking-id", tid)
    assert code == 0
    assert "changed 1 of 1 matched production impacts in 1 chunk(s)" in out
    assert "chunk 1: 1 changed" in out
    assert "batch id: receive-" in out

    code, out, _ = cli("lifecycle", "transfer", "--tracking-id", tid, "--json")
    report = json.loads(out)
    assert (report["changed"], report["by_project"]) == (1, {"food-trees-rwenzori-uganda": 1})

    video = "https://videos.example.org/live-7"
    code, out, _ = cli(
        "lifecycle",
        "complete",
        "--tracking-id",
        tid,
        "--video",
        video,
        "--live-session",
        "2031-05-03T13:00:00.000Z",
        "--notes",
        "planted with the Kasese group",
    )
    assert code == 0, out
    track = caller.get("/v1/track", user_id=account.user_id, time_utc=created["time_utc"]).json()
    assert track["impact_video"] == video
    assert track["live_session_date"] == "2031-05-03T13:00:00.000Z"
    assert "impact_completed" in track

    code, out, _ = cli("lifecycle", "history", tid)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"{tid} (production): Completed"
    assert len(lines) == 4 and all("by cli" in line for line in lines[1:])

    code, out, _ = cli("lifecycle", "status", "--json")
    status = json.loads(out)
    completed = next(s for s in status["stages"] if s["stage"] == "completed")
    assert completed["by_type"]["tree_planted"] >= 1
    code, out, _ = cli("lifecycle", "status")
    assert out.startswith("Lifecycle of production impacts")
    assert "Transferred to Partner" in out and "Cancelled" in out


def test_tracking_ids_file_and_errors(api: Api, cli: Any, tmp_path: Path) -> None:
    account = api.account()
    caller = api.as_(account)
    ids = [tracking_id(account.user_id, caller.plant(1)) for _ in range(3)]
    listing = tmp_path / "ids.txt"
    listing.write_text("# received today\n" + "\n".join(ids[:2]) + "\n\n")
    code, out, _ = cli("lifecycle", "receive", "--tracking-ids-file", str(listing), "--json")
    assert json.loads(out)["changed"] == 2

    code, _, err = cli("lifecycle", "receive")
    assert code == 2 and err.startswith("error: selection:")
    code, _, err = cli("lifecycle", "transfer", "--all", "--stage", "initiated")
    assert code == 2 and "selection.stage" in err
    code, _, err = cli("lifecycle", "complete", "--all", "--video", "ftp://x")
    assert code == 2 and "impact_video" in err
    code, _, err = cli("lifecycle", "receive", "--tracking-ids-file", str(tmp_path / "none"))
    assert code == 2 and "--tracking-ids-file" in err


def test_account_project_overrides(api: Api, cli: Any) -> None:
    account = api.account()
    code, out, _ = cli("accounts", "projects", "--user-id", account.user_id)
    assert "no project overrides" in out
    code, out, _ = cli(
        "accounts",
        "projects",
        "--user-id",
        account.user_id,
        "--set",
        "waste_removed=river-interception-tullahan-philippines",
        "--set",
        "tree_planted=wildlife-corridor-kinabatangan-malaysia",
        "--json",
    )
    assert json.loads(out)["project_overrides"] == {
        "tree_planted": "wildlife-corridor-kinabatangan-malaysia",
        "waste_removed": "river-interception-tullahan-philippines",
    }
    code, out, _ = cli(
        "accounts", "projects", "--user-id", account.user_id, "--unset", "tree_planted"
    )
    assert "waste_removed" in out and "tree_planted " not in out
    ocean = api.as_(account).impact("clean_ocean", 4)
    cli("lifecycle", "receive", "--user-id", account.user_id)
    cli("lifecycle", "transfer", "--user-id", account.user_id)
    track = api.as_(account).get("/v1/track", user_id=account.user_id, time_utc=ocean["time_utc"])
    assert track.json()["project_id"] == "river-interception-tullahan-philippines"
    code, _, err = cli("accounts", "projects", "--user-id", account.user_id, "--set", "oops")
    assert code == 2 and "KEY=PROJECT_ID" in err
