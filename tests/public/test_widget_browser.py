"""The Impact Counter in Chromium, embedded the way a shop embeds it: a page
on another origin (another port) whose CSP allows scripts and connections to
the OpenImpact server only, no inline styles and no images, and whose own CSS
tries to restyle everything. The numbers shown are checked against /v1/impact.

Runs a real server (tests/live.py) on each test database. Chromium is
/usr/bin/chromium; without it the test is skipped locally and fails under CI.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import IN_CI, TestDatabase
from tests.live import LiveServer, create_account, free_port, openimpact, server_env

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# The host page's own stylesheet: it restyles every element it can reach.
HOSTILE_CSS = """
* { color: rgb(255, 0, 0) !important; font-family: serif !important; }
span, a, div { display: none !important; }
#host, #host * { display: block !important; }
main > div { display: block !important; border: 3px dotted rgb(0, 0, 255); }
"""


def _need_chromium() -> Any:
    problem = None
    if not CHROMIUM.exists():
        problem = f"Chromium not found at {CHROMIUM}"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "playwright is not installed (pip install -e '.[test]')"
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true requires the browser test: {problem}")
        pytest.skip(problem)
    return sync_playwright


@dataclass
class Host:
    """A second origin serving the shop's page with a strict CSP."""

    url: str
    server: ThreadingHTTPServer


def _host_page(oi: str, slug: str) -> str:
    def widget(**attrs: str) -> str:
        extra = "".join(f' data-{k}="{v}"' for k, v in attrs.items())
        return (
            f'<script async src="{oi}/widget.js" data-openimpact-counter="{slug}"{extra}></script>'
        )

    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Host shop</title><link rel="stylesheet" href="/host.css"></head>
<body>
<main>
<div id="host"><h1>Welcome to the host shop</h1><p id="host-text">Our products</p></div>
<div id="light">{widget(types="tree_planted,waste_removed", theme="light", locale="en")}</div>
<div id="dark">{widget(types="money_donated,coral_restored,carbon_captured", theme="dark", locale="de")}</div>
<div id="default">{widget()}</div>
<div id="missing"><script async src="{oi}/widget.js" data-openimpact-counter="no-such-shop"></script></div>
<iframe id="frame" title="Impact counter" width="360" height="180"
  src="{oi}/widget/{slug}/counter?types=tree_planted&amp;theme=dark&amp;locale=en"></iframe>
