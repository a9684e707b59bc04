"""The dashboard in real headless Chromium, against a real server on SQLite
and on PostgreSQL: a person accepts an invitation, signs in, reads the
overview, filters impacts, opens the track modal, cancels an impact, creates
and revokes a key, exports CSV and signs out. Pages are found by their labels,
roles and visible text, as a person finds them."""

from __future__ import annotations

import csv
import io
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from tests.browser import ConsoleLog, chromium, screenshot  # noqa: F401 (fixture)
from tests.conftest import BACKENDS
from tests.live import LiveServer, create_account, openimpact, server_env
from tests.webhooks.receiver import running

PASSWORD = "correct horse battery staple"
# Markup that would run if any page showed it unescaped.
PAYLOAD_NAME = '<img src=x onerror="window.__xss=1">Jane'
PAYLOAD_META = '"><script>window.__xss=2</script>'
VIDEO = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"


@dataclass
class Site:
    backend: str
    server: LiveServer
    env: dict[str, str]
    account: dict[str, str]
    email: str
    invite_url: str
    completed: dict[str, Any]  # the POST answer of an impact taken to Completed
    cancellable: dict[str, Any]

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, path: str, **params: Any) -> dict[str, Any]:
        response = httpx.get(
            self.url + path, params=params, headers={"x-api-key": self.account["production_key"]}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())


def _post(server: LiveServer, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.url + path, json=body, headers={"x-api-key": key})
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module", params=BACKENDS)
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    database = request.getfixturevalue(f"{request.param}_database")
    # Webhook endpoints may be on 127.0.0.1: the tests' receiver listens there.
    env = server_env(
        database.url,
        OPENIMPACT_BACKGROUND_WORKER="false",
        OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE="true",
    )
    server = LiveServer(env).start()
    try:
        tag = secrets.token_hex(4)
        account = create_account(env, f"shop-{tag}@example.com")
        email = f"owner-{tag}@example.com"
        invited = json.loads(
            openimpact(
                [
                    *("users", "invite", "--user-id", account["user_id"], "--email", email),
                    *("--role", "owner", "--base-url", server.url, "--json"),
                ],
                env,
            ).stdout
        )
        key = account["production_key"]
        completed = _post(
            server,
            key,
            "/v1/plant_tree",
            {
                "amount": 12,
                "category": "food",
                "customer_email": f"jane-{tag}@example.com",
                "customer_name": PAYLOAD_NAME,
                "metadata": {"order_id": PAYLOAD_META, "source": "shop"},
            },
        )
        tid = f"{account['user_id']}-{completed['time_utc']}"
        for action, extra in (("receive", []), ("transfer", []), ("complete", ["--video", VIDEO])):
            openimpact(["lifecycle", action, "--tracking-id", tid, *extra], env)
        _post(server, key, "/v1/clean_ocean", {"amount": 1500})
        _post(
            server,
            key,
            "/v1/capture_carbon",
            {"amount": 2300, "customer_email": f"sam-{tag}@example.com"},
        )
        _post(server, key, "/v1/donate_money", {"amount": 123456})
        _post(server, key, "/v1/restore_coral", {"amount": 7})
        cancellable = _post(server, key, "/v1/plant_tree", {"amount": 3})
        yield Site(
            request.param,
            server,
            env,
            account,
            email,
            invited["invite_url"],
            completed,
            cancellable,
        )
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(site: Site, chromium: Any) -> Iterator[Any]:  # noqa: F811 (fixture)
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log = ConsoleLog()
    log.watch(page)
    page.console_log = log
    # The invitation: a field labelled "Password" and a button "Set password".
    page.goto(site.invite_url)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(site.url + "/dashboard")
    yield page
    context.close()


def _no_problems(page: Any) -> None:
    assert page.console_log.problems == []
    assert page.evaluate("window.__xss") is None, "a stored payload ran as script"


def _focus_is_back_on_a_row(page: Any) -> None:
    # The dialog's close event runs after Esc: wait for it, briefly.
    page.wait_for_function(
        "document.activeElement && document.activeElement.classList.contains('row-link')",
        timeout=3000,
    )


def _figure(impact_type: str, amount: int) -> str:
    if impact_type == "money_donated":
        return f"${amount // 100:,}.{amount % 100:02d}"
    return f"{amount:,}"


