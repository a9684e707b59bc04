"""``openimpact schedules list|create|pause|resume|delete|run``, in-process
against the test's database."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta

import pytest

from openimpact.cli import main
from openimpact.config import get_settings
from openimpact.schedules import service
from tests.conftest import TestDatabase
from tests.factories import make_account

Cli = Callable[[Sequence[str]], int]


@pytest.fixture
def cli(database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_create_list_pause_resume_run_delete(
    cli: Cli, client: object, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_account(client.app.state.db)  # type: ignore[attr-defined]
    user = ["--user-id", keys.user_id]
    assert cli(
        ["schedules", "create", *user, "--impact-type", "tree_planted", "--amount", "100",
         "--day-of-month", "1", "--starts-on", "2026-01-01", "--metadata", "plan=monthly",
         "--json"]
    ) == 0  # fmt: skip
    (made,) = _json(capsys)  # type: ignore[misc]
    assert made["amount"] == 100 and made["metadata"] == {"plan": "monthly"}

    assert cli(["schedules", "list", *user, "--json"]) == 0
    assert [s["id"] for s in _json(capsys)] == [made["id"]]  # type: ignore[union-attr]
    assert cli(["schedules", "list", *user, "--env", "sandbox", "--json"]) == 0
    assert _json(capsys) == []

    assert cli(["schedules", "pause", *user, made["id"], "--json"]) == 0
    assert _json(capsys)[0]["status"] == "paused"  # type: ignore[index]
    assert cli(["schedules", "run", *user, "--as-of", "2026-02-15", "--json"]) == 0
    assert _json(capsys) == {"as_of": "2026-02-15", "created": 0, "refused": 0}
    assert cli(["schedules", "resume", *user, made["id"], "--json"]) == 0
    assert _json(capsys)[0]["status"] == "active"  # type: ignore[index]
    assert cli(["schedules", "delete", *user, made["id"]]) == 0
    assert "Deleted" in capsys.readouterr().out
    assert cli(["schedules", "list", *user]) == 0
    assert "No schedules." in capsys.readouterr().out


def test_the_run_creates_due_periods(
    cli: Cli, client: object, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_account(client.app.state.db)  # type: ignore[attr-defined]
    today = service.today()
    assert cli(
        ["schedules", "create", "--user-id", keys.user_id, "--impact-type", "coral_restored",
         "--amount", "3", "--day-of-month", "5", "--starts-on", today.isoformat()]
    ) == 0  # fmt: skip
    capsys.readouterr()
    # A pass for a day two months on: the server down meanwhile catches up.
    as_of = today + timedelta(days=62)
    due = sum(1 for n in range(63) if (today + timedelta(days=n)).day == 5)
    run = ["schedules", "run", "--user-id", keys.user_id, "--as-of", as_of.isoformat(), "--json"]
    assert cli(run) == 0
    assert _json(capsys) == {"as_of": as_of.isoformat(), "created": due, "refused": 0}
    assert cli(run) == 0
    assert _json(capsys) == {"as_of": as_of.isoformat(), "created": 0, "refused": 0}


def test_bad_input_is_an_error_naming_the_field(
    cli: Cli, client: object, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = make_account(client.app.state.db)  # type: ignore[attr-defined]
    code = cli(
        ["schedules", "create", "--user-id", keys.user_id, "--impact-type", "tree_planted",
         "--amount", "1", "--day-of-month", "31", "--starts-on", "2026-01-01"]
    )  # fmt: skip
    assert code == 2
    assert "day_of_month" in capsys.readouterr().err
    assert cli(["schedules", "run", "--as-of", "tomorrow"]) == 2
    assert "--as-of" in capsys.readouterr().err
    assert cli(["schedules", "pause", "--user-id", keys.user_id, "Snope"]) == 2
    assert "no schedule" in capsys.readouterr().err
