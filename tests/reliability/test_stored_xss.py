"""Stored script injection, end to end, in real headless Chromium.

Markup is written into every field a merchant (or the merchant's customers,
or the merchant's webhook receiver) controls: through the API where there is
one, through the dashboard's forms where there is not. Then every surface
that shows those fields is opened in Chromium twice: once as served (strict
CSP) and once with the CSP bypassed, so that the CSP cannot hide a defect of
the escaping. On every page:

- ``window.__xss`` stays undefined and no dialog opens (nothing ran);
- no Content-Security-Policy violation is reported (an inline script or
  handler the CSP had to block would mean a payload reached the markup);
- no element carries an ``on*`` attribute holding a payload, no script
  element holds one, and no ``href``/``src``/``action`` starts ``javascript:``
  (no attribute or URL broke out);
- the payload text is shown literally where the page shows the field (it was
  escaped, not dropped; ``{{7*7}}`` is not evaluated).

The emails are composed with the functions the worker uses, from the outbox
messages the scenario queued, and their HTML parts opened the same way.

Fields: account name (operator CLI: merchants cannot change it, but it is
shown everywhere), the dashboard user's email, a team invitee's email,
customer name and email, metadata keys and values, the cancel reason (API
and dashboard), schedule customer name, email and metadata, webhook URL and
description, the webhook receiver's answer (delivery log), public profile
name and logo URL. Reflected inputs are checked too: refused forms shown
again with what was typed (profile, webhook, schedule, sign-in, reset), the
customer search, 404 pages of typed addresses and the badge's ``label``.
Not covered: what only the operator writes besides the account name
(projects, partners, lifecycle notes and video links).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.budgets import emails as budget_emails
from openimpact.config import driver_url
from openimpact.db import Database
from openimpact.notifications import service as mail
from openimpact.outbox.models import OutboxMessage
from openimpact.users import emails as user_emails
from openimpact.webhooks import emails as webhook_emails
from tests.browser import ConsoleLog, chromium  # noqa: F401 (fixture)
from tests.conftest import BACKENDS
from tests.factories import default_prices
from tests.live import LiveServer, free_port, server_env
from tests.live import openimpact as _cli
from tests.webhooks.receiver import Answer, Received, Receiver, running

SHOTS = Path("/tmp/xss-shots")
PASSWORD = "correct horse battery staple"

# Payloads --------------------------------------------------------------------------------------

SCRIPT = "<script>window.__xss=1</script>"
IMG = '"><img src=x onerror="window.__xss=1">'
SVG = "'><svg onload=window.__xss=1>"
JS_URL = "javascript:window.__xss=1"
TITLE = "</title><script>window.__xss=1</script>"
TEMPLATE = "{{7*7}}"
# For a value inside an inline script or JSON block: a line separator (a line
# end in JavaScript before ES2019, and in some JSON-in-script embeddings) and
# a closing script tag.
LINE_SEP = "\u2028</script><script>window.__xss=1</script>"
# Every payload in one value (the limit of most fields is 200 characters).
ALL = " ".join((SCRIPT, IMG, SVG, TITLE, TEMPLATE, LINE_SEP))
assert len(ALL) <= 200, len(ALL)

# Emails have no spaces and one "@": the payloads without spaces.
EMAIL_PAYLOADS = (
    "<script>window.__xss=1</script>@x.test",
    '"><svg/onload=window.__xss=1>@x.test',
    "'><svg/onload=window.__xss=1>@x.test",
    "</title><script>window.__xss=1</script>@x.test",
    "{{7*7}}@x.test",
)
# Customer names, one per customer above (no "@": certificates drop names that
# look like emails, and these must be shown).
NAMES = (ALL, IMG, SVG, TITLE, f"{TEMPLATE} {LINE_SEP}")
# Metadata: every payload as a key (at most 40 characters) and as a value.
METADATA = {
    SCRIPT: IMG,
    IMG: SVG,
    SVG: TITLE,
    TITLE: TEMPLATE,
    TEMPLATE: LINE_SEP,
    "\u2028</script><svg onload=window.__xss=1>": SCRIPT,
    "everything": f"{ALL} {JS_URL}",
    "link": JS_URL,
}
# URL-ish fields: what survives their validation (no spaces).
URL_TAIL = "?q=\"><svg/onload=window.__xss=1>'><svg/onload=window.__xss=1></title>{{7*7}}"
# The webhook receiver's answer, shown in the delivery log.
ANSWER = (
    '<script>window.__xss=1</script><img src=x onerror="window.__xss=1"></title>'
    "'><svg onload=window.__xss=1>{{7*7}}\u2028</script>"
)


def norm(text: str) -> str:
    """Whitespace as one space (pages collapse it; U+2028 is whitespace too)."""
    return " ".join(text.split())


# The browser side -----------------------------------------------------------------------------

# Added to every page and frame before any of its own scripts (Playwright
# injects it through the DevTools protocol: no CSP applies to it).
_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI + " " + (e.sample || ""));
});
"""

