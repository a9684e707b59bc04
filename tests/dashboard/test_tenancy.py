"""One account's dashboard never shows or changes another's data (OWASP API1):
another account's impact, customer, key or user is the same 404 as one that
does not exist, and no list ever holds another account's rows. Each test runs
on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient

from tests.dashboard.helpers import (
    Dashboard,
    db_of,
    impact_row,
    key_prefixes,
    listed_impacts,
    signed_in,
    user_row,
    visible_text,
)
from tests.factories import Api, Caller

FRAGMENT = {"HX-Request": "true", "HX-Target": "track-dialog-content"}


@dataclass
class Tenant:
    dashboard: Dashboard
    api: Caller
    tracking_id: str
    customer_id: str
    certificate_id: str
    key_prefix: str
    other_user_pk: int


def _tenant(client: TestClient, name: str) -> Tenant:
    """An account with a signed-in owner, a second user, and an impact for
    a customer whose email every tenant shares."""
    dashboard = signed_in(client, name=name)
    member = signed_in(client, dashboard.account, role="member")
    api = Api(client).as_(dashboard.account)
    made = api.impact(
        "plant_tree", 5, customer_email="shared@example.com", customer_name=f"Customer of {name}"
    )
    tracking_id = f"{made['user_id']}-{made['time_utc']}"
    certificate_id = impact_row(db_of(client), tracking_id).certificate_id
    assert certificate_id is not None
    prefix = next(p for p in key_prefixes(db_of(client), dashboard.account) if "live" in p)
    return Tenant(
        dashboard,
        api,
        tracking_id,
        made["customer"]["customer_id"],
        certificate_id,
        prefix,
        member.user_pk,
    )


def _same_404(mine: Dashboard, method: str, paths: list[str], **kwargs: Any) -> None:
    """Every path gets the same not-found page (but for the path itself,
    which the page repeats in its environment switch)."""
    pages = set()
    for path in paths:
        if method == "GET":
            response = mine.client.get(path, **kwargs)
        else:
            response = mine.post(path, kwargs.get("data"))
        assert response.status_code == 404, (path, response.status_code)
        assert "Not found" in visible_text(response.text), path
        pages.add(response.text.replace(path, "PATH"))
    assert len(pages) == 1, "\n\n".join(sorted(pages))


class TestAnotherAccountsThingsAreNotFound:
    def test_an_impact_of_another_account(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        b_time = b.tracking_id.split("-", 1)[1]
        never = "2020-01-01T00:00:00.000Z"
        paths = [
            f"/dashboard/impacts/{b.tracking_id}",
            f"/dashboard/impacts/{a.dashboard.account.user_id}-{never}",
            f"/dashboard/impacts/{b.dashboard.account.user_id}-{never}",
            f"/dashboard/impacts/{a.dashboard.account.user_id}-{b_time}",
        ]
        _same_404(a.dashboard, "GET", paths)
        _same_404(a.dashboard, "GET", paths, headers=FRAGMENT)
        # The control: B sees its own impact.
        assert b.dashboard.get(f"/dashboard/impacts/{b.tracking_id}").status_code == 200

    def test_cancelling_an_impact_of_another_account(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        before = b.api.get("/v1/impact").json()
        never = f"{a.dashboard.account.user_id}-2020-01-01T00:00:00.000Z"
        _same_404(
            a.dashboard,
            "POST",
            [f"/dashboard/impacts/{b.tracking_id}/cancel", f"/dashboard/impacts/{never}/cancel"],
            data={"reason": "not yours"},
        )
        assert impact_row(db_of(client), b.tracking_id).cancelled_ms is None
        assert b.api.get("/v1/impact").json() == before
        done = b.dashboard.post(f"/dashboard/impacts/{b.tracking_id}/cancel", {"reason": "mine"})
        assert "Impact cancelled." in visible_text(done.text)

    def test_a_customer_of_another_account(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        _same_404(
            a.dashboard,
            "GET",
            [f"/dashboard/customers/{b.customer_id}", "/dashboard/customers/C0000000000000000"],
        )
        assert b.dashboard.get(f"/dashboard/customers/{b.customer_id}").status_code == 200

    def test_revoking_a_key_of_another_account(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        before = key_prefixes(db_of(client), b.dashboard.account)
        _same_404(
            a.dashboard,
            "POST",
            [
                f"/dashboard/developers/keys/{b.key_prefix}/revoke",
                "/dashboard/developers/keys/oi_live_00000000/revoke",
            ],
        )
        assert key_prefixes(db_of(client), b.dashboard.account) == before
        whoami = client.get("/v1/whoami", headers={"x-api-key": b.dashboard.account.production_key})
        assert whoami.status_code == 200

    def test_removing_a_user_of_another_account(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        _same_404(
            a.dashboard,
            "POST",
            [
                f"/dashboard/team/{b.other_user_pk}/remove",
                f"/dashboard/team/{b.dashboard.user_pk}/remove",
                f"/dashboard/team/{2**40}/remove",
            ],
        )
        assert user_row(db_of(client), b.other_user_pk) is not None
        assert user_row(db_of(client), b.dashboard.user_pk) is not None
        assert b.dashboard.get("/dashboard").status_code == 200


class TestListsHoldOnlyTheAccountsOwnData:
    def test_no_list_shows_another_accounts_rows(self, client: TestClient) -> None:
        a, b = _tenant(client, "Shop A"), _tenant(client, "Shop B")
        mine = a.dashboard
        pages = {
            "overview": mine.page("/dashboard"),
            "impacts": mine.page("/dashboard/impacts"),
            "impacts of the shared customer": mine.page(
                "/dashboard/impacts", customer="shared@example.com"
            ),
            "customers": mine.page("/dashboard/customers"),
            "customer search": mine.page("/dashboard/customers", email="shared"),
            "own customer": mine.page(f"/dashboard/customers/{a.customer_id}"),
            "certificates": mine.page("/dashboard/certificates"),
            "developers": mine.page("/dashboard/developers"),
            "team": mine.page("/dashboard/team"),
        }
        theirs = (
            b.tracking_id,
            b.customer_id,
            b.certificate_id,
            b.key_prefix,
            "Customer of Shop B",
            b.dashboard.email,
            b.dashboard.account.user_id,
        )
        for where, page in pages.items():
            for secret in theirs:
                assert secret not in page, (where, secret)
        # And each list does show A's own (so the search above could fail).
        assert listed_impacts(pages["impacts"]) == [a.tracking_id]
        assert listed_impacts(pages["impacts of the shared customer"]) == [a.tracking_id]
        assert listed_impacts(pages["own customer"]) == [a.tracking_id]
        assert "Customer of Shop A" in visible_text(pages["customer search"])
        assert a.certificate_id in pages["certificates"]
        assert f"{a.key_prefix}…" in pages["developers"]
        assert a.dashboard.email in pages["team"]

        exported = mine.get("/dashboard/impacts.csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["tracking_id"] for r in rows] == [a.tracking_id]
        assert [r["customer_id"] for r in rows] == [a.customer_id]
