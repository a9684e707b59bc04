"""Helpers for the public surfaces: a shop with a published profile, and a
way to wait for the few seconds a public answer may lag behind a change."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, TypeVar

from sqlalchemy import select

from openimpact.accounts.models import Account
from openimpact.db import Database
from openimpact.lifecycle.service import CompleteOptions, Selection, run_batch
from openimpact.public import service
from tests.factories import AccountKeys, Api, Caller

T = TypeVar("T")
EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


@dataclass
class Shop:
    keys: AccountKeys
    account_id: int
    slug: str
    api: Caller  # the production key

    def tracking_id(self, created: dict[str, Any]) -> str:
        return f"{self.keys.user_id}-{created['time_utc']}"


def account_id(db: Database, user_id: str) -> int:
    return db.run_sync(lambda s: s.scalar(select(Account.id).where(Account.user_id == user_id)))


def publish(api: Api, *, name: str = "Acme", enabled: bool = True, **profile: Any) -> Shop:
    """A fresh account whose public profile is set up (and on, by default)."""
    keys = api.account(name=name)
    pk = account_id(api.db, keys.user_id)
    slug = profile.pop("slug", None) or f"shop-{secrets.token_hex(4)}"
    api.db.run_sync(
        lambda s: service.update_profile(s, pk, slug=slug, enabled=enabled, **profile),
        write=True,
    )
    return Shop(keys, pk, slug.lower(), api.as_(keys))


def set_profile(api: Api, shop: Shop, **changes: Any) -> service.ProfileSettings:
    return api.db.run_sync(
        lambda s: service.update_profile(s, shop.account_id, **changes), write=True
    )


def advance(db: Database, tracking_ids: list[str], *actions: str, **options: Any) -> None:
    for action in actions:
        run_batch(
            db,
            action,
            Selection(tracking_ids=tuple(tracking_ids)),
            actor="test",
            options=CompleteOptions(**options) if action == "complete" else None,
        )


def eventually(fetch: Callable[[], T], check: Callable[[T], bool], seconds: float = 5.0) -> T:
    """``fetch()`` until ``check`` holds (public answers may be a second old)."""
    deadline = time.monotonic() + seconds
    while True:
        value = fetch()
        if check(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


class Page(HTMLParser):
    """What a person (and a crawler) sees of an HTML page: its visible text,
    headings, links, images, meta tags; and whether it has inline code."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.html = html
        self.title = ""
        self.meta: dict[str, str] = {}
        self.headings: list[str] = []
        self.links: list[tuple[str, str]] = []  # (visible text, href)
        self.images: list[str] = []
        self.stylesheets: list[str] = []
        self.inline_code: list[str] = []  # <script>/<style> blocks, style= and on*= attributes
        self._text: list[str] = []
        self._stack: list[str] = []
        self._link: tuple[str, list[str]] | None = None
        self._heading: list[str] | None = None
        self.feed(html)
        self.text = " ".join(" ".join(self._text).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag not in _VOID:
            self._stack.append(tag)
        if tag in ("script", "style"):
            self.inline_code.append(tag)
        for name in values:
            if name == "style" or name.startswith("on"):
                self.inline_code.append(f"{tag}[{name}]")
        if tag == "meta":
            key = values.get("property") or values.get("name")
            if key:
                self.meta[key] = values.get("content", "")
        elif tag == "a":
            self._link = (values.get("href", ""), [])
        elif tag == "img":
            self.images.append(values.get("src", ""))
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.stylesheets.append(values.get("href", ""))
        elif tag in ("h1", "h2", "h3"):
            self._heading = []

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag == "a" and self._link is not None:
            self.links.append((" ".join(" ".join(self._link[1]).split()), self._link[0]))
            self._link = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append(" ".join(" ".join(self._heading).split()))
            self._heading = None

    def handle_data(self, data: str) -> None:
        if "title" in self._stack:
            self.title += data
            return
        if any(tag in self._stack for tag in ("script", "style", "head")):
            return
        self._text.append(data)
        if self._link is not None:
            self._link[1].append(data)
        if self._heading is not None:
            self._heading.append(data)

    def link(self, text: str) -> str:
        """The href of the link whose visible text contains ``text``."""
        found = [href for label, href in self.links if text in label]
        assert found, f"no link with text {text!r} in {self.links}"
        return found[0]