</main>
</body>
</html>"""


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Iterator[Any]:
    started: list[Host] = []

    def start(oi: str, slug: str) -> Host:
        page = _host_page(oi, slug).encode()
        csp = (
            f"default-src 'none'; script-src {oi}; connect-src {oi}; frame-src {oi}; "
            "style-src 'self'; img-src 'none'; base-uri 'none'; form-action 'none'"
        )

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, kind = (
                    (HOSTILE_CSS.encode(), "text/css")
                    if self.path == "/host.css"
                    else (page, "text/html")
                )
                self.send_response(200)
                self.send_header("Content-Type", f"{kind}; charset=utf-8")
                self.send_header("Content-Security-Policy", csp)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(Host(f"http://127.0.0.1:{server.server_address[1]}", server))
        return started[-1]

    yield start
    for h in started:
        h.server.shutdown()
        h.server.server_close()


@pytest.fixture
def live(
    database: TestDatabase, tmp_path: Path
) -> Iterator[tuple[LiveServer, dict[str, str], str]]:
    env = server_env(
        database.url, OPENIMPACT_BACKGROUND_WORKER="false", OPENIMPACT_PUBLIC_RATE_LIMIT="off"
    )
    account = create_account(env, f"widget-{secrets.token_hex(4)}@example.com")
    slug = f"live-{secrets.token_hex(4)}"
    openimpact(
        ["accounts", "profile", "--user-id", account["user_id"], "--slug", slug, "--on",
         "--name", "Live <Shop>"],
        env,
    )  # fmt: skip
    server = LiveServer(env, log=tmp_path / "server.log").start()
    try:
        key = {"x-api-key": account["production_key"]}
        for endpoint, amount, extra in (
            ("plant_tree", 1200, {"customer_email": "jane@example.com"}),
            ("plant_tree", 34, {}),
            ("clean_ocean", 1, {}),
            ("donate_money", 1234, {}),
            ("restore_coral", 7, {"customer_email": "sam@example.com"}),
        ):
            response = httpx.post(
                f"{server.url}/v1/{endpoint}", json={"amount": amount, **extra}, headers=key
            )
            assert response.status_code == 200, response.text
        yield server, key, slug
    finally:
        server.stop()


def test_counter_on_another_origin_under_a_strict_csp(live: Any, host: Any) -> None:
    sync_playwright = _need_chromium()
    server, key, slug = live
    oi = server.url
    shop = host(oi, slug)
    totals = httpx.get(f"{oi}/v1/impact", headers=key).json()
    assert totals["tree_planted"] == 1234  # 1200 on behalf of a customer + 34 direct

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            # A cookie the OpenImpact origin could read: the widget must not send it.
            context.add_cookies([{"name": "tracker", "value": "1", "url": oi}])
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            requests: list[Any] = []
            page.on("request", lambda r: requests.append(r))
            responses: list[Any] = []
            page.on("response", lambda r: responses.append(r))
            # What the profile fetches really send (routing also turns the
            # browser's HTTP cache off, so each one reaches the server).
            sent: list[dict[str, str]] = []

            def record(route: Any) -> None:
                sent.append(route.request.all_headers())
                route.continue_()

            page.route(f"{oi}/public/v1/profiles/**", record)
            page.goto(shop.url)
            _check(page, oi, slug, totals)
            page.wait_for_load_state("networkidle")
            assert [c["name"] for c in context.cookies()] == ["tracker"]  # nothing set one
            assert len(sent) == 4  # one fetch per script tag
            assert all("cookie" not in headers for headers in sent), sent
            assert all("referer" not in headers for headers in sent), sent
            assert not any("set-cookie" in r.all_headers() for r in responses)
        finally:
            browser.close()

    # No CSP violation, no CORS refusal, no script error. (The one console
    # error expected is the 404 of the profile that does not exist.)
    assert [m for m in problems if "404" not in m] == [], problems
    origins = {f"{urlsplit(r.url).scheme}://{urlsplit(r.url).netloc}" for r in requests}
    assert origins == {shop.url, oi}, "a request left for a third party"


def _check(page: Any, oi: str, slug: str, totals: dict[str, Any]) -> None:
    from playwright.sync_api import expect

    profile_url = f"{oi}/impact/{slug}"
    light = page.locator("#light")
    link = light.get_by_role("link", name=re.compile("See the impact profile"))
    expect(link).to_be_visible(timeout=15_000)
    expect(link).to_have_attribute("href", profile_url)
    expect(link).to_have_attribute("target", "_blank")
    expect(light.get_by_text("Live <Shop>")).to_be_visible()
    # The number is /v1/impact's, formatted as the page's locale writes it.
    trees = f"{totals['tree_planted']:,}"
    expect(light.locator(".oi-tree_planted .oi-value")).to_have_text(trees)
    expect(light.locator(".oi-tree_planted")).to_have_text(f"{trees} trees planted")
    expect(light.locator(".oi-waste_removed")).to_have_text("1 lb of ocean plastic removed")
    expect(light.locator(".oi-total")).to_have_count(2)

    dark = page.locator("#dark")
    expect(dark.get_by_role("link", name=re.compile("Zum Impact-Profil"))).to_be_visible()
    expect(dark.locator(".oi-money_donated")).to_have_text("12,34\u00a0$ gespendet")
    expect(dark.locator(".oi-coral_restored")).to_have_text("7 Korallenfragmente wiederhergestellt")
    expect(dark.locator(".oi-carbon_captured")).to_have_text("0 lbs CO₂ gebunden")
    expect(dark.locator(".oi-counter")).to_have_class(re.compile("oi-theme-dark"))

    # Without data-types: every type with impact, in the API's order.
    expect(page.locator("#default .oi-total")).to_have_count(4)
    expect(page.locator("#default .oi-unit")).to_have_text(
        ["trees planted", "lb of ocean plastic removed", "coral fragments restored", "donated"]
    )
    expect(page.locator("#missing").get_by_text("Impact counter unavailable")).to_be_visible()

    frame = page.frame_locator("#frame")
    expect(frame.get_by_role("link", name=re.compile(f"{trees} trees planted"))).to_be_visible()

    # The widget's styles applied (adopted into its shadow root, not blocked by
    # the CSP), the host page's did not get in, and the host page kept its own.
    styles = page.evaluate(
        """() => {
          const root = document.querySelector('#light openimpact-counter').shadowRoot;
          const style = (el) => getComputedStyle(el);
          return {
            radius: style(root.querySelector('.oi-counter')).borderTopLeftRadius,
            valueDisplay: style(root.querySelector('.oi-value')).display,
            valueColor: style(root.querySelector('.oi-value')).color,
            font: style(root.querySelector('.oi-value')).fontFamily,
            adopted: root.adoptedStyleSheets.length,
            links: root.querySelectorAll('link').length,
            hostText: style(document.querySelector('#host-text')).color,
            globals: Object.keys(window).filter((k) => /openimpact/i.test(k)),
            cookie: document.cookie,
          };
        }"""
    )
    assert styles["radius"] == "14px"
    assert styles["valueDisplay"] != "none"
    assert styles["valueColor"] == "rgb(29, 35, 43)"
    assert styles["font"] != "serif" and "system-ui" in styles["font"]
    assert (styles["adopted"], styles["links"]) == (1, 0)
    assert styles["hostText"] == "rgb(255, 0, 0)"
    # Cookies ignore ports: the host page sees the test's own cookie, and no other.
    assert styles["globals"] == [] and styles["cookie"] == "tracker=1"
    expect(page.get_by_role("heading", name="Welcome to the host shop")).to_be_visible()
