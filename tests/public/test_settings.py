"""The service functions the dashboard calls: profile settings, embed
snippets, and customers' page links; and the same from the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from fastapi.testclient import TestClient

from openimpact.cli import main
from openimpact.config import get_settings
from openimpact.errors import NotFound, ValidationFailed
from openimpact.public import service
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.public.conftest import Page, account_id, publish, set_profile


class TestProfileSettings:
    def test_defaults_then_changes(self, api: Api) -> None:
        keys = api.account(name="Corner Shop")
        pk = account_id(api.db, keys.user_id)
        fresh = api.db.run_sync(lambda s: service.profile_settings(s, pk))
        assert fresh == service.ProfileSettings(
            slug=None, name=None, logo_url=None, enabled=False, display_name="Corner Shop"
        )
        slug = f"Corner-{keys.user_id[-5:]}"
        changed = api.db.run_sync(
            lambda s: service.update_profile(
                s, pk, slug=f"  {slug} ", name="  The   Corner  ", enabled=True
            ),
            write=True,
        )
        assert changed.slug == slug.lower()
        assert (changed.name, changed.display_name, changed.enabled) == (
            "The Corner",
            "The Corner",
            True,
        )
        # Left out: unchanged; empty: cleared.
        cleared = api.db.run_sync(lambda s: service.update_profile(s, pk, name=""), write=True)
        assert (cleared.slug, cleared.name, cleared.display_name, cleared.enabled) == (
            slug.lower(),
            None,
            "Corner Shop",
            True,
        )

    @pytest.mark.parametrize(
        ("changes", "message"),
        [
            ({"slug": "a"}, "slug: 'a' is not a valid slug"),
            ({"slug": "-shop"}, "slug: '-shop' is not a valid slug"),
            ({"slug": "shop/../x"}, "slug: "),
            ({"slug": "x" * 41}, "slug: "),
            ({"enabled": True}, "slug: choose a slug before turning the public profile on"),
            ({"name": "x" * 201}, "name: must be at most 200 characters"),
            ({"name": "bad\x00name"}, "name: must not contain control characters"),
            ({"logo_url": "javascript:alert(1)"}, "logo_url: must be an http:// or https:// URL"),
            ({"logo_url": "data:image/png;base64,AAAA"}, "logo_url: must be an http"),
            ({"logo_url": "/relative/logo.png"}, "logo_url: must be an http"),
            ({"logo_url": "https://"}, "logo_url: must be an http"),
            ({"logo_url": "https://x.example/a b.png"}, "logo_url: must be at most 500"),
        ],
    )
    def test_refusals_name_the_field(
        self, api: Api, changes: dict[str, object], message: str
    ) -> None:
        pk = account_id(api.db, api.account().user_id)
        with pytest.raises(ValidationFailed) as refused:
            api.db.run_sync(lambda s: service.update_profile(s, pk, **changes), write=True)
        assert refused.value.message.startswith(message)
        # Nothing was written.
        assert api.db.run_sync(lambda s: service.profile_settings(s, pk)).enabled is False

    def test_a_slug_belongs_to_one_account_whatever_its_case(self, api: Api) -> None:
        first = publish(api)
        other = account_id(api.db, api.account().user_id)
        with pytest.raises(ValidationFailed, match=r"slug: .* is already taken"):
            api.db.run_sync(
                lambda s: service.update_profile(s, other, slug=first.slug.upper()), write=True
            )
        # The owner may write its own slug again.
        assert set_profile(api, first, slug=first.slug.upper()).slug == first.slug

    def test_unknown_account(self, api: Api) -> None:
        with pytest.raises(NotFound):
            api.db.run_sync(lambda s: service.profile_settings(s, 10**12))


class TestEmbedSnippets:
    def test_every_snippet_for_a_base_url(self, api: Api, client: TestClient) -> None:
        shop = publish(api)
        shop.api.plant(9)
        snippets = service.embed_snippets(
            "https://impact.example.org/",
            shop.slug,
            types="tree_planted,waste_removed",
            theme="dark",
            locale="de",
        )
        assert snippets.script_tag == (
            '<script async src="https://impact.example.org/widget.js" crossorigin="anonymous" '
            f'data-openimpact-counter="{shop.slug}" data-types="tree_planted,waste_removed" '
            'data-theme="dark" data-locale="de"></script>'
        )
        assert snippets.profile_url == f"https://impact.example.org/impact/{shop.slug}"
        assert snippets.json_url == f"https://impact.example.org/public/v1/profiles/{shop.slug}"
        assert snippets.badge_svg_url == (
            f"https://impact.example.org/badge/{shop.slug}/tree_planted.svg"
        )
        assert snippets.badge_json_url == (
            f"https://impact.example.org/badge/{shop.slug}/tree_planted.json"
        )
        shields = urlsplit(snippets.shields_url)
        assert (shields.netloc, shields.path) == ("img.shields.io", "/endpoint")
        assert unquote(parse_qs(shields.query)["url"][0]) == snippets.badge_json_url
        assert 'src="https://impact.example.org/widget/' in snippets.iframe_html
        assert "&amp;theme=dark" in snippets.iframe_html
        # Each path answers on this server.
        for url in (
            snippets.iframe_url,
            snippets.badge_svg_url,
            snippets.badge_json_url,
            snippets.json_url,
        ):
            local = url.replace("https://impact.example.org", "")
            assert client.get(local).status_code == 200, url

    def test_bad_choices_name_the_field(self) -> None:
        for kwargs, field in (
            ({"types": "tree_planted,forest"}, "types"),
            ({"theme": "neon"}, "theme"),
            ({"locale": "fr"}, "locale"),
            ({"badge_type": "trees"}, "badge_type"),
        ):
            with pytest.raises(ValidationFailed) as refused:
                service.embed_snippets("https://x.example", "my-shop", **kwargs)  # type: ignore[arg-type]
            assert refused.value.message.startswith(f"{field}: ")
        with pytest.raises(ValidationFailed, match=r"^slug: "):
            service.embed_snippets("https://x.example", "no")

    def test_the_base_url_is_escaped(self) -> None:
        snippets = service.embed_snippets('https://x.example/"><b>', "my-shop")
        assert "<b>" not in snippets.script_tag and "<b>" not in snippets.iframe_html


@pytest.fixture
def cli(database: TestDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("DATABASE_URL", database.url)
    monkeypatch.setenv("OPENIMPACT_PUBLIC_URL", "https://impact.example.org")
    get_settings.cache_clear()
    yield main
    get_settings.cache_clear()


class TestCommandLine:
    def test_accounts_profile_on_and_off(
        self, cli, capsys: pytest.CaptureFixture[str], api: Api, client: TestClient
    ) -> None:  # type: ignore[no-untyped-def]
        keys = api.account(name="Cli Shop")
        api.as_(keys).plant(21)
        slug = f"cli-{keys.user_id[-6:]}"
        args = ["accounts", "profile", "--user-id", keys.user_id, "--slug", slug, "--on"]
        assert cli([*args, "--name", "CLI Shop", "--logo-url", "https://x.example/l.png"]) == 0
        out = capsys.readouterr().out
        assert "Public profile of" in out and ": on" in out
        assert f"https://impact.example.org/impact/{slug}" in out
        assert Page(client.get(f"/impact/{slug}").text).headings[0] == "CLI Shop"

        assert cli(["accounts", "profile", "--user-id", keys.user_id, "--off", "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["enabled"] is False and shown["slug"] == slug
        from tests.public.conftest import eventually

        gone = eventually(lambda: client.get(f"/impact/{slug}"), lambda r: r.status_code == 404)
        assert gone.status_code == 404

    def test_a_bad_logo_url_is_refused(self, cli, capsys, api: Api) -> None:  # type: ignore[no-untyped-def]
        keys = api.account()
        code = cli(["accounts", "profile", "--user-id", keys.user_id, "--logo-url", "javascript:x"])
        assert code == 2
        assert "logo_url: must be an http:// or https:// URL" in capsys.readouterr().err

    def test_customer_page_link_and_rotation(
        self, cli, capsys, api: Api, client: TestClient
    ) -> None:  # type: ignore[no-untyped-def]
        keys = api.account()
        api.as_(keys).plant(3, customer_email="Pat@Example.com", customer_name="Pat")
        base = ["accounts", "customer-page", "--user-id", keys.user_id]
        assert cli([*base, "--customer-email", "pat@example.com", "--json"]) == 0
        first = json.loads(capsys.readouterr().out)["url"]
        assert first.startswith("https://impact.example.org/my-impact/")
        path = urlsplit(first).path
        assert client.get(path).status_code == 200
        assert cli([*base, "--customer-email", "pat@example.com", "--rotate"]) == 0
        assert "The previous link no longer works." in capsys.readouterr().out
        assert client.get(path).status_code == 404
        assert cli([*base, "--customer-email", "nobody@example.com"]) == 2
