"""Plain factory helpers for tests: accounts with keys, and a thin API client."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from httpx import Response

from openimpact.accounts.service import create_account


@dataclass
class AccountKeys:
    user_id: str
    email: str
    sandbox_key: str
    production_key: str

    def key(self, env: str = "production") -> str:
        return self.production_key if env == "production" else self.sandbox_key


def make_account(db: Any, *, name: str = "Acme", causes: list[str] | None = None) -> AccountKeys:
    """A fresh account (unique email) with one key per environment."""
    email = f"owner-{secrets.token_hex(4)}@example.com"

    def create(session: Any) -> AccountKeys:
        account, keys = create_account(session, email=email, name=name, causes=causes)
        return AccountKeys(
            account.user_id, account.email, keys["sandbox"].key, keys["production"].key
        )

    return db.run_sync(create, write=True)


class Api:
    """Calls the API as one account and environment."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.db = client.app.state.db  # type: ignore[attr-defined]

    def account(self, **kwargs: Any) -> AccountKeys:
        return make_account(self.db, **kwargs)

    def as_(self, account: AccountKeys, env: str = "production") -> Caller:
        return Caller(self.client, account.key(env), account)


@dataclass
class Caller:
    client: TestClient
    key: str
    account: AccountKeys

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"x-api-key": self.key, **(extra or {})}

    def post(self, path: str, body: Any, **headers: str) -> Response:
        return self.client.post(path, json=body, headers=self.headers(_h(headers)))

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(path, params=params, headers=self.headers())

    def plant(self, amount: int = 1, **fields: Any) -> dict[str, Any]:
        response = self.post("/v1/plant_tree", {"amount": amount, **fields})
        assert response.status_code == 200, response.text
        return response.json()

    def impact(self, endpoint: str, amount: int = 1, **fields: Any) -> dict[str, Any]:
        response = self.post(f"/v1/{endpoint}", {"amount": amount, **fields})
        assert response.status_code == 200, response.text
        return response.json()

    def walk(self, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
        """Every row of a paginated list, following cursors to the end."""
        rows: list[dict[str, Any]] = []
        cursor = None
        for _ in range(10_000):
            query = dict(params)
            if cursor:
                query["cursor"] = cursor
            response = self.get(path, **query)
            assert response.status_code == 200, response.text
            body = response.json()
            rows.extend(body[key])
            cursor = body.get("cursor")
            if cursor is None:
                return rows
        raise AssertionError("pagination did not end")


def _h(headers: dict[str, str]) -> dict[str, str]:
    # Python names cannot hold '-': idempotency_key= becomes Idempotency-Key.
    return {k.replace("_", "-").title(): v for k, v in headers.items()}


@contextlib.contextmanager
def default_prices(db: Any) -> Iterator[None]:
    """The operator's unit prices at their defaults for the block, and as they
    were afterwards: prices are server-wide, and the suite's tests share a
    database."""
    from sqlalchemy import delete, select

    from openimpact.budgets.models import ImpactPrice

    def save(session: Any) -> list[dict[str, Any]]:
        rows = session.execute(select(ImpactPrice.__table__)).mappings().all()
        session.execute(delete(ImpactPrice))
        return [dict(row) for row in rows]

    saved = db.run_sync(save, write=True)
    try:
        yield
    finally:

        def restore(session: Any) -> None:
            session.execute(delete(ImpactPrice))
            if saved:
                session.execute(ImpactPrice.__table__.insert(), saved)

        db.run_sync(restore, write=True)
