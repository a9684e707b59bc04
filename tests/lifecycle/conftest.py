"""Fixtures for the lifecycle tests: a server with an operator token, and an
``Operator`` that calls /admin/v1 with it."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select, update

from openimpact.accounts.models import Account
from openimpact.config import Settings
from openimpact.db import Database
from openimpact.impacts.models import Impact
from openimpact.lifecycle.models import ImpactTransition
from tests.conftest import TestDatabase

OPERATOR_TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    return database.settings(admin_token=OPERATOR_TOKEN)


class Operator:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}

    def run(self, action: str, selection: dict[str, Any], **body: Any) -> Response:
        return self.client.post(
            f"/admin/v1/lifecycle/{action}",
            json={"selection": selection, **body},
            headers=self.headers,
        )

    def ok(self, action: str, selection: dict[str, Any], **body: Any) -> dict[str, Any]:
        response = self.run(action, selection, **body)
        assert response.status_code == 200, response.text
        return response.json()

    def get(self, path: str, **params: Any) -> Response:
        return self.client.get(path, params=params, headers=self.headers)


@pytest.fixture
def operator(client: TestClient) -> Operator:
    return Operator(client)


def tracking_id(user_id: str, created: dict[str, Any]) -> str:
    return f"{user_id}-{created['time_utc']}"


def impact_row(db: Database, user_id: str, time_utc: str, env: str = "production") -> Impact:
    from openimpact.timeutil import parse_iso_ms

    def load(session: Any) -> Impact:
        impact = session.scalar(
            select(Impact)
            .join(Account, Account.id == Impact.account_id)
            .where(
                Account.user_id == user_id,
                Impact.env == env,
                Impact.time_ms == parse_iso_ms(time_utc),
            )
        )
        assert impact is not None
        return impact

    return db.run_sync(load)


def set_impact(db: Database, impact_id: int, **values: Any) -> None:
    """Rewrite columns of one impact, to put it where a test needs it (its past)."""
    db.run_sync(
        lambda s: s.execute(update(Impact).where(Impact.id == impact_id).values(**values)),
        write=True,
    )


def transitions(db: Database, impact_id: int) -> list[ImpactTransition]:
    return db.run_sync(
        lambda s: list(
            s.scalars(
                select(ImpactTransition)
                .where(ImpactTransition.impact_id == impact_id)
                .order_by(ImpactTransition.id)
            )
        )
    )
