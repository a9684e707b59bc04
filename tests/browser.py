"""Headless Chromium for the browser tests (Playwright driving Debian's
chromium; no browser is ever downloaded).

Without /usr/bin/chromium the browser tests are skipped with the reason,
except under CI (``CI=true``), where they must run: .ci/run installs it.
Screenshots go to ``test-artifacts/screenshots`` (ignored by git), one per
page and width, so a person can look at what the tests saw.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("OPENIMPACT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    # The machine has no network beyond the loopback: Chromium's own
    # background connections would only fail (and fill the logs).
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
# Resources of other hosts (partner logos, Google Maps, video players) cannot
# load on a machine without a network; that is not an error of the page.
_OFFLINE = re.compile(r"net::ERR_(NAME_NOT_RESOLVED|INTERNET_DISCONNECTED|CONNECTION_REFUSED)")


def launch_chromium(playwright: Any) -> Any:
    if not Path(CHROMIUM).exists():
        message = f"Chromium not found at {CHROMIUM} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI=true requires the browser tests to run: {message}")
        pytest.skip(message)
    return playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    # Per module, not per session: while Playwright's sync API is open, its
    # event loop counts as running in this thread, and every later test that
    # calls asyncio.run() would fail.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class ConsoleLog:
    """Console errors and uncaught exceptions of a page, offline noise aside."""

    problems: list[str] = field(default_factory=list)

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        text = message.text
        location = (message.location or {}).get("url", "")
        if _OFFLINE.search(text) or (
            "Failed to load resource" in text and not location.startswith("http://127.0.0.1")
        ):
            return
        self.problems.append(f"{message.type}: {text} ({location})")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
