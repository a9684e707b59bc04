"""The openimpact command: accounts and keys."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from openimpact.accounts.models import ApiKey
from openimpact.cli import main
from openimpact.config import get_settings
from tests.conftest import TestDatabase


@pytest.fixture
def cli(database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


def _json(capsys: pytest.CaptureFixture[str]) -> object:
    return json.loads(capsys.readouterr().out)


def test_accounts_create_json_has_exactly_the_documented_fields(
    cli, capsys: pytest.CaptureFixture[str], client: TestClient
) -> None:  # type: ignore[no-untyped-def]
    assert (
        cli(["accounts", "create", "--email", "shop@example.com", "--name", "Shop", "--json"]) == 0
    )
    created = _json(capsys)
    assert isinstance(created, dict)
    assert set(created) == {"user_id", "email", "sandbox_key", "production_key"}
    assert created["email"] == "shop@example.com"
    assert created["sandbox_key"].startswith("oi_test_")
    assert created["production_key"].startswith("oi_live_")
    for env in ("sandbox", "production"):
        who = client.get("/v1/whoami", headers={"x-api-key": created[f"{env}_key"]})
        assert who.json() == {"user_id": created["user_id"], "email": "shop@example.com"}


def test_keys_create_list_revoke(cli, capsys, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    cli(["accounts", "create", "--email", "keys@example.com", "--json"])
    account = _json(capsys)
    assert (
        cli(["keys", "create", "--user-id", account["user_id"], "--env", "sandbox", "--json"]) == 0
    )
    extra = _json(capsys)
    assert extra["key"].startswith("oi_test_")
    assert client.get("/v1/whoami", headers={"x-api-key": extra["key"]}).status_code == 200

    assert cli(["keys", "list", "--user-id", account["user_id"], "--json"]) == 0
    listed = _json(capsys)
    assert len(listed) == 3
    assert all(extra["key"] != row["prefix"] and len(row["prefix"]) == 16 for row in listed)
    assert [row["revoked"] for row in listed] == [None, None, None]

    assert cli(["keys", "revoke", extra["prefix"]]) == 0
    capsys.readouterr()
    refused = client.get("/v1/whoami", headers={"x-api-key": extra["key"]})
    assert refused.status_code == 401
    assert refused.json() == {"type": "key_error", "message": "API Key does not exist"}
    still = client.get("/v1/whoami", headers={"x-api-key": account["sandbox_key"]})
    assert still.status_code == 200


def test_only_a_hash_of_each_key_is_stored(cli, capsys, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    cli(["accounts", "create", "--email", "hash@example.com", "--json"])
    account = _json(capsys)
    db = client.app.state.db  # type: ignore[attr-defined]
    stored = db.run_sync(
        lambda s: [tuple(r) for r in s.execute(select(ApiKey.prefix, ApiKey.key_hash))]
    )
    flat = " ".join(" ".join(row) for row in stored)
    assert account["production_key"] not in flat
    assert account["sandbox_key"] not in flat


def test_cli_errors_are_clear(cli, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli(["keys", "create", "--user-id", "U0", "--env", "sandbox"]) == 2
    assert "no account with user_id U0" in capsys.readouterr().err
    assert cli(["keys", "revoke", "oi_live_nothere"]) == 2
    assert cli(["accounts", "create", "--email", "not-an-email"]) == 2
    assert cli(["accounts", "causes", "--user-id", "U0", "--causes", "trees"]) == 2


def test_accounts_causes(cli, capsys, client: TestClient) -> None:  # type: ignore[no-untyped-def]
    cli(["accounts", "create", "--email", "causes@example.com", "--json"])
    account = _json(capsys)
    assert (
        cli(["accounts", "causes", "--user-id", account["user_id"], "--causes", "animals,trees"])
        == 0
    )
    capsys.readouterr()
    headers = {"x-api-key": account["production_key"]}
    made = client.post("/v1/donate_money", json={"amount": 100}, headers=headers).json()
    track = client.get(
        "/v1/track",
        params={"user_id": made["user_id"], "time_utc": made["time_utc"]},
        headers=headers,
    ).json()
    assert track["donation_category"] == "protecting animals"
    assert cli(["accounts", "causes", "--user-id", account["user_id"], "--causes", "pirates"]) == 2
    assert "unknown cause" in capsys.readouterr().err