# Every element of the document and of its shadow roots.
_SCAN = """
() => {
  const bad = [];
  const urlAttrs = ["href", "src", "action", "formaction", "xlink:href", "data", "poster"];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      for (const a of el.attributes) {
        const name = a.name.toLowerCase();
        if (name.startsWith("on") && a.value.includes("__xss")) {
          bad.push(`<${el.localName} ${name}="${a.value}">`);
        }
        const url = a.value.replace(/[\\u0000-\\u0020]/g, "").toLowerCase();
        if (urlAttrs.includes(name) && url.startsWith("javascript:")) {
          bad.push(`<${el.localName} ${name}="${a.value}">`);
        }
      }
      if (el.localName === "script" && el.textContent.includes("__xss")) {
        bad.push(`<script>${el.textContent.slice(0, 80)}`);
      }
      if (el.shadowRoot) { walk(el.shadowRoot); }
    }
  };
  walk(document);
  return bad;
}
"""

# The text a person reads: the page's, its shadow roots' and its title.
_TEXT = """
() => {
  const parts = [document.title];
  const walk = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.shadowRoot) { parts.push(el.shadowRoot.textContent); walk(el.shadowRoot); }
    }
  };
  parts.push(document.body ? document.body.innerText : document.documentElement.textContent);
  walk(document);
  return parts.join("\\n");
}
"""


@dataclass
class Tab:
    """A signed-in page, and what happened on it."""

    name: str  # "strict" (the CSP as served) or "bypass" (no CSP)
    page: Any
    dialogs: list[str] = field(default_factory=list)
    log: ConsoleLog = field(default_factory=ConsoleLog)

    @classmethod
    def of(cls, name: str, context: Any) -> Tab:
        context.add_init_script(_WATCH)
        tab = cls(name, context.new_page())
        tab.log.watch(tab.page)

        def dialog(d: Any) -> None:
            tab.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        tab.page.on("dialog", dialog)
        return tab

    def clear(self) -> None:
        self.dialogs.clear()
        self.log.problems.clear()

    def check(self, where: str, shown: tuple[str, ...] = ()) -> None:
        """Nothing ran, nothing broke out, and ``shown`` reads literally."""
        page = self.page
        problems: list[str] = []
        for frame in page.frames:
            if frame.url.startswith(("chrome-error:", "https:")):
                continue  # an offline embed (map, video): another origin's page
            try:
                if frame.evaluate("typeof window.__xss") != "undefined":
                    problems.append(f"window.__xss set in {frame.url}")
                problems += [f"CSP: {v}" for v in frame.evaluate("window.__csp || []")]
                problems += frame.evaluate(_SCAN)
            except Exception as exc:
                if "detached" not in str(exc).lower():
                    raise
        problems += [f"dialog {d}" for d in self.dialogs]
        # Pages without an icon of their own: the browser asks /favicon.ico anyway.
        problems += [p for p in self.log.problems if not p.endswith("/favicon.ico)")]
        self.clear()
        assert problems == [], f"{where} ({self.name}): {problems}"
        text = norm(page.evaluate(_TEXT))
        missing = [value for value in shown if norm(value) not in text]
        assert missing == [], f"{where} ({self.name}) does not show {missing!r} as text"


