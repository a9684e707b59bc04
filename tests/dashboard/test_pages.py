"""The dashboard's pages, read as a person reads them: every page behind the
sign-in, the overview's totals, the impacts list (filters, order, keyset
pages, CSV export), the track view and cancelling, API keys, the team, the
environment switch, and escaping of everything a merchant's API calls put on
a page. Each test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import routing
from fastapi.testclient import TestClient

from openimpact.projects.models import Partner
from openimpact.timeutil import day_start_ms, ms_to_iso, now_ms
from tests.dashboard.helpers import (
    FORM_ERROR,
    XSS_IMG,
    XSS_SCRIPT,
    Dashboard,
    Planned,
    add_user,
    advance_impact,
    again,
    browser,
    button,
    csrf_token,
    db_of,
    field_error,
    form_field,
    impact_row,
    key_prefixes,
    link,
    listed_impacts,
    next_page,
    record,
    set_cookie,
    signed_in,
    unique_email,
    user_row,
    visible_text,
)
from tests.factories import Api, Caller

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


def _api(client: TestClient, dashboard: Dashboard, env: str = "production") -> Caller:
    return Api(client).as_(dashboard.account, env)


def _figure(impact_type: str, amount: int) -> str:
    """How a person expects to read a total: 1,234,567, or $1,234.56 for cents."""
    if impact_type == "money_donated":
        return f"${amount // 100:,}.{amount % 100:02d}"
    return f"{amount:,}"


_CARDS = {
    "tree_planted": ("Trees planted", " trees"),
    "waste_removed": ("Ocean plastic removed", " lbs"),
    "carbon_captured": ("Carbon captured", " lbs CO₂"),
    "coral_restored": ("Coral restored", " coral fragments"),
    "money_donated": ("Donated", ""),
}


def _stat_card(page: str, impact_type: str) -> tuple[str, str, str]:
    """(total, direct, for customers) as a person reads them on the overview."""
    label, unit = _CARDS[impact_type]
    found = re.search(
        rf"{re.escape(label)} (\S+){re.escape(unit)} Direct (\S+) For customers (\S+)",
        visible_text(page),
    )
    assert found, impact_type
    return found.group(1), found.group(2), found.group(3)


def _today_ms() -> int:
    return day_start_ms(date.fromisoformat(ms_to_iso(now_ms())[:10]))


# Every page ------------------------------------------------------------------------------

ANONYMOUS_PAGES = {
    "/dashboard/login",
    "/dashboard/forgot",
    "/dashboard/invite/{token}",
    "/dashboard/reset/{token}",
}


def _dashboard_pages(app: Any) -> list[str]:
    contexts = getattr(routing, "iter_route_contexts", None)
    routes = list(contexts(app.routes)) if contexts else list(app.routes)
    return sorted(
        {
            route.path
            for route in routes
            if (route.path == "/dashboard" or route.path.startswith("/dashboard/"))
            and "GET" in (getattr(route, "methods", None) or ())
            and route.path not in ANONYMOUS_PAGES
        }
    )


class TestEveryPageNeedsASignIn:
    def test_each_page_answers_when_signed_in_and_sends_to_sign_in_when_not(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        (tracking_id,) = record(
            db_of(client), dashboard.account, [Planned(customer_email="jane@example.com")]
        )
        found = _api(client, dashboard).get("/v1/customers").json()["customers"][0]
        real = {
            "/dashboard/impacts/{tracking_id}": f"/dashboard/impacts/{tracking_id}",
            "/dashboard/customers/{customer_id}": f"/dashboard/customers/{found['customer_id']}",
        }
        pages = _dashboard_pages(client.app)
        expected = {
            "/dashboard",
            "/dashboard/impacts",
            "/dashboard/impacts.csv",
            "/dashboard/impacts/{tracking_id}",
            "/dashboard/customers",
            "/dashboard/customers/{customer_id}",
            "/dashboard/certificates",
            "/dashboard/developers",
            "/dashboard/webhooks",
            "/dashboard/team",
        }
        assert expected <= set(pages), "route enumeration missed pages"
        signed_out = browser(client)
        for template in pages:
            path = real.get(template, template.replace("{", "").replace("}", ""))
            refused = signed_out.get(path, params={"q": "1"})
            assert refused.status_code == 303, template
            assert refused.headers["location"] == "/dashboard/login?next=" + quote(
                f"{path}?q=1", safe="/"
            ), template
            htmx = signed_out.get(path, headers={"HX-Request": "true"})
            assert htmx.status_code == 204, template
            assert htmx.headers["HX-Redirect"] == "/dashboard/login?next=" + quote(path, safe="/")
            if template in expected:
                page = dashboard.get(path)
                assert page.status_code == 200, (template, page.text[:500])
                assert page.headers["cache-control"] == "no-store", template
                if not path.endswith(".csv"):
                    assert page.headers["x-frame-options"] == "DENY", template
                    assert "script-src 'self'" in page.headers["content-security-policy"]


class TestErrorsArePages:
    def test_a_dashboard_error_is_a_page_and_an_api_error_stays_json(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        invalid = dashboard.get("/dashboard/certificates", after="-5")
        assert invalid.status_code == 400
        assert invalid.headers["content-type"].startswith("text/html")
        text = visible_text(invalid.text)
        assert "Bad request After: Input should be greater than or equal to 0" in text
        assert dashboard.email in text  # the page of a signed-in person

        signed_out = browser(client).get("/dashboard/nothing-here")
        assert signed_out.status_code == 404
        assert signed_out.headers["content-type"].startswith("text/html")
        assert "Not found No such endpoint Go to sign in" in visible_text(signed_out.text)

        api = dashboard.client.get("/v1/whoami")
        assert api.status_code == 401 and api.json()["type"] == "key_error"
        asset = dashboard.client.get("/dashboard/static/no-such-file.css")
        assert asset.status_code == 404
        assert asset.json() == {"type": "not_found", "message": "no such endpoint"}

    def test_an_unknown_address_is_a_not_found_page_of_the_signed_in_dashboard(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        missing = dashboard.get("/dashboard/no-such-page")
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        text = visible_text(missing.text)
        assert "Not found" in text
        # Signed in: the dashboard's own layout, not the signed-out page.
        assert dashboard.email in text and "Back to the overview" in text
        assert "Go to sign in" not in text


# Overview --------------------------------------------------------------------------------


class TestOverview:
    def test_the_totals_are_exactly_those_of_v1_impact_split_direct_and_for_customers(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        api.impact("plant_tree", 1_234_567)
        api.impact("plant_tree", 2_345, customer_email="jane@example.com")
        refunded = api.impact("plant_tree", 45, customer_email="jane@example.com")
        api.impact("clean_ocean", 1_000, customer_email="bob@example.com")
        api.impact("capture_carbon", 12)
        api.impact("donate_money", 12_345_678)
        api.impact("donate_money", 5, customer_email="bob@example.com")
        cancelled = api.post(
            "/v1/cancel_impact", {"user_id": refunded["user_id"], "time_utc": refunded["time_utc"]}
        )
        assert cancelled.status_code == 200
        _api(client, dashboard, "sandbox").impact("plant_tree", 999)  # never in production

        totals = api.get("/v1/impact").json()
        assert totals["tree_planted"] == 1_236_912  # the API agrees with the arithmetic
        page = dashboard.page("/dashboard")
        for key in ("tree_planted", "waste_removed", "carbon_captured", "coral_restored"):
            assert _stat_card(page, key) == (
                _figure(key, totals[key]),
                _figure(key, totals["user_impact"][key]),
                _figure(key, totals["customer_impact"][key]),
            ), key
        assert _stat_card(page, "tree_planted") == ("1,236,912", "1,234,567", "2,345")
        assert _stat_card(page, "money_donated") == ("$123,456.83", "$123,456.78", "$0.05")
        assert _stat_card(page, "coral_restored") == ("0", "0", "0")
        text = visible_text(page)
        assert "Trees planted 1,236,912 trees Direct 1,234,567 For customers 2,345" in text
        today = ms_to_iso(now_ms())[:10]
        assert f"to {today}: 1,236,912 trees in all." in text

    def test_the_latest_impacts_are_listed_newest_first(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        ids = record(db_of(client), dashboard.account, [Planned(amount=n) for n in range(1, 13)])
        page = dashboard.page("/dashboard")
        assert listed_impacts(page) == list(reversed(ids))[:10]


# Impacts ---------------------------------------------------------------------------------


def _history(client: TestClient, dashboard: Dashboard) -> dict[str, str]:
    """Six impacts over three weeks, by name; one received, one cancelled."""
    today = _today_ms()
    plan = {
        "old_tree": Planned("tree_planted", 1, today - 20 * DAY_MS),
        "jane_waste": Planned("waste_removed", 2, today - 10 * DAY_MS, "jane@example.com", "Jane"),
        "bob_money": Planned(
            "money_donated", 300, today - 10 * DAY_MS + HOUR_MS, "bob@example.com"
        ),
        "jane_tree": Planned("tree_planted", 4, today - 2 * DAY_MS, "Jane@Example.com"),
        "carbon": Planned("carbon_captured", 5, today - DAY_MS),
        "coral": Planned("coral_restored", 6, today + 1),
    }
    ids = dict(zip(plan, record(db_of(client), dashboard.account, plan.values()), strict=True))
    advance_impact(db_of(client), ids["jane_tree"], "receive")
    cancel = dashboard.post(f"/dashboard/impacts/{ids['carbon']}/cancel", {"reason": "refund"})
    assert "Impact cancelled." in visible_text(cancel.text)
    return ids


def _day(days_ago: int) -> str:
    return ms_to_iso(_today_ms() - days_ago * DAY_MS)[:10]


class TestImpactFilters:
    @pytest.mark.parametrize(
        ("params", "expected"),
        [
            ({}, ["coral", "carbon", "jane_tree", "bob_money", "jane_waste", "old_tree"]),
            ({"type": "tree_planted"}, ["jane_tree", "old_tree"]),
            ({"start": 10, "end": 2}, ["jane_tree", "bob_money", "jane_waste"]),
            ({"start": 1}, ["coral", "carbon"]),
            ({"end": 20}, ["old_tree"]),
            ({"customer": "JANE@example.com"}, ["jane_tree", "jane_waste"]),
            ({"customer": "nobody@example.com"}, []),
            ({"stage": "donation_received"}, ["jane_tree"]),
            (
                {"stage": "initiated", "status": "active"},
                ["coral", "bob_money", "jane_waste", "old_tree"],
            ),
            ({"status": "cancelled"}, ["carbon"]),
            ({"type": "tree_planted", "customer": "jane@example.com"}, ["jane_tree"]),
            (
                {"order": "asc"},
                ["old_tree", "jane_waste", "bob_money", "jane_tree", "carbon", "coral"],
            ),
        ],
    )
    def test_each_filter_narrows_the_rows(
        self, client: TestClient, params: dict[str, Any], expected: list[str]
    ) -> None:
        dashboard = signed_in(client)
        ids = _history(client, dashboard)
        query = {k: _day(v) if k in ("start", "end") else v for k, v in params.items()}
        page = dashboard.page("/dashboard/impacts", **query)
        assert listed_impacts(page) == [ids[name] for name in expected]
        if not expected:
            assert "No impacts match." in visible_text(page)
        # The form shows the filters in use, and the export link keeps them.
        for name, value in query.items():
            assert f'value="{value}"' in form_field(page, name), name
        export = link(page, "Export CSV")
        assert export is not None and export.startswith("/dashboard/impacts.csv")
        for name, value in query.items():
            assert f"{name}={quote(str(value), safe='')}" in export

    def test_each_row_shows_date_impact_customer_and_stage(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        ids = _history(client, dashboard)
        text = visible_text(dashboard.page("/dashboard/impacts"))
        jane_tree = ms_to_iso(impact_row(db_of(client), ids["jane_tree"]).time_ms)
        assert f"{jane_tree[:10]} {jane_tree[11:16]} UTC 4 trees planted Jane" in text
        assert "Donation Received" in text
        assert "2 lbs of ocean plastic removed Jane jane@example.com Initiated" in text
        assert "Direct Cancelled" in text

    @pytest.mark.parametrize(
        ("params", "name", "message"),
        [
            ({"start": "2026-02-30"}, "start", "2026-02-30 is not a real calendar date"),
            ({"end": "yesterday"}, "end", "Must be a date in YYYY-MM-DD format"),
            (
                {"start": "2026-03-02", "end": "2026-03-01"},
                "start",
                "Must not be after the end date",
            ),
            ({"type": "trees"}, "type", "Choose one of the impact types"),
            ({"stage": "shipped"}, "stage", "Choose one of the stages"),
            ({"status": "refunded"}, "status", "Choose Active or Cancelled"),
            ({"customer": "jane"}, "customer", "Enter a customer's full email address"),
        ],
    )
    def test_a_bad_filter_is_explained_next_to_its_field(
        self, client: TestClient, params: dict[str, str], name: str, message: str
    ) -> None:
        dashboard = signed_in(client)
        response = dashboard.get("/dashboard/impacts", **params)
        assert response.status_code == FORM_ERROR
        assert field_error(response.text, name) == message
        assert 'aria-invalid="true"' in form_field(response.text, name)
        assert f'<li><a href="#{name}">{message}</a></li>' in response.text.replace("&#39;", "'")


class TestImpactPages:
    def _walk(self, dashboard: Dashboard, **params: str) -> list[list[str]]:
        pages = []
        url: str | None = "/dashboard/impacts"
        query: dict[str, str] | None = params
        while url is not None and len(pages) < 20:
            response = dashboard.client.get(url, params=query)
            assert response.status_code == 200
            pages.append(listed_impacts(response.text))
            url, query = next_page(response.text), None
        return pages

    def test_keyset_pages_show_every_impact_exactly_once_in_order(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        start = now_ms() - 2 * HOUR_MS
        kinds = ("tree_planted", "waste_removed")
        plan = [Planned(kinds[n % 2], n + 1, start + n * 1000) for n in range(130)]
        ids = record(db_of(client), dashboard.account, plan)

        pages = self._walk(dashboard)
        assert [len(p) for p in pages] == [50, 50, 30]
        assert [i for p in pages for i in p] == list(reversed(ids))

        waste = self._walk(dashboard, type="waste_removed", order="asc")
        assert [len(p) for p in waste] == [50, 15]
        assert [i for p in waste for i in p] == ids[1::2]

    def test_a_cursor_of_other_filters_starts_again_from_the_first_page(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        start = now_ms() - HOUR_MS
        ids = record(
            db_of(client), dashboard.account, [Planned(at_ms=start + n) for n in range(55)]
        )
        first = dashboard.page("/dashboard/impacts")
        following = next_page(first)
        assert following is not None
        cursor = following.split("cursor=", 1)[1]
        # Another first character changes the signed payload's first 6 bits
        # (the last characters of a signature may carry bits the decoder drops).
        tampered = ("B" if cursor[0] == "A" else "A") + cursor[1:]
        for params in ({"cursor": cursor, "order": "asc"}, {"cursor": tampered}):
            page = dashboard.get("/dashboard/impacts", **params)
            assert page.status_code == 200
            assert "That page is no longer available; showing the first page" in visible_text(
                page.text
            )
            rows = listed_impacts(page.text)
            assert rows == (ids[:50] if params.get("order") == "asc" else list(reversed(ids))[:50])


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text[:500]
    return list(csv.DictReader(io.StringIO(response.text)))


def _api_records(api: Caller, **params: Any) -> list[dict[str, Any]]:
    """Every record of the API (own and on behalf of customers) for the same filters."""
    customer = params.pop("customer_email", None)
    rows = []
    if customer is None:
        rows += api.walk("/v1/records", "user_records", limit=1000, **params)
    rows += api.walk(
        "/v1/customer_records",
        "customer_records",
        limit=1000,
        **params,
        **({"customer_email": customer} if customer else {}),
    )
    return rows


def _as_keys(rows: list[dict[str, Any]], *, csv_rows: bool) -> set[tuple[Any, ...]]:
    if csv_rows:
        return {
            (
                r["time_utc"],
                r["impact_type"],
                int(r["amount"]),
                r["customer_email"] or None,
                r["cancelled_on"] or None,
            )
            for r in rows
        }
    keys = set()
    for r in rows:
        (kind,) = [
            k
            for k in r
            if k
            in (
                "tree_planted",
                "waste_removed",
                "carbon_captured",
                "coral_restored",
                "money_donated",
            )
        ]
        keys.add(
            (
                r["time_utc"],
                kind,
                r[kind],
                (r.get("customer") or {}).get("customer_email"),
                r.get("cancelled_on"),
            )
        )
    return keys


class TestCsvExport:
    def test_the_export_is_exactly_the_filtered_set_of_the_api(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        ids = _history(client, dashboard)
        api = _api(client, dashboard)
        cases = [
            ({}, {}),
            ({"type": "tree_planted"}, {"filter_by": "tree_planted"}),
            (
                {"start": _day(10), "end": _day(2)},
                {"start_date": _day(10), "end_date": _day(2)},
            ),
            ({"customer": "jane@example.com"}, {"customer_email": "jane@example.com"}),
        ]
        for params, api_params in cases:
            exported = _csv(dashboard.get("/dashboard/impacts.csv", **params))
            expected = _as_keys(_api_records(api, **api_params), csv_rows=False)
            assert _as_keys(exported, csv_rows=True) == expected, params
            assert len(exported) == len(expected), params
        cancelled = _csv(dashboard.get("/dashboard/impacts.csv", status="cancelled"))
        assert [r["tracking_id"] for r in cancelled] == [ids["carbon"]]
        assert cancelled[0]["cancellation_reason"] == "refund"
        stage = _csv(dashboard.get("/dashboard/impacts.csv", stage="donation_received"))
        assert [r["tracking_id"] for r in stage] == [ids["jane_tree"]]

    def test_columns_headers_and_a_row(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        made = api.impact(
            "donate_money",
            250,
            customer_email="ann@example.com",
            customer_name="Ann",
            metadata={"order": "1001"},
        )
        response = dashboard.get("/dashboard/impacts.csv")
        assert response.headers["content-type"] == "text/csv; charset=utf-8"
        assert re.fullmatch(
            r'attachment; filename="openimpact-production-impacts-\d{4}-\d{2}-\d{2}\.csv"',
            response.headers["content-disposition"],
        )
        (row,) = _csv(response)
        impact = impact_row(db_of(client), f"{made['user_id']}-{made['time_utc']}")
        assert row == {
            "tracking_id": f"{made['user_id']}-{made['time_utc']}",
            "time_utc": made["time_utc"],
            "impact_type": "money_donated",
            "amount": "250",
            "unit": "US cents",
            "category": "",
            "stage": "initiated",
            "cancelled_on": "",
            "cancellation_reason": "",
            "customer_id": made["customer"]["customer_id"],
            "customer_email": "ann@example.com",
            "customer_name": "Ann",
            "project_id": "",
            "certificate_url": f"http://testserver/certificates/{impact.certificate_id}",
            "metadata": '{"order": "1001"}',
        }

    def test_a_large_export_streams_every_row_once(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        start = now_ms() - 3 * HOUR_MS
        ids = record(
            db_of(client), dashboard.account, [Planned(at_ms=start + n) for n in range(1005)]
        )
        rows = _csv(dashboard.get("/dashboard/impacts.csv"))
        assert [r["tracking_id"] for r in rows] == list(reversed(ids))
        oldest_first = _csv(dashboard.get("/dashboard/impacts.csv", order="asc"))
        assert [r["tracking_id"] for r in oldest_first] == ids

    def test_cells_a_spreadsheet_would_run_are_quoted(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        names = ['=HYPERLINK("http://evil.example")', "+1+2", "-3", "@SUM(A1)", "\tcmd", "Ann"]
        made = [
            api.impact("plant_tree", 1, customer_email=f"c{n}@example.com", customer_name=name)
            for n, name in enumerate(names)
        ]
        tid = f"{made[0]['user_id']}-{made[0]['time_utc']}"
        cancelled = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": "-refund"})
        assert "Impact cancelled." in visible_text(cancelled.text)
        rows = {r["customer_email"]: r for r in _csv(dashboard.get("/dashboard/impacts.csv"))}
        shown = [rows[f"c{n}@example.com"]["customer_name"] for n in range(len(names))]
        assert shown == [
            '\'=HYPERLINK("http://evil.example")',
            "'+1+2",
            "'-3",
            "'@SUM(A1)",
            "'\tcmd",
            "Ann",
        ]
        assert rows["c0@example.com"]["cancellation_reason"] == "'-refund"

    def test_a_bad_filter_is_refused(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        refused = dashboard.get("/dashboard/impacts.csv", start="2026-02-30")
        assert refused.status_code == 400
        assert "2026-02-30 is not a real calendar date" in visible_text(refused.text)


# Track view and cancelling ---------------------------------------------------------------

FRAGMENT = {"HX-Request": "true", "HX-Target": "track-dialog-content"}


class TestTrackView:
    def test_the_track_view_shows_timeline_partner_certificate_and_customer(
        self, client: TestClient
    ) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        made = _api(client, dashboard).impact(
            "plant_tree", 25, customer_email="jane@example.com", customer_name="Jane Doe"
        )
        tid = f"{made['user_id']}-{made['time_utc']}"
        advance_impact(db, tid, "receive", "transfer")
        impact = impact_row(db, tid)
        partner = db.run_sync(lambda s: s.get(Partner, impact.partner_id))
        assert partner is not None

        fragment = dashboard.client.get(f"/dashboard/impacts/{tid}", headers=FRAGMENT)
        assert fragment.status_code == 200
        assert "<html" not in fragment.text and "<!doctype" not in fragment.text.lower()
        text = visible_text(fragment.text)
        assert "25 trees planted" in text
        assert f"Tracking ID {tid}" in text

        def when(ms: int | None) -> str:
            assert ms is not None
            iso = ms_to_iso(ms)
            return f"{iso[:10]} {iso[11:16]} UTC"

        assert (
            f"Timeline Initiated {when(impact.time_ms)} "
            f"Donation Received {when(impact.donation_available_ms)} "
            f"Transferred to Partner {when(impact.donation_sent_ms)} Completed Pending"
        ) in text
        assert f"Partner {partner.name}" in text
        certificate = f"http://testserver/certificates/{impact.certificate_id}"
        assert f'href="{certificate}"' in fragment.text
        assert f'href="{certificate}/image.png"' in fragment.text
        assert f'href="{certificate}/certificate.pdf"' in fragment.text
        assert "Open certificate PNG PDF" in text
        assert client.get(certificate.removeprefix("http://testserver")).status_code == 200
        customer_id = made["customer"]["customer_id"]
        assert f'<a href="/dashboard/customers/{customer_id}">Jane Doe</a>' in fragment.text
        assert "Customer Jane Doe jane@example.com" in text
        assert "Cancel this impact" not in text  # transferred: no longer cancellable

        full = dashboard.get(f"/dashboard/impacts/{tid}")
        assert full.status_code == 200
        assert full.text.lower().startswith("<!doctype html>")
        assert "<title>25 trees planted · Impact · OpenImpact</title>" in full.text
        assert 'data-open="true"' in full.text
        assert f"Partner {partner.name}" in visible_text(full.text)
        # An htmx request without the modal as its target, or a history restore, gets the page.
        for headers in (
            {"HX-Request": "true"},
            {**FRAGMENT, "HX-History-Restore-Request": "true"},
        ):
            page = dashboard.client.get(f"/dashboard/impacts/{tid}", headers=headers)
            assert page.text.lower().startswith("<!doctype html>")

    def test_a_direct_sandbox_impact_has_no_certificate_and_is_marked_as_a_test(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        made = _api(client, dashboard, "sandbox").impact("restore_coral", 3)
        tid = f"{made['user_id']}-{made['time_utc']}"
        switched = dashboard.post("/dashboard/env", {"env": "sandbox"})
        assert switched.status_code == 303
        fragment = dashboard.client.get(f"/dashboard/impacts/{tid}", headers=FRAGMENT)
        text = visible_text(fragment.text)
        assert "Track impact Test transaction" in text
        assert "Sandbox impacts have no certificate." in text
        assert "Direct impact of the business." in text
        assert "/certificates/" not in fragment.text

    def test_an_unknown_impact_is_a_not_found_page(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        for tid in (
            f"{dashboard.account.user_id}-2020-01-01T00:00:00.000Z",
            "not-a-tracking-id",
        ):
            missing = dashboard.get(f"/dashboard/impacts/{tid}")
            assert missing.status_code == 404, tid
            assert "Not found" in visible_text(missing.text)


class TestCancel:
    def test_a_cancel_reverses_the_totals_once(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        made = api.impact("plant_tree", 7, customer_email="jane@example.com")
        api.impact("plant_tree", 100)
        tid = f"{made['user_id']}-{made['time_utc']}"
        before = api.get("/v1/impact").json()

        done = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": "Order refunded"})
        assert done.status_code == 200
        text = visible_text(done.text)
        assert "Impact cancelled." in text
        assert "Cancelled" in text and "Reason: Order refunded" in text
        after = api.get("/v1/impact").json()
        assert after["tree_planted"] == before["tree_planted"] - 7
        assert (
            after["customer_impact"]["tree_planted"]
            == before["customer_impact"]["tree_planted"] - 7
        )
        assert after["user_impact"] == before["user_impact"]
        first = impact_row(db_of(client), tid)
        assert first.cancelled_ms is not None and first.cancellation_reason == "Order refunded"

        twice = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": "again"})
        assert "Impact was already cancelled." in visible_text(twice.text)
        assert api.get("/v1/impact").json() == after
        second = impact_row(db_of(client), tid)
        assert (second.cancelled_ms, second.cancellation_reason) == (
            first.cancelled_ms,
            "Order refunded",
        )
        listed = visible_text(dashboard.page("/dashboard/impacts", status="cancelled"))
        assert "7 trees planted jane@example.com Cancelled" in listed

    def test_the_modal_answers_with_its_own_block_and_asks_the_list_to_refresh(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        made = _api(client, dashboard).impact("clean_ocean", 3)
        tid = f"{made['user_id']}-{made['time_utc']}"
        done = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": ""}, headers=FRAGMENT)
        assert done.status_code == 200
        assert "<html" not in done.text
        assert "Impact cancelled." in visible_text(done.text)
        assert done.headers["HX-Trigger"] == "impactChanged"

    def test_an_impact_past_donation_received_is_not_cancelled(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        received, transferred = (
            f"{m['user_id']}-{m['time_utc']}"
            for m in (api.impact("plant_tree", 2), api.impact("plant_tree", 3))
        )
        advance_impact(db, received, "receive")
        advance_impact(db, transferred, "receive", "transfer")
        page = dashboard.page(f"/dashboard/impacts/{received}")
        assert "Cancel this impact" in visible_text(page)
        before = api.get("/v1/impact").json()

        refused = dashboard.post(f"/dashboard/impacts/{transferred}/cancel", {"reason": "x"})
        assert refused.status_code == FORM_ERROR
        assert (
            "Impact cannot be cancelled: it has already been transferred to the partner; "
            "only impacts that are Initiated or Donation Received can be cancelled"
        ) in visible_text(refused.text)
        assert impact_row(db, transferred).cancelled_ms is None
        assert api.get("/v1/impact").json() == before

        done = dashboard.post(f"/dashboard/impacts/{received}/cancel", {"reason": "x"})
        assert "Impact cancelled." in visible_text(done.text)
        assert api.get("/v1/impact").json()["tree_planted"] == before["tree_planted"] - 2

    def test_a_sandbox_impact_is_where_its_schedule_says(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        (tid,) = record(
            db_of(client),
            dashboard.account,
            [Planned(amount=4, at_ms=now_ms() - 30 * 60_000)],  # well past its four stages
            env="sandbox",
        )
        dashboard.post("/dashboard/env", {"env": "sandbox"})
        refused = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": "late"})
        assert "Impact cannot be cancelled: it has already been completed" in visible_text(
            refused.text
        )
        assert impact_row(db_of(client), tid, "sandbox").cancelled_ms is None

    def test_a_reason_over_200_characters_is_explained_next_to_the_field(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        made = _api(client, dashboard).impact("plant_tree", 2)
        tid = f"{made['user_id']}-{made['time_utc']}"
        refused = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": "r" * 201})
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, "reason") == "The reason can be at most 200 characters"
        assert impact_row(db_of(client), tid).cancelled_ms is None


# Customers and certificates --------------------------------------------------------------


class TestCustomers:
    def test_search_by_email_and_one_customers_page(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        jane = api.impact("plant_tree", 3, customer_email="jane@shop.example", customer_name="Jane")
        api.impact("clean_ocean", 40, customer_email="jane@shop.example")
        api.impact("donate_money", 1234, customer_email="bob@other.example")
        api.impact("plant_tree", 9)  # direct: nobody's

        everyone = visible_text(dashboard.page("/dashboard/customers"))
        assert "(no name) bob@other.example" in everyone and "Jane jane@shop.example" in everyone
        found = dashboard.page("/dashboard/customers", email="SHOP.example")
        assert "jane@shop.example" in visible_text(found)
        assert "bob@other.example" not in visible_text(found)
        assert "No customers match “nobody”." in visible_text(
            dashboard.page("/dashboard/customers", email="nobody")
        )

        customer_id = jane["customer"]["customer_id"]
        assert f'href="/dashboard/customers/{customer_id}"' in found
        page = dashboard.page(f"/dashboard/customers/{customer_id}")
        text = visible_text(page)
        assert "Jane jane@shop.example · customer since" in text and customer_id in text
        assert "Trees planted 3 trees" in text and "Ocean plastic removed 40 lbs" in text
        assert "Donated $0.00" in text
        assert len(listed_impacts(page)) == 2

    def test_a_customers_totals_leave_out_cancelled_impacts(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        kept = api.impact("plant_tree", 3, customer_email="ann@example.com")
        gone = api.impact("plant_tree", 5, customer_email="ann@example.com")
        dashboard.post(f"/dashboard/impacts/{gone['user_id']}-{gone['time_utc']}/cancel")
        page = dashboard.page(f"/dashboard/customers/{kept['customer']['customer_id']}")
        assert "Trees planted 3 trees" in visible_text(page)

    def test_an_unknown_customer_is_a_not_found_page(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        missing = dashboard.get("/dashboard/customers/C0000000000000000")
        assert missing.status_code == 404
        assert "Not found" in visible_text(missing.text)


class TestCertificates:
    def test_every_certificate_with_its_status_and_addresses(self, client: TestClient) -> None:
        db = db_of(client)
        dashboard = signed_in(client)
        api = _api(client, dashboard)
        made = [api.impact("plant_tree", n) for n in (1, 2, 3)]
        tids = [f"{m['user_id']}-{m['time_utc']}" for m in made]
        advance_impact(db, tids[1], "receive", "transfer", "complete")
        dashboard.post(f"/dashboard/impacts/{tids[2]}/cancel")
        _api(client, dashboard, "sandbox").impact("plant_tree", 50)

        page = dashboard.page("/dashboard/certificates")
        text = visible_text(page)
        assert "3 trees planted Void" in text
        assert "2 trees planted Final" in text
        assert "1 tree planted In progress" in text
        assert "50 trees" not in text
        for tid in tids:
            certificate = impact_row(db, tid).certificate_id
            assert f'href="http://testserver/certificates/{certificate}"' in page
            assert f'href="http://testserver/certificates/{certificate}/certificate.pdf"' in page
        final = visible_text(dashboard.page("/dashboard/certificates", status="completed"))
        assert "2 trees planted Final" in final and "1 tree planted" not in final


# Developers ------------------------------------------------------------------------------


class TestApiKeys:
    def test_a_new_key_is_shown_once_works_and_stops_working_when_revoked(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        created = dashboard.post("/dashboard/developers/keys", {"env": "sandbox"})
        assert created.status_code == 200
        found = re.search(r'id="new-key">(oi_test_[^<]+)<', created.text)
        assert found is not None
        key = found.group(1)
        assert "Copy it now: it is shown only this once." in visible_text(created.text)
        whoami = client.get("/v1/whoami", headers={"x-api-key": key})
        assert whoami.status_code == 200
        assert whoami.json()["user_id"] == dashboard.account.user_id

        later = dashboard.page("/dashboard/developers")
        assert key not in later
        (prefix,) = [p for p in key_prefixes(db_of(client), dashboard.account) if key.startswith(p)]
        assert f"<code>{prefix}…</code>" in later

        revoked = dashboard.post(f"/dashboard/developers/keys/{prefix}/revoke")
        assert (revoked.status_code, revoked.headers["location"]) == (
            303,
            f"/dashboard/developers?revoked={prefix}",
        )
        notice = visible_text(dashboard.page(revoked.headers["location"]))
        assert f"Key {prefix}… revoked. Requests with it now get 401." in notice
        refused = client.get("/v1/whoami", headers={"x-api-key": key})
        assert refused.status_code == 401
        assert refused.json()["type"] == "key_error"
        still = client.get("/v1/whoami", headers={"x-api-key": dashboard.account.production_key})
        assert still.status_code == 200

    def test_an_unknown_environment_is_explained_next_to_the_field(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        before = key_prefixes(db_of(client), dashboard.account)
        refused = dashboard.post("/dashboard/developers/keys", {"env": "staging"})
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, "env") == "Choose Production or Sandbox"
        assert key_prefixes(db_of(client), dashboard.account) == before

    def test_a_member_sees_the_keys_but_cannot_create_or_revoke_them(
        self, client: TestClient
    ) -> None:
        owner = signed_in(client)
        member = signed_in(client, owner.account, role="member")
        page = member.page("/dashboard/developers")
        assert "Create key" not in visible_text(page) and ">Revoke<" not in page
        assert "Only owners of the account create and revoke keys." in visible_text(page)
        before = key_prefixes(db_of(client), owner.account)
        prefix = next(iter(before))
        for path, form in (
            ("/dashboard/developers/keys", {"env": "production"}),
            (f"/dashboard/developers/keys/{prefix}/revoke", {}),
        ):
            refused = member.post(path, form)
            assert refused.status_code == 403, path
            assert "Only an owner of the account can do this" in visible_text(refused.text)
        assert key_prefixes(db_of(client), owner.account) == before
        assert ">Revoke<" in owner.page("/dashboard/developers")  # the control: owners do


# Team ------------------------------------------------------------------------------------


class TestTeam:
    def test_an_owner_invites_and_the_link_is_shown(self, client: TestClient) -> None:
        owner = signed_in(client)
        email = unique_email("colleague")
        page = owner.post("/dashboard/team/invite", {"email": email, "role": "member"})
        assert page.status_code == 200
        shown = re.search(r'id="invite-url">([^<]+)<', page.text)
        assert shown is not None and shown.group(1).startswith(
            "http://testserver/dashboard/invite/"
        )
        assert f"{email} Member Invited" in visible_text(page.text)
        invited = browser(client).get(shown.group(1).removeprefix("http://testserver"))
        assert invited.status_code == 200 and email in visible_text(invited.text)

    @pytest.mark.parametrize(
        ("form", "name", "message"),
        [
            (
                {"email": "not-an-email", "role": "member"},
                "email",
                "Enter an email address like name@example.com",
            ),
            ({"email": "ok@example.com", "role": "admin"}, "role", "Must be one of owner, member"),
        ],
    )
    def test_a_bad_invitation_is_explained_next_to_the_field(
        self, client: TestClient, form: dict[str, str], name: str, message: str
    ) -> None:
        owner = signed_in(client)
        refused = owner.post("/dashboard/team/invite", form)
        assert refused.status_code == FORM_ERROR
        assert field_error(refused.text, name) == message
        assert form["email"] not in visible_text(refused.text).split("Invite someone")[0]

    def test_an_active_member_cannot_be_invited_again(self, client: TestClient) -> None:
        owner = signed_in(client)
        _, email = add_user(db_of(client), owner.account, role="member")
        refused = owner.post("/dashboard/team/invite", {"email": email, "role": "owner"})
        assert (
            field_error(refused.text, "email")
            == f"The address {email} is already a member of this account"
        )

    def test_a_member_may_not_invite_or_remove(self, client: TestClient) -> None:
        owner = signed_in(client)
        member = signed_in(client, owner.account, role="member")
        page = member.page("/dashboard/team")
        assert "Invite someone" not in visible_text(page) and ">Remove<" not in page
        email = unique_email("sneaky")
        for path, form in (
            ("/dashboard/team/invite", {"email": email, "role": "owner"}),
            (f"/dashboard/team/{owner.user_pk}/remove", {}),
        ):
            refused = member.post(path, form)
            assert refused.status_code == 403, path
            assert "Only an owner of the account can do this" in visible_text(refused.text)
        assert user_row(db_of(client), owner.user_pk) is not None
        assert email not in owner.page("/dashboard/team")

    def test_the_last_owner_cannot_be_removed(self, client: TestClient) -> None:
        owner = signed_in(client)
        refused = owner.post(f"/dashboard/team/{owner.user_pk}/remove")
        assert refused.status_code == FORM_ERROR
        assert (
            "The last owner who can sign in cannot be removed; make another owner first"
            in visible_text(refused.text)
        )
        assert user_row(db_of(client), owner.user_pk) is not None
        assert owner.get("/dashboard").status_code == 200

    def test_an_owner_removes_a_member_whose_sessions_end(self, client: TestClient) -> None:
        owner = signed_in(client)
        member = signed_in(client, owner.account, role="member")
        done = owner.post(f"/dashboard/team/{member.user_pk}/remove")
        assert (done.status_code, done.headers["location"]) == (303, "/dashboard/team?removed=1")
        page = owner.page(done.headers["location"])
        assert "Removed from the account." in visible_text(page)
        assert member.email not in page
        assert user_row(db_of(client), member.user_pk) is None
        ended = member.get("/dashboard")
        assert ended.status_code == 303 and ended.headers["location"].startswith("/dashboard/login")

    def test_an_owner_who_removes_themselves_is_signed_out(self, client: TestClient) -> None:
        leaving = signed_in(client)
        staying = signed_in(client, leaving.account, role="owner")
        done = leaving.post(f"/dashboard/team/{leaving.user_pk}/remove")
        assert (done.status_code, done.headers["location"]) == (303, "/dashboard/login")
        cleared = set_cookie(done, "oi_session")
        assert cleared is not None and cleared["max-age"] == "0"
        assert user_row(db_of(client), leaving.user_pk) is None
        assert leaving.email not in staying.page("/dashboard/team")


# The environment switch ------------------------------------------------------------------


class TestEnvironmentSwitch:
    def test_production_is_the_default_and_the_switch_changes_every_page(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client)
        db = db_of(client)
        (live,) = record(
            db, dashboard.account, [Planned(amount=11, customer_email="live@example.com")]
        )
        (test,) = record(
            db,
            dashboard.account,
            [Planned(amount=22, customer_email="test@example.com")],
            "sandbox",
        )
        page = dashboard.page("/dashboard/impacts")
        assert 'aria-pressed="true"' in button(page, "Production")
        assert listed_impacts(page) == [live]
        assert "Test data" not in visible_text(page)
        assert "live@example.com" in visible_text(dashboard.page("/dashboard/customers"))
        assert "test@example.com" not in visible_text(dashboard.page("/dashboard/customers"))

        switched = dashboard.post(
            "/dashboard/env", {"env": "sandbox", "next": "/dashboard/impacts"}
        )
        assert (switched.status_code, switched.headers["location"]) == (303, "/dashboard/impacts")
        page = dashboard.page("/dashboard/impacts")
        assert 'aria-pressed="true"' in button(page, "Sandbox")
        assert 'aria-pressed="false"' in button(page, "Production")
        assert listed_impacts(page) == [test]
        text = visible_text(page)
        assert "Sandbox · Test data: nothing shown here is real impact" in text
        assert "All impacts, direct and on behalf of customers Test data" in text
        assert "<title>Impacts (sandbox) · OpenImpact</title>" in page
        customers = visible_text(dashboard.page("/dashboard/customers"))
        assert "test@example.com" in customers and "live@example.com" not in customers
        assert "Test data" in customers
        overview = dashboard.page("/dashboard")
        assert _stat_card(overview, "tree_planted") == ("22", "0", "22")
        assert listed_impacts(overview) == [test]
        certificates = visible_text(dashboard.page("/dashboard/certificates"))
        assert "Sandbox impacts are test data and have no certificates." in certificates
        exported = dashboard.get("/dashboard/impacts.csv")
        assert [r["tracking_id"] for r in _csv(exported)] == [test]
        assert "openimpact-sandbox-impacts-" in exported.headers["content-disposition"]
        assert dashboard.get(f"/dashboard/impacts/{live}").status_code == 404

        # The switch belongs to this browser's session only; a new sign-in starts in production.
        elsewhere = again(dashboard)
        assert listed_impacts(elsewhere.page("/dashboard/impacts")) == [live]
        dashboard.post("/dashboard/env", {"env": "production"})
        assert listed_impacts(dashboard.page("/dashboard/impacts")) == [live]

    @pytest.mark.parametrize(
        ("next_url", "destination"),
        [
            ("/dashboard/impacts/U1-2026-01-01T00:00:00.000Z", "/dashboard/impacts"),
            ("/dashboard/customers/C123", "/dashboard/customers"),
            ("/dashboard/team", "/dashboard/team"),
            ("https://evil.example/", "/dashboard"),
        ],
    )
    def test_after_the_switch_the_person_stays_where_it_makes_sense(
        self, client: TestClient, next_url: str, destination: str
    ) -> None:
        dashboard = signed_in(client)
        done = dashboard.post("/dashboard/env", {"env": "sandbox", "next": next_url})
        assert (done.status_code, done.headers["location"]) == (303, destination)

    def test_an_unknown_environment_changes_nothing(self, client: TestClient) -> None:
        dashboard = signed_in(client)
        refused = dashboard.post("/dashboard/env", {"env": "staging"})
        assert refused.status_code == 400
        assert "Env: must be production or sandbox" in visible_text(refused.text)
        page = dashboard.page("/dashboard")
        assert 'aria-pressed="true"' in button(page, "Production")


# Escaping --------------------------------------------------------------------------------


def _never_raw(html: str, where: str) -> None:
    for raw in (XSS_IMG, XSS_SCRIPT, "<script>alert(1)", "<img src=x"):
        assert raw not in html, (where, raw)


class TestEscaping:
    def test_what_api_callers_send_is_shown_escaped_never_as_markup(
        self, client: TestClient
    ) -> None:
        dashboard = signed_in(client, name=XSS_IMG)
        made = _api(client, dashboard).impact(
            "plant_tree",
            2,
            customer_email="xss@example.com",
            customer_name=XSS_IMG,
            metadata={XSS_SCRIPT: XSS_IMG, "note": XSS_SCRIPT},
        )
        tid = f"{made['user_id']}-{made['time_utc']}"
        cancelled = dashboard.post(f"/dashboard/impacts/{tid}/cancel", {"reason": XSS_SCRIPT})
        assert cancelled.status_code == 200
        customer = f"/dashboard/customers/{made['customer']['customer_id']}"
        pages = {
            "cancel answer": cancelled,
            "overview": dashboard.get("/dashboard"),
            "impacts": dashboard.get("/dashboard/impacts"),
            "track": dashboard.get(f"/dashboard/impacts/{tid}"),
            "track fragment": dashboard.client.get(f"/dashboard/impacts/{tid}", headers=FRAGMENT),
            "customers": dashboard.get("/dashboard/customers"),
            "customer": dashboard.get(customer),
            "filters echoed": dashboard.get("/dashboard/impacts", customer=XSS_SCRIPT),
            "search echoed": dashboard.get("/dashboard/customers", email=XSS_SCRIPT),
        }
        escaped_img = "&lt;img src=x onerror=alert(1)&gt;"
        escaped_script = "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"
        for where, response in pages.items():
            assert response.status_code in (200, FORM_ERROR), where
            _never_raw(response.text, where)
            assert escaped_img in response.text, where  # the account name, in the header
        track = pages["track fragment"].text
        assert f"<dt>{escaped_script}</dt><dd>{escaped_img}</dd>" in track
        assert f"<dt>note</dt><dd>{escaped_script}</dd>" in track
        assert f"Reason: {escaped_script}" in track
        assert f">{escaped_img}</a>" in track  # the customer's name
        assert visible_text(track).count(XSS_SCRIPT) >= 3  # and a person reads it as typed
        assert f'value="{escaped_script}"' in pages["filters echoed"].text.replace("&#39;", "'")
        assert escaped_script in pages["search echoed"].text

    def test_an_invited_address_is_shown_escaped(self, client: TestClient) -> None:
        owner = signed_in(client)
        email = "<script>alert(1)</script>@example.com"
        page = owner.post("/dashboard/team/invite", {"email": email, "role": "member"})
        assert page.status_code == 200
        _never_raw(page.text, "team")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;@example.com" in page.text
        assert f"{email} is invited as member." in visible_text(page.text)
        shown = re.search(r'id="invite-url">([^<]+)</code>', page.text)
        assert shown is not None
        invitation = browser(client).get(shown.group(1).removeprefix("http://testserver"))
        _never_raw(invitation.text, "invitation")
        assert email in visible_text(invitation.text)
        assert csrf_token(invitation)
