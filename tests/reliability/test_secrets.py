"""Keys and secrets: no plaintext key in the database, a revoked key fails at
once, the operator token and account keys never stand in for each other, and
no key or token reaches a log line."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import MetaData, create_engine, select
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.app import create_app
from openimpact.config import Settings, driver_url
from openimpact.impacts.models import Impact
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.live import LiveServer, create_account, openimpact, server_env

OPERATOR_TOKEN = "operator-" + secrets.token_urlsafe(24)


def _secret_part(key: str) -> str:
    # The first 16 characters (oi_live_ and 8 more) are the key's visible
    # prefix, stored to list and revoke keys; the rest must never be stored.
    return key[16:]


def _every_stored_text(database: TestDatabase) -> Iterator[str]:
    engine = create_engine(driver_url(database.url))
    try:
        metadata = MetaData()
        metadata.reflect(engine)
        with engine.connect() as conn:
            for table in metadata.sorted_tables:
                for row in conn.execute(select(table)):
                    for value in row:
                        if value is not None:
                            yield (
                                value if isinstance(value, str) else json.dumps(value, default=str)
                            )
    finally:
        engine.dispose()
    if database.backend == "sqlite":
        # The files themselves too, free pages and the write-ahead log included.
        path = Path(database.url.split("///", 1)[1])
        for file in (path, Path(f"{path}-wal")):
            if file.exists():
                yield file.read_bytes().decode("latin-1")


def test_no_plaintext_key_is_stored(database: TestDatabase, api: Api) -> None:
    env = server_env(database.url)
    cli_account = create_account(env, "secrets@example.com")
    extra = json.loads(
        openimpact(
            [
                "keys",
                "create",
                "--user-id",
                cli_account["user_id"],
                "--env",
                "production",
                "--json",
            ],
            env,
        ).stdout
    )["key"]
    made = api.account()
    keys = [
        cli_account["sandbox_key"],
        cli_account["production_key"],
        extra,
        made.sandbox_key,
        made.production_key,
    ]
    # Use every key, on reads and on writes that store answers.
    for i, key in enumerate(keys):
        headers = {"x-api-key": key, "Idempotency-Key": f"order-{i}"}
        assert api.client.get("/v1/whoami", headers=headers).status_code == 200
        response = api.client.post(
            "/v1/plant_tree",
            json={"amount": 1, "customer_email": "c@example.com", "metadata": {"k": "v"}},
            headers=headers,
        )
        assert response.status_code == 200
    unknown = "oi_live_" + secrets.token_urlsafe(32)
    assert api.client.get("/v1/whoami", headers={"x-api-key": unknown}).status_code == 401

    secret_parts = [_secret_part(k) for k in [*keys, unknown]]
    texts = 0
    for text in _every_stored_text(database):
        texts += 1
        for part in secret_parts:
            assert part not in text, "an API key is stored in plain text"
    assert texts > 100  # the scan did read the database


def test_a_revoked_key_fails_at_once(database: TestDatabase, api: Api) -> None:
    account = api.account()
    caller = api.as_(account)
    sandbox = api.as_(account, "sandbox")
    # Used on reads and writes first, so that whatever the server keeps about
    # the key (its per-worker cache) is warm.
    for _ in range(3):
        assert caller.get("/v1/whoami").status_code == 200
        assert (
            caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key="k-1").status_code == 200
        )
    # Revoked by the operator, from another process.
    openimpact(["keys", "revoke", account.production_key[:16]], server_env(database.url))

    unknown = {"type": "key_error", "message": "API Key does not exist"}
    assert caller.get("/v1/whoami").json() == unknown
    assert caller.get("/v1/records").status_code == 401
    for idempotency_key in ("k-1", "k-2"):  # neither a replay nor a new impact
        response = caller.post("/v1/plant_tree", {"amount": 1}, idempotency_key=idempotency_key)
        assert (response.status_code, response.json()) == (401, unknown)
    assert caller.post("/v1/clean_ocean", {"amount": 2}).status_code == 401
    # A worker that never saw the key refuses it too; the account's other key
    # is untouched; and the refused writes wrote nothing.
    with TestClient(create_app(database.settings())) as fresh:
        assert fresh.get("/v1/whoami", headers=caller.headers()).status_code == 401
    assert sandbox.get("/v1/whoami").status_code == 200

    def impacts(session: Session) -> list[tuple[str, int]]:
        rows = session.execute(
            select(Impact.impact_type, Impact.amount)
            .join(Account, Account.id == Impact.account_id)
            .where(Account.user_id == account.user_id)
        )
        return [tuple(row) for row in rows]

    assert api.db.run_sync(impacts) == [("tree_planted", 1)]


@pytest.fixture
def operator_client(database: TestDatabase) -> Iterator[TestClient]:
    with TestClient(create_app(database.settings(admin_token=OPERATOR_TOKEN))) as client:
        yield client


def test_the_operator_token_is_never_an_account_key(operator_client: TestClient) -> None:
    api = Api(operator_client)
    account = api.account()
    admin = "/admin/v1/lifecycle/status"
    bearer = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    assert operator_client.get(admin, headers=bearer).status_code == 200  # the control

    # The token, as an account key.
    for headers in ({"x-api-key": OPERATOR_TOKEN}, bearer, {**bearer, "x-api-key": ""}):
        response = operator_client.get("/v1/whoami", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["type"] == "key_error"
    # Account keys, as the token.
    for key in (account.production_key, account.sandbox_key):
        for headers in (
            {"Authorization": f"Bearer {key}"},
            {"x-api-key": key},
            {"x-api-key": key, "Authorization": f"Bearer {key}"},
        ):
            response = operator_client.get(admin, headers=headers)
            assert response.status_code == 401, headers
            assert response.json()["type"] == "key_error"


def test_an_operator_token_shaped_like_an_account_key_is_refused() -> None:
    for token in ("oi_live_" + secrets.token_urlsafe(32), " oi_test_abc"):
        with pytest.raises(ValidationError, match="must not look like an account key"):
            Settings(admin_token=token, rate_limit="off")


def test_no_key_or_token_reaches_a_log_line(database: TestDatabase, tmp_path: Path) -> None:
    """The server's whole output at uvicorn's most verbose level, through every
    path a key can take: valid, unknown and revoked keys, the operator token
    right and wrong, errors, and keys a careless client put in the URL."""
    log = tmp_path / "server.log"
    env = server_env(
        database.url, OPENIMPACT_ADMIN_TOKEN=OPERATOR_TOKEN, OPENIMPACT_LOG_LEVEL="trace"
    )
    account = create_account(env, "logs@example.com")
    keys = [account["production_key"], account["sandbox_key"]]
    unknown = "oi_live_" + secrets.token_urlsafe(32)
    server = LiveServer(env, log=log).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            for key in [*keys, unknown]:
                headers = {"x-api-key": key}
                http.get("/v1/whoami", headers=headers)
                http.post("/v1/plant_tree", json={"amount": 1}, headers=headers)
                http.post("/v1/plant_tree", json={"amount": "x"}, headers=headers)
                http.post("/v1/plant_tree", content=b"{" * 70_000, headers=headers)
                http.get("/v1/records", params={"cursor": "bad"}, headers=headers)
                # Keys where they do not belong: in the query and the path.
                http.get("/v1/whoami", params={"api_key": key})
                http.get(f"/v1/projects/{key}", headers=headers)
                http.get("/v1/whoami", headers={"Authorization": f"Bearer {key}"})
            openimpact(["keys", "revoke", keys[0][:16]], env)
            assert http.get("/v1/whoami", headers={"x-api-key": keys[0]}).status_code == 401
            for token in (OPERATOR_TOKEN, OPERATOR_TOKEN + "x"):
                http.get("/admin/v1/lifecycle/status", headers={"Authorization": f"Bearer {token}"})
                http.get("/admin/v1/lifecycle/status", params={"token": token})
                http.get("/v1/whoami", headers={"x-api-key": token})
    finally:
        server.stop()

    output = log.read_text(encoding="utf-8", errors="replace")
    assert "GET /v1/whoami" in output and "ASGI" in output  # the capture works
    assert "oi_live_[redacted]" in output  # the key in a URL was there, masked
    for secret in [*(_secret_part(k) for k in [*keys, unknown]), OPERATOR_TOKEN]:
        assert secret not in output