@dataclass
class Site:
    backend: str
    server: LiveServer
    env: dict[str, str]
    database_url: str
    tag: str
    user_id: str
    key: str
    owner_email: str
    team_email: str
    slug: str
    profile_name: str
    logo_url: str
    tracking: dict[str, str]  # name -> tracking id
    customers: list[dict[str, Any]]  # as /v1/customers lists them, in EMAIL_PAYLOADS order
    schedule_customer: tuple[str, str]  # (email, name)
    webhooks: dict[str, dict[str, Any]]  # "log", "gone" -> the endpoint
    customer_page_url: str
    tabs: list[Tab]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def header(self) -> tuple[str, ...]:
        """What every dashboard page shows: the account's name and the user's email."""
        return (ALL, self.owner_email)

    def visit(
        self, path: str, shown: tuple[str, ...] = (), wait: str | None = None, status: int = 200
    ) -> None:
        for tab in self.tabs:
            tab.clear()
            response = tab.page.goto(self.url + path if path.startswith("/") else path)
            assert response is not None and response.status == status, (path, response)
            if wait:
                tab.page.locator(wait).first.wait_for()
            if status >= 400:  # the browser reports the page's own status as an error
                tab.log.problems = [p for p in tab.log.problems if f"status of {status}" not in p]
            tab.check(path, shown)