class TestOverview:
    def test_totals_are_the_exact_figures_of_the_api(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard")
        totals = site.api("/v1/impact")
        for impact_type, label in (
            ("tree_planted", "Trees planted"),
            ("waste_removed", "Ocean plastic removed"),
            ("carbon_captured", "Carbon captured"),
            ("coral_restored", "Coral restored"),
            ("money_donated", "Donated"),
        ):
            card = page.get_by_role("region", name=label)
            assert card.locator(".figure").inner_text() == _figure(impact_type, totals[impact_type])
            assert _figure(impact_type, totals["user_impact"][impact_type]) in card.inner_text()
            assert _figure(impact_type, totals["customer_impact"][impact_type]) in card.inner_text()
        assert "1,500" in page.get_by_role("region", name="Ocean plastic removed").inner_text()
        page.locator("#daily-chart canvas").wait_for(timeout=5000)  # the chart rendered
        screenshot(page, f"dashboard-overview-{site.backend}")
        _no_problems(page)

    def test_the_chart_follows_the_chosen_type(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard")
        page.get_by_label("Impact type", exact=True).select_option("waste_removed")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url("**metric=waste_removed**")
        page.locator("#daily-chart canvas").wait_for(timeout=5000)
        assert "1,500 lbs in all" in page.locator("#chart-card").inner_text()
        _no_problems(page)


class TestImpacts:
    def test_filters_narrow_the_table(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard/impacts")
        rows = page.locator("table.impacts-table tbody tr")
        assert rows.count() == 6
        page.get_by_label("Type", exact=True).select_option("tree_planted")
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_url("**type=tree_planted**")
        assert rows.count() == 2
        page.get_by_label("Stage", exact=True).select_option("completed")
        page.get_by_role("button", name="Apply filters").click()
        page.wait_for_url("**stage=completed**")
        assert rows.count() == 1
        assert "12 food trees planted" in rows.first.inner_text()
        # The customer's name is shown as text, markup and all.
        assert PAYLOAD_NAME in rows.first.inner_text()
        screenshot(page, f"dashboard-impacts-{site.backend}")
        _no_problems(page)

    def test_csv_export_holds_exactly_the_filtered_set(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard/impacts?type=tree_planted")
        with page.expect_download() as download:
            page.get_by_role("link", name="Export CSV").click()
        text = Path(download.value.path()).read_text(encoding="utf-8")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert sorted(r["amount"] for r in rows) == ["12", "3"]
        assert {r["impact_type"] for r in rows} == {"tree_planted"}
        food = next(r for r in rows if r["amount"] == "12")
        assert food["customer_name"] == PAYLOAD_NAME
        assert json.loads(food["metadata"])["order_id"] == PAYLOAD_META

    def test_the_track_modal_shows_what_track_returns(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard/impacts?stage=completed")
        row_link = page.locator("a.row-link").first
        row_link.click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        track = site.api(
            "/v1/track", user_id=site.account["user_id"], time_utc=site.completed["time_utc"]
        )
        assert page.url.endswith("/dashboard/impacts/" + track["tracking_id"].replace(":", "%3A"))
        assert dialog.get_by_role("heading", name="12 food trees planted").is_visible()
        # The map is the iframe of location_map, the partner is named.
        assert dialog.locator("iframe.map").get_attribute("src") == track["location_map"]
        assert track["assigned_agent"] in dialog.get_by_role("region", name="Partner").inner_text()
        # The four stages with their dates.
        timeline = dialog.get_by_role("region", name="Timeline").inner_text()
        for label, field in (
            ("Initiated", "impact_initiated"),
            ("Donation Received", "donation_available"),
            ("Transferred to Partner", "donation_sent"),
            ("Completed", "impact_completed"),
        ):
            assert label in timeline
            assert track[field][:10] in timeline
        # The video is embedded, the live session dated.
        assert "youtube-nocookie.com/embed/dQw4w9WgXcQ" in (
            dialog.locator("iframe.video").get_attribute("src") or ""
        )
        assert track["live_session_date"][:10] in dialog.inner_text()
        # The certificate: the page it links to is this impact's.
        certificate = dialog.get_by_role("region", name="Certificate")
        href = certificate.get_by_role("link", name="Open certificate").get_attribute("href")
        certificate_id = href.rsplit("/", 1)[1]
        verified = httpx.get(f"{site.url}/v1/certificates/{certificate_id}").json()
        assert verified["tracking_id"] == track["tracking_id"]
        assert verified["status"] == "completed"
        assert certificate.get_by_role("button", name="Copy link").is_visible()
        assert certificate.get_by_role("link", name="Share on LinkedIn").is_visible()
        assert PAYLOAD_META in dialog.get_by_role("region", name="Metadata").inner_text()
        # A completed impact can no longer be cancelled.
        assert dialog.get_by_role("button", name="Cancel impact").count() == 0
        screenshot(page, f"dashboard-track-{site.backend}")
        # Esc closes it, the list's address comes back, focus returns to the row.
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        page.wait_for_url("**/dashboard/impacts?stage=completed")
        _focus_is_back_on_a_row(page)
        _no_problems(page)

    def test_keyboard_alone_opens_and_closes_the_modal(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard/impacts")
        page.locator("a.row-link").first.focus()
        page.keyboard.press("Enter")
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        page.keyboard.press("Escape")
        dialog.wait_for(state="hidden")
        _focus_is_back_on_a_row(page)

    def test_cancel_from_the_modal_reverses_the_totals(self, site: Site, page: Any) -> None:
        before = site.api("/v1/impact")["tree_planted"]
        tid = f"{site.account['user_id']}-{site.cancellable['time_utc']}"
        page.goto(site.url + "/dashboard/impacts/" + tid)
        dialog = page.get_by_role("dialog")
        dialog.wait_for()
        dialog.get_by_label("Reason (optional)", exact=True).fill("Order refunded <b>twice</b>")
        dialog.get_by_role("button", name="Cancel impact").click()
        dialog.get_by_text("Impact cancelled.").wait_for()
        assert (
            "Order refunded <b>twice</b>"
            in dialog.get_by_role("region", name="Timeline").inner_text()
        )
        assert site.api("/v1/impact")["tree_planted"] == before - 3
        # Closing shows the list again, now with the impact marked cancelled.
        with page.expect_navigation():
            page.keyboard.press("Escape")
        assert page.url == site.url + "/dashboard/impacts"
        assert page.locator("tr.is-cancelled").get_by_text("3 trees planted").is_visible()
        _no_problems(page)


class TestDevelopers:
    def test_create_and_revoke_a_key(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard/developers")
        page.get_by_label("Environment", exact=True).select_option("sandbox")
        page.get_by_role("button", name="Create key").click()
        key = page.locator("#new-key").inner_text()
        assert key.startswith("oi_test_")
        who = httpx.get(site.url + "/v1/whoami", headers={"x-api-key": key})
        assert who.status_code == 200
        assert who.json()["user_id"] == site.account["user_id"]
        # The quickstart is filled in with the new key and this server.
        assert f'OneClickImpact("{key}", Environment.SANDBOX)' in page.inner_text("main")
        assert f'sdk.base_url = "{site.url}"' in page.inner_text("main")
        page.once("dialog", lambda confirm: confirm.accept())
        page.get_by_role("button", name=f"Revoke {key[:16]}").click()
        page.wait_for_url("**revoked=**")
        assert httpx.get(site.url + "/v1/whoami", headers={"x-api-key": key}).status_code == 401
        screenshot(page, f"dashboard-developers-{site.backend}")
        _no_problems(page)


class TestWebhooks:
    def test_add_an_endpoint_send_a_test_event_and_read_the_log(
        self, site: Site, page: Any
    ) -> None:
        with running() as rx:
            page.goto(site.url + "/dashboard/webhooks")
            page.get_by_label("URL", exact=True).fill(rx.url)
            page.get_by_label("Description (optional)", exact=True).fill(PAYLOAD_NAME)
            page.get_by_label("impact.completed", exact=True).check()
            page.get_by_role("button", name="Add endpoint").click()
            page.wait_for_url("**/dashboard/webhooks/we_*?created=1")
            endpoint = page.get_by_role("region", name="Endpoint", exact=True)
            assert rx.url in endpoint.inner_text()
            assert PAYLOAD_NAME in endpoint.inner_text()  # as text, markup and all
            # The secret is in no page until asked for.
            assert page.locator("#webhook-secret").count() == 0
            page.get_by_role("button", name="Reveal secret").click()
            secret = page.locator("#webhook-secret").inner_text()
            assert secret.startswith("whsec_")

            page.get_by_role("button", name="Send test event").click()
            result = page.get_by_role("region", name="Test event Succeeded")
            result.wait_for()
            (got,) = rx.wait_for(1)
            assert got.json["type"] == "ping"
            Webhook(secret).verify(got.body, got.headers)
            assert got.headers["webhook-id"] in result.inner_text()
            assert "Status code\n200" in result.inner_text()
            log = page.get_by_role("region", name="Delivery log")
            assert got.headers["webhook-id"] in log.inner_text()
            screenshot(page, f"dashboard-webhook-{site.backend}")
            page.goto(site.url + "/dashboard/webhooks")
            assert rx.url in page.get_by_role("region", name="Endpoints").inner_text()
            screenshot(page, f"dashboard-webhooks-{site.backend}")
            _no_problems(page)


class TestNarrowScreens:
    @pytest.mark.parametrize(
        "path",
        [
            *("", "/impacts", "/customers", "/certificates", "/profile", "/developers"),
            *("/webhooks", "/team"),
        ],
    )
    def test_readable_at_375_px(self, site: Site, page: Any, path: str) -> None:
        page.set_viewport_size({"width": 375, "height": 800})
        try:
            page.goto(site.url + "/dashboard" + path)
            overflow = page.evaluate("document.documentElement.scrollWidth")
            assert overflow <= 375, f"{path or '/'} is {overflow}px wide at 375px"
            screenshot(page, f"dashboard{path.replace('/', '-') or '-overview'}-375-{site.backend}")
            _no_problems(page)
        finally:
            page.set_viewport_size({"width": 1280, "height": 900})


class TestSignInAndOut:
    def test_sign_out_then_sign_in_with_the_form(self, site: Site, page: Any) -> None:
        page.goto(site.url + "/dashboard")
        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url("**/dashboard/login**")
        page.goto(site.url + "/dashboard/impacts")
        assert "/dashboard/login" in page.url  # signed out for real
        page.get_by_label("Email", exact=True).fill(site.email)
        page.get_by_label("Password", exact=True).fill("not the password")
        page.get_by_role("button", name="Sign in").click()
        assert (
            page.get_by_role("alert").inner_text().startswith("The email or password is not right")
        )
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(site.url + "/dashboard/impacts")
        screenshot(page, f"dashboard-signed-in-{site.backend}")
        _no_problems(page)