def openimpact(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return _cli(args, env)
    except subprocess.CalledProcessError as exc:
        raise AssertionError(f"openimpact {args[:2]}: {exc.stderr}") from None


def _post(server: LiveServer, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(server.url + path, json=body, headers={"x-api-key": key}, timeout=30)
    assert response.status_code in (200, 201, 202), (path, response.text)
    return dict(response.json())


def _answer(got: Received) -> Answer:
    status = 410 if "/gone" in got.path else 200
    return status, {"content-type": "text/html"}, ANSWER.encode()


def _tid(user_id: str, made: dict[str, Any]) -> str:
    return f"{user_id}-{made['time_utc']}"


@pytest.fixture(scope="module", params=BACKENDS)
def site(
    request: pytest.FixtureRequest,
    chromium: Any,  # noqa: F811 (fixture)
) -> Iterator[Site]:
    database = request.getfixturevalue(f"{request.param}_database")
    env = server_env(
        database.url,
        OPENIMPACT_BACKGROUND_WORKER="false",
        OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE="true",
        # Invitations and resets are queued only with an SMTP server; the
        # worker is off, so nothing is ever sent to it.
        OPENIMPACT_SMTP_URL=f"smtp://127.0.0.1:{free_port()}",
    )
    server = LiveServer(env).start()
    contexts: list[Any] = []
    receiver = Receiver(respond=_answer)
    db = Database(driver_url(database.url), pool_size=1)
    try:
        # The budget email is made with a $10 cap: at the default prices.
        with running(receiver) as rx, default_prices(db):
            yield _scenario(request.param, server, env, database.url, chromium, contexts, rx)
    finally:
        db.dispose()
        for context in contexts:
            context.close()
        server.stop()


def _scenario(
    backend: str,
    server: LiveServer,
    env: dict[str, str],
    database_url: str,
    chromium: Any,  # noqa: F811 (fixture)
    contexts: list[Any],
    rx: Receiver,
) -> Site:
    tag = secrets.token_hex(4)
    # The account's name: set by the operator, shown on every dashboard page and email.
    account = json.loads(
        openimpact(
            ["accounts", "create", "--email", f"shop-{tag}@x.test", "--name", ALL, "--json"], env
        ).stdout
    )
    user_id, key = account["user_id"], account["production_key"]
    owner_email = f"'\"><svg/onload=window.__xss=1>{tag}@x.test"
    invited = json.loads(
        openimpact(
            [
                *("users", "invite", "--user-id", user_id, "--email", owner_email),
                *("--role", "owner", "--base-url", server.url, "--json"),
            ],
            env,
        ).stdout
    )

    # Impacts on behalf of five customers, with metadata; one cancelled with a reason.
    tracking: dict[str, str] = {}
    for index, (kind, email, name) in enumerate(
        zip(
            ("plant_tree", "clean_ocean", "capture_carbon", "restore_coral", "plant_tree"),
            EMAIL_PAYLOADS,
            NAMES,
            strict=True,
        )
    ):
        body: dict[str, Any] = {"amount": 3 + index, "customer_email": email, "customer_name": name}
        if index in (0, 3):
            body["metadata"] = METADATA
        tracking[f"c{index}"] = _tid(user_id, _post(server, key, f"/v1/{kind}", body))
    cancelled = tracking["c1"]
    made = dict(zip(("user_id", "time_utc"), cancelled.split("-", 1), strict=True))
    _post(server, key, "/v1/cancel_impact", {**made, "reason": ALL})

    # A schedule on behalf of a sixth customer, run once: its impact carries its metadata.
    schedule_customer = ("x\"'><svg/onload=window.__xss=1>@sched.test", ALL)
    # Due today, or (days 29 to 31, past the last day a schedule may name) on the
    # 1st of next month, where the run is dated.
    today = datetime.now(UTC).date()
    due = today if today.day <= 28 else (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    _post(
        server,
        key,
        "/v1/schedules",
        {
            "impact_type": "tree_planted",
            "amount": 2,
            "day_of_month": due.day,
            "starts_on": today.isoformat(),
            "customer_email": schedule_customer[0],
            "customer_name": schedule_customer[1],
            "metadata": METADATA,
        },
    )
    ran = json.loads(
        openimpact(
            ["schedules", "run", "--user-id", user_id, "--as-of", due.isoformat(), "--json"], env
        ).stdout
    )
    assert ran["created"] >= 1, ran

    # Every impact but the cancelled one completed: final certificates, completion emails.
    for action in ("receive", "transfer", "complete"):
        openimpact(["lifecycle", action, "--user-id", user_id], env)
    cancellable = _tid(user_id, _post(server, key, "/v1/plant_tree", {"amount": 1}))
    tracking["cancellable"] = cancellable

    # Webhooks: one answers 200 with markup (the delivery log shows it), one 410
    # (disabled, its owners emailed). URLs carry what their validation allows.
    refused = httpx.post(
        server.url + "/v1/webhook_endpoints",
        json={"url": JS_URL},
        headers={"x-api-key": key},
    )
    assert refused.status_code == 400, refused.text
    webhooks = {}
    for name in ("log", "gone"):
        endpoint = _post(
            server,
            key,
            "/v1/webhook_endpoints",
            {
                "url": f"{rx.url}/{name}{URL_TAIL}",
                "description": f"{ALL} {JS_URL}",
                "event_types": ["impact.completed"],
            },
        )
        _post(server, key, f"/v1/webhook_endpoints/{endpoint['id']}/test", {})
        webhooks[name] = endpoint
    rx.wait_for(2)

    # The browser: a page as served, and one with the CSP bypassed, the same session.
    strict = chromium.new_context(viewport={"width": 1280, "height": 900})
    contexts.append(strict)
    tab = Tab.of("strict", strict)
    page = tab.page
    page.goto(invited["invite_url"])
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Set password").click()
    page.wait_for_url(server.url + "/dashboard")
    loose = chromium.new_context(
        viewport={"width": 1280, "height": 900},
        bypass_csp=True,
        storage_state=strict.storage_state(),
    )
    contexts.append(loose)
    tabs = [tab, Tab.of("bypass", loose)]

    # The public profile: only the dashboard form (or the operator's CLI) sets it.
    slug = f"xss-{tag}"
    logo_url = f"http://127.0.0.1:{free_port()}/logo.png{URL_TAIL}"
    page.goto(server.url + "/dashboard/profile")
    page.get_by_label("Address", exact=True).fill(slug)
    page.get_by_label("Display name", exact=True).fill(ALL)
    page.get_by_label("Logo URL", exact=True).fill(logo_url)
    page.get_by_label("Show my public profile", exact=True).check()
    page.get_by_role("button", name="Save profile").click()
    page.wait_for_url("**/dashboard/profile?saved=1")
    profile = httpx.get(f"{server.url}/public/v1/profiles/{slug}").json()
    assert (norm(profile["name"]), profile["logo_url"]) == (norm(ALL), logo_url), profile

    # A team invitation (dashboard only): the invitee's email is the payload.
    team_email = f'"><svg/onload=window.__xss=1>t{tag}@x.test'
    page.goto(server.url + "/dashboard/team")
    page.get_by_label("Email", exact=True).fill(team_email)
    page.get_by_role("button", name="Send invitation").click()
    page.locator("#invite-url").wait_for()
    tab.check("team invitation sent", (team_email,))

    # A budget (dashboard only), then a donation past 80 %: the owners' email.
    page.goto(server.url + "/dashboard/budget")
    page.get_by_label("Monthly cap in US dollars", exact=True).fill("10")
    page.get_by_role("button", name="Save budget").click()
    page.wait_for_url("**/dashboard/budget?saved=1")
    _post(server, key, "/v1/donate_money", {"amount": 850})

    # The cancel form of the track modal (htmx), with a reason of markup.
    page.goto(f"{server.url}/dashboard/impacts/{quote(cancellable)}")
    dialog = page.get_by_role("dialog")
    dialog.wait_for()
    dialog.get_by_label("Reason (optional)", exact=True).fill(f"{IMG} {SVG} {TEMPLATE}")
    dialog.get_by_role("button", name="Cancel impact").click()
    dialog.get_by_text("Impact cancelled.").wait_for()
    tab.check("cancel from the modal", (f"{IMG} {SVG} {TEMPLATE}",))

    # A password reset asked for (signed out): the email typed comes back as text.
    anonymous = chromium.new_context()
    contexts.append(anonymous)
    other = Tab.of("strict", anonymous)
    other.page.goto(server.url + "/dashboard/forgot")
    other.page.get_by_label("Email", exact=True).fill(owner_email)
    other.page.get_by_role("button", name="Email me a reset link").click()
    other.page.get_by_role("status").wait_for()
    other.check("password reset asked", (owner_email,))
    other.page.goto(server.url + "/dashboard/login")
    other.page.get_by_label("Email", exact=True).fill(owner_email)
    other.page.get_by_label("Password", exact=True).fill(ALL)
    other.page.get_by_role("button", name="Sign in").click()
    other.page.get_by_role("alert").wait_for()
    other.check("sign-in refused", ())
    assert other.page.get_by_label("Email", exact=True).input_value() == owner_email

    # The first customer's private page link, as the dashboard gives it.
    customers = httpx.get(
        server.url + "/v1/customers", headers={"x-api-key": key}, params={"limit": 100}
    ).json()["customers"]
    by_email = {c["customer_email"]: c for c in customers}
    ordered = [by_email[email] for email in EMAIL_PAYLOADS]
    page.goto(f"{server.url}/dashboard/customers/{quote(ordered[0]['customer_id'])}")
    customer_page_url = page.locator("a[href*='/my-impact/']").first.get_attribute("href")
    assert customer_page_url and "/my-impact/" in customer_page_url

    return Site(
        backend,
        server,
        env,
        database_url,
        tag,
        user_id,
        key,
        owner_email,
        team_email,
        slug,
        ALL,
        logo_url,
        tracking,
        ordered,
        schedule_customer,
        webhooks,
        customer_page_url,
        tabs,
    )


@contextmanager
def _serving(body: bytes) -> Iterator[str]:
    """A page at an address of its own, for the widget's host."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/" else 404)
            self.send_header("content-type", "text/html; charset=utf-8")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _shot(site: Site, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    site.tabs[1].page.screenshot(path=str(SHOTS / f"{name}-{site.backend}.png"), full_page=True)


# The dashboard --------------------------------------------------------------------------------


class TestDashboard:
    def test_overview_impacts_and_certificates(self, site: Site) -> None:
        names = (*NAMES, *EMAIL_PAYLOADS)
        site.visit("/dashboard", (*site.header, *names))
        site.visit("/dashboard/impacts", (*site.header, *names, *site.schedule_customer))
        site.visit("/dashboard/certificates", (*site.header, ALL))

    def test_the_track_view_as_a_page(self, site: Site) -> None:
        metadata = tuple(f"{k} {v}" for k, v in METADATA.items())
        site.visit(
            "/dashboard/impacts/" + quote(site.tracking["c0"]),
            (*site.header, ALL, EMAIL_PAYLOADS[0], *metadata),
            wait="#track-title",
        )
        _shot(site, "track")
        site.visit(
            "/dashboard/impacts/" + quote(site.tracking["c1"]),
            (*site.header, f"Reason: {ALL}", IMG, EMAIL_PAYLOADS[1]),
            wait="#track-title",
        )
        site.visit(
            "/dashboard/impacts/" + quote(site.tracking["cancellable"]),
            (*site.header, f"Reason: {IMG} {SVG} {TEMPLATE}"),
            wait="#track-title",
        )

    def test_the_track_modal_opened_from_the_list(self, site: Site) -> None:
        """htmx swaps the track view into the dialog (innerHTML)."""
        metadata = tuple(f"{k} {v}" for k, v in METADATA.items())
        for tab in site.tabs:
            tab.page.goto(site.url + "/dashboard/impacts")
            row = tab.page.locator("tr.clickable-row", has_text=EMAIL_PAYLOADS[3])
            row.locator("a.row-link").click()
            tab.page.get_by_role("dialog").locator("#track-title").wait_for()
            tab.check("track modal (htmx)", (TITLE, EMAIL_PAYLOADS[3], *metadata))

    def test_the_schedules_impact_shows_its_metadata(self, site: Site) -> None:
        email, name = site.schedule_customer
        site.visit(f"/dashboard/impacts?customer={quote(email)}", (name, email))
        for tab in site.tabs:
            tab.page.locator("a.row-link").first.click()
            tab.page.get_by_role("dialog").locator("#track-origin").wait_for()
            tab.check("schedule's impact", (name, *(f"{k} {v}" for k, v in METADATA.items())))

    def test_customers_and_each_customer(self, site: Site) -> None:
        site.visit("/dashboard/customers", (*site.header, *NAMES, *EMAIL_PAYLOADS))
        # What was typed into the search comes back in the caption, as text.
        site.visit(f"/dashboard/customers?email={quote(SCRIPT)}", (f"“{SCRIPT}”",))
        for customer, name, email in zip(site.customers, NAMES, EMAIL_PAYLOADS, strict=True):
            site.visit(f"/dashboard/customers/{quote(customer['customer_id'])}", (name, email))
            for tab in site.tabs:
                assert norm(name) in norm(tab.page.title())

    def test_schedules(self, site: Site) -> None:
        site.visit("/dashboard/schedules", (*site.header, *site.schedule_customer))
        # The form refused (no amount) comes back with what was typed, as values.
        for tab in site.tabs:
            page = tab.page
            page.goto(site.url + "/dashboard/schedules")
            page.get_by_label("Customer name (optional)", exact=True).fill(ALL)
            page.locator("#category").fill(IMG)
            page.locator("#amount").fill(SVG)
            page.get_by_role("button", name="Create schedule").click()
            page.locator(".error-summary").wait_for()
            tab.check("schedule form refused", ())
            assert page.locator("#customer_name").input_value() == ALL
            assert page.locator("#category").input_value() == IMG

    def test_webhooks_list_and_endpoint_pages_with_the_delivery_log(self, site: Site) -> None:
        description = f"{ALL} {JS_URL}"
        urls = tuple(e["url"] for e in site.webhooks.values())
        site.visit("/dashboard/webhooks", (*site.header, *urls, description))
        log = site.webhooks["log"]
        site.visit(
            f"/dashboard/webhooks/{log['id']}",
            (*site.header, log["url"], description, ANSWER[:70]),
        )
        for tab in site.tabs:
            answer = tab.page.locator("code.answer").first
            assert answer.get_attribute("title") == ANSWER
            assert norm(log["url"]) in norm(tab.page.title())
        _shot(site, "webhook")
        gone = site.webhooks["gone"]
        site.visit(f"/dashboard/webhooks/{gone['id']}", (gone["url"], "410 Gone", ANSWER[:70]))
        # The add form refuses javascript: and shows what was typed, as a value.
        for tab in site.tabs:
            page = tab.page
            page.goto(site.url + "/dashboard/webhooks")
            page.get_by_label("URL", exact=True).fill(JS_URL)
            page.get_by_label("Description (optional)", exact=True).fill(ALL)
            page.get_by_role("button", name="Add endpoint").click()
            page.locator(".field-error").first.wait_for()
            tab.check("webhook form refused", ())
            assert page.locator("#url").input_value() == JS_URL
            assert page.locator("#description").input_value() == ALL

    def test_public_profile_settings(self, site: Site) -> None:
        site.visit("/dashboard/profile", site.header)
        for tab in site.tabs:
            page = tab.page
            assert norm(page.locator("#name").input_value()) == norm(ALL)
            assert page.locator("#logo_url").input_value() == site.logo_url
            # javascript: is refused, and what was typed comes back as a value.
            page.get_by_label("Logo URL", exact=True).fill(JS_URL)
            page.get_by_label("Display name", exact=True).fill(TITLE)
            page.get_by_role("button", name="Save profile").click()
            page.locator(".error-summary").wait_for()
            tab.check("profile form refused", ())
            assert page.locator("#logo_url").input_value() == JS_URL
            assert page.locator("#name").input_value() == TITLE
        profile = httpx.get(f"{site.url}/public/v1/profiles/{site.slug}").json()
        assert profile["logo_url"] == site.logo_url  # nothing was saved

    def test_developers_team_and_budget(self, site: Site) -> None:
        site.visit("/dashboard/developers", site.header)
        site.visit("/dashboard/team", (*site.header, site.team_email))
        site.visit("/dashboard/budget", site.header)

    def test_error_pages_show_the_address_typed_as_text(self, site: Site) -> None:
        for path in (
            f"/dashboard/impacts/{quote(ALL)}",
            f"/dashboard/customers/{quote(IMG)}",
            f"/dashboard/webhooks/{quote(SVG)}",
        ):
            site.visit(path, site.header, status=404)


# Public pages -------------------------------------------------------------------------------


class TestPublic:
    def test_profile_page(self, site: Site) -> None:
        completed = (f"on behalf of {ALL}", f"on behalf of {SVG}", f"on behalf of {TITLE}")
        site.visit(f"/impact/{site.slug}", (ALL, *completed))
        for tab in site.tabs:
            page = tab.page
            assert norm(ALL) in norm(page.title())
            for selector in ('meta[property="og:title"]', 'meta[name="twitter:title"]'):
                assert norm(ALL) in norm(page.locator(selector).get_attribute("content") or "")
            assert page.locator("img.logo").get_attribute("src") == site.logo_url
        _shot(site, "profile")
        # The CSP names the http logo's origin, and nothing of its path.
        response = httpx.get(f"{site.url}/impact/{site.slug}")
        policy = response.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        origin = site.logo_url.split("/logo.png", 1)[0]
        assert f"img-src 'self' data: https: {origin};" in policy
        assert "svg" not in policy and "unsafe" not in policy

    def test_profile_page_in_german_and_its_json(self, site: Site) -> None:
        site.visit(f"/impact/{site.slug}?locale=de", (ALL,))
        response = httpx.get(f"{site.url}/public/v1/profiles/{site.slug}")
        assert response.headers["content-type"].startswith("application/json")
        assert response.headers["x-content-type-options"] == "nosniff"
        site.visit(f"/public/v1/profiles/{site.slug}")

    def test_counter_page(self, site: Site) -> None:
        site.visit(f"/widget/{site.slug}/counter", (ALL,))
        for tab in site.tabs:
            assert norm(ALL) in norm(tab.page.title())

    def test_the_script_widget_on_a_host_page(self, site: Site) -> None:
        markup = (
            "<!doctype html><html><head><title>Shop</title></head><body><p>Our impact:</p>"
            f'<script async src="{site.url}/widget.js" data-openimpact-counter="{site.slug}">'
            "</script></body></html>"
        ).encode()
        # A shop of its own origin, on the loopback as the server is (Chromium
        # lets no public page load a loopback script).
        with _serving(markup) as host:
            site.visit(host, wait="openimpact-counter")
            for tab in site.tabs:
                tab.page.wait_for_function(
                    "() => document.querySelector('openimpact-counter')"
                    ".shadowRoot.querySelector('.oi-name')"
                )
                tab.check("widget.js", (ALL,))

    def test_badges(self, site: Site) -> None:
        # Badges show totals, never a stored text; their label is the query's.
        label = "<script>window.__xss=1</script>'\"><svg onload=x>"
        svg = f"/badge/{site.slug}/tree_planted.svg?label={quote(label)}"
        site.visit(svg, (label,))
        site.visit(f"/badge/{site.slug}/tree_planted.svg")
        body = httpx.get(f"{site.url}/badge/{site.slug}/tree_planted.json?label={quote(label)}")
        assert body.headers["content-type"].startswith("application/json")
        assert body.json()["label"] == label
        site.visit(f"/badge/{site.slug}/tree_planted.json?label={quote(label)}")

    def test_customer_page(self, site: Site) -> None:
        site.visit(site.customer_page_url, (ALL,))
        for tab in site.tabs:
            assert norm(ALL) in norm(tab.page.title())

    def test_certificates(self, site: Site) -> None:
        for key, headline, shown in (
            ("c0", f"on behalf of {ALL}", ()),
            ("c1", f"on behalf of {IMG}", (f"Reason: {ALL}",)),
            ("c3", f"on behalf of {TITLE}", ()),
            ("c4", f"on behalf of {TEMPLATE} {LINE_SEP}", ()),
            ("cancellable", None, (f"Reason: {IMG} {SVG} {TEMPLATE}",)),
        ):
            site.visit(f"/certificate/{quote(site.tracking[key])}", (*shown, headline or ""))
            for tab in site.tabs:
                # The headline is the page's title too (and its og:title).
                assert headline is None or norm(headline) in norm(tab.page.title())


# Emails -----------------------------------------------------------------------------------------


def _compose(payload: dict[str, Any], business: str, public_url: str) -> EmailMessage:
    """As the worker composes a message (worker._compose)."""
    template = payload.get("template")
    sender = "impact@example.org"
    if template in user_emails.TEMPLATES:
        return user_emails.compose(payload, sender)
    if template in budget_emails.TEMPLATES:
        return budget_emails.compose(payload, sender)
    if template in webhook_emails.TEMPLATES:
        return webhook_emails.compose(payload, sender)
    return mail.compose_email(payload, business, sender, public_url)


def _queued(site: Site) -> list[mail.Claimed]:
    """This account's emails, with what the worker adds when it claims one
    (the customer's page token, the project). Read, not claimed: other tests
    of the session share the database and its outbox."""
    db = Database(driver_url(site.database_url), pool_size=1)
    try:

        def read(session: Any) -> list[mail.Claimed]:
            account = session.scalars(select(Account).where(Account.user_id == site.user_id)).one()
            rows = session.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.account_id == account.id, OutboxMessage.kind == mail.EMAIL)
                .order_by(OutboxMessage.id)
            ).all()
            claimed = [mail.Claimed(r.id, 1, r.payload, account.name) for r in rows]
            where = {r.id: (r.account_id, r.env) for r in rows}
            return mail._with_context(session, claimed, where)

        return db.run_sync(read)
    finally:
        db.dispose()


class TestEmails:
    def test_every_queued_email(self, site: Site) -> None:
        messages = _queued(site)
        seen: dict[str, int] = {}
        for message in messages:
            payload = message.payload
            template = str(payload.get("template") or mail.CREATED)
            seen[template] = seen.get(template, 0) + 1
            email = _compose(payload, message.business_name, site.url)
            html = email.get_body(preferencelist=("html",)).get_content()
            shown: tuple[str, ...]
            if template in (mail.CREATED, mail.COMPLETED):
                customer = payload["customer"]
                name = customer.get("customer_name")
                shown = (ALL, f"Hello {name},") if name else (ALL,)
            elif template == "webhook_disabled":
                shown = (ALL, payload["url"])
            else:
                shown = (ALL,)
            for tab in site.tabs:
                # A mail client shows it under no page's CSP: a blank page first.
                tab.page.goto("about:blank")
                tab.page.set_content(html)
                tab.check(f"email {template} to {payload.get('to')}", shown)
        # Every kind of email the scenario causes was opened.
        assert set(seen) == {
            mail.CREATED,
            mail.COMPLETED,
            "user_invite",
            "user_reset",
            "budget_threshold",
            "webhook_disabled",
        }, seen
        assert seen[mail.CREATED] >= 6 and seen[mail.COMPLETED] >= 5, seen
