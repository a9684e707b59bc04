"""Who may call what: every route of the app, enumerated from ``app.routes``,
against the intruders of its kind (OWASP API1 and API5, broken object and
function level authorization).

Each route is classified in RULES: public by design (with the reason), a page
or action of any signed-in member of the account, an action of an owner only,
an API call with an account key, or an operator call of /admin/v1. A route
that is not classified fails the test, and so does a rule for a route that no
longer exists: a new route is covered the day it is added.

For every route that is not public, a fresh victim account with one of each
thing a route can name (an impact and its customer, a schedule, a webhook
endpoint with a logged delivery, API keys, team members, invitation and reset
links) is attacked with the victim's real ids by:

- another account: its signed-in owner (dashboard) or its key (API) gets the
  same 404 as for an id that never existed, or, on a route that names nothing,
  acts on its own account; so does the victim itself from the other
  environment (its sandbox key, its dashboard switched to the sandbox) for a
  thing of production;
- a member of the victim's account on an owner's action: 403, the "Not allowed"
  page;
- nobody: no session is a redirect to the sign-in page (303; GET asks to come
  back to the page), no key is a 401 ``key_error``, like a key that does not
  exist; /admin/v1 refuses an account key, as header or as bearer token, with
  a 401 ``key_error``, and everybody with a 403 while no operator token is set
  (dashboard/security.py, auth.py).

None of them changes anything of the victim (row counts and a hash of every
table's rows of the account, and of the server's own tables such as projects
and plans, compared before and after each request). Last,
the victim's owner sends the very same request and gets the route's answer,
which proves the intruders' requests were well aimed.
Each test runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from fastapi import routing
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import ColumnElement, Table, select, true
from sqlalchemy.orm import Session

from openimpact.accounts.models import Account
from openimpact.app import create_app
from openimpact.config import Settings
from openimpact.db import Base, Database
from openimpact.timeutil import ms_to_iso, now_ms
from tests.conftest import TestDatabase
from tests.dashboard.helpers import (
    NEW_PASSWORD,
    PASSWORD,
    Apps,
    Dashboard,
    add_user,
    again,
    anonymous,
    browser,
    cheap_argon2,
    db_of,
    impact_row,
    invite_user,
    key_prefixes,
    reset_token,
    signed_in,
    unique_email,
    visible_text,
)
from tests.factories import Api, Caller

ADMIN_TOKEN = "operator-" + "t" * 40
NEVER = "2001-02-03T04:05:06.789Z"  # a time no impact of these tests has
TREES = {"impact_type": "tree_planted", "amount": 10, "day_of_month": 3, "starts_on": "2030-01-01"}
NOT_ALLOWED = "Not allowed Only an owner of the account can do this"


def _closed_port() -> int:
    """A local port nobody listens on: a webhook sent there fails at once,
    and still leaves a logged delivery."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


HOOK_URL = f"http://127.0.0.1:{_closed_port()}/hooks"


@pytest.fixture(autouse=True)
def _cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    cheap_argon2(monkeypatch)


@pytest.fixture(scope="module")
def apps() -> Iterator[Apps]:
    running = Apps()
    yield running
    running.close()


@pytest.fixture
def settings(database: TestDatabase) -> Settings:
    # The operator API enabled (so that a refusal is the token check, not
    # "disabled"), and webhooks allowed to 127.0.0.1 (the closed port above).
    return database.settings(admin_token=ADMIN_TOKEN, webhooks_allow_private=True)


@pytest.fixture
def client(settings: Settings, apps: Apps) -> TestClient:
    return apps.client(settings)


# The routes ------------------------------------------------------------------------------

Route = tuple[str, str]  # (method, path template); "*" for a mount


def app_routes(app: Any) -> list[Route]:
    """(method, path) of every route of the app, however its routers nest; a
    HEAD that comes with a GET is the GET."""
    contexts = getattr(routing, "iter_route_contexts", None)
    routes = list(contexts(app.routes)) if contexts else list(app.routes)
    found: set[Route] = set()
    for route in routes:
        path = getattr(route, "path", None)
        if not path:
            continue
        methods = set(getattr(route, "methods", None) or ())
        if not methods:
            found.add(("*", path))
        for method in methods - ({"HEAD"} if "GET" in methods else set()):
            found.add((method, path))
    return sorted(found)


# The routes as the app has them when this module is collected (no database
# is needed to build an app), so that each route is a test of its own.
ROUTES = app_routes(create_app(Settings(database_url="sqlite://")))


# The victim ------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """A victim account with one of everything a route can name, its owner and
    a member signed in, and a stranger: the signed-in owner of another account."""

    client: TestClient
    owner: Dashboard
    member: Dashboard
    stranger: Dashboard
    api: Caller
    stranger_api: Caller
    user_id: str
    account_pk: int
    tracking_id: str
    impact_time: str
    customer_id: str
    certificate_id: str
    schedule_id: str
    endpoint_id: str
    delivery_id: str
    key_prefix: str
    colleague_pk: int
    colleague_email: str
    invitation: str
    reset: str
    project_id: str

    def phantom(self) -> World:
        """The same world with ids that name nothing at all."""
        return dataclasses.replace(
            self,
            tracking_id=f"{self.user_id}-{NEVER}",
            impact_time=NEVER,
            customer_id="C" + "0" * 16,
            certificate_id="0" * 20,
            schedule_id="S" + "0" * 20,
            endpoint_id="we_" + "0" * 20,
            delivery_id="wd_" + "0" * 20,
            key_prefix="oi_test_00000000",
            colleague_pk=2**40,
        )


def build_world(client: TestClient) -> World:
    db = db_of(client)
    owner = signed_in(client, name="Victim Shop")
    member = signed_in(client, owner.account, role="member")
    stranger = signed_in(client, name="Stranger Shop")
    colleague_pk, colleague_email = add_user(db, owner.account, role="member")
    _, _, invitation = invite_user(db, owner.account)
    api = Api(client).as_(owner.account)
    made = api.impact("plant_tree", 3, customer_email="jane@example.com", customer_name="Jane")
    tracking_id = f"{made['user_id']}-{made['time_utc']}"
    certificate_id = impact_row(db, tracking_id).certificate_id
    assert certificate_id is not None
    schedule = api.post("/v1/schedules", TREES)
    assert schedule.status_code == 200, schedule.text
    hook = api.post("/v1/webhook_endpoints", {"url": HOOK_URL})
    assert hook.status_code == 200, hook.text
    endpoint_id = hook.json()["id"]
    ping = api.post(f"/v1/webhook_endpoints/{endpoint_id}/test", {})
    assert ping.status_code == 200, ping.text
    (delivery,) = api.get(f"/v1/webhook_endpoints/{endpoint_id}/deliveries").json()["deliveries"]
    projects = api.get("/v1/projects").json()["projects"]
    prefix = next(p for p in key_prefixes(db, owner.account) if p.startswith("oi_test_"))
    return World(
        client=client,
        owner=owner,
        member=member,
        stranger=stranger,
        api=api,
        stranger_api=Api(client).as_(stranger.account),
        user_id=owner.account.user_id,
        account_pk=db.run_sync(
            lambda s: s.scalar(select(Account.id).where(Account.user_id == owner.account.user_id))
        ),
        tracking_id=tracking_id,
        impact_time=made["time_utc"],
        customer_id=made["customer"]["customer_id"],
        certificate_id=certificate_id,
        schedule_id=schedule.json()["id"],
        endpoint_id=endpoint_id,
        delivery_id=delivery["id"],
        key_prefix=prefix,
        colleague_pk=colleague_pk,
        colleague_email=colleague_email,
        invitation=invitation,
        reset=reset_token(db, colleague_email),
        project_id=projects[0]["project_id"] if projects else "no-project",
    )


# What belongs to an account --------------------------------------------------------------


def _scope(table: Table, account_pk: int) -> ColumnElement[bool] | None:
    """The rows of ``table`` that belong to the account: by its account_id,
    or through a foreign key to a table that has one; None for tables of
    the whole server (projects, plans, prices...)."""
    if table.name == "accounts":
        return table.c.id == account_pk
    if "account_id" in table.c:
        return table.c.account_id == account_pk
    for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
        parent = fk.column.table
        assert isinstance(parent, Table)
        inner = _scope(parent, account_pk)
        if inner is not None:
            return fk.parent.in_(select(fk.column).where(inner))
    return None


def snapshot(db: Database, account_pk: int) -> dict[str, tuple[int, str]]:
    """Per table: how many rows the account has and a hash of them; every row
    of the tables of the whole server. Equal snapshots: nothing changed."""

    def load(session: Session) -> dict[str, tuple[int, str]]:
        found = {}
        for table in Base.metadata.sorted_tables:
            where = _scope(table, account_pk)
            rows = session.execute(select(table).where(where if where is not None else true()))
            lines = sorted(repr(tuple(row)) for row in rows)
            digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
            found[table.name] = (len(lines), digest)
        return found

    return db.run_sync(load)


def changed(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) != after.get(name)
    )


# The rules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One real request of a route: its path with real ids, and a form, a JSON
    body or query parameters."""

    path: str
    data: dict[str, str] | None = None
    json: Any = None
    params: dict[str, str] | None = None


PUBLIC, MEMBER, OWNER, KEY, OPERATOR = "public", "member", "owner", "key", "operator"


@dataclass(frozen=True)
class Rule:
    access: str
    call: Callable[[World], Call] | None = None
    ok: int = 200  # the victim's owner's answer
    names_victims_object: bool = False  # the path (or query, body) names one of its things
    account_wide: bool = False  # that thing belongs to no environment (a key, a person)
    changes: bool | None = None  # the owner's request changes the account (None: not checked)
    reason: str = ""  # why a public route is public

    @property
    def by_anonymous(self) -> bool:
        return self.access == PUBLIC


def public(reason: str, call: Callable[[World], Call] | None = None, **kw: Any) -> Rule:
    return Rule(PUBLIC, call, reason=reason, **kw)


def page(call: Callable[[World], Call], *, victims: bool = False) -> Rule:
    return Rule(MEMBER, call, names_victims_object=victims)


def action(
    access: str,
    call: Callable[[World], Call],
    *,
    ok: int = 303,
    victims: bool = False,
    changes: bool | None = True,
    account_wide: bool = False,
) -> Rule:
    return Rule(access, call, ok, victims, account_wide, changes)


def api(
    call: Callable[[World], Call],
    *,
    ok: int = 200,
    victims: bool = False,
    changes: bool | None = None,
) -> Rule:
    return Rule(KEY, call, ok, victims, changes=changes)


def operator(call: Callable[[World], Call], *, ok: int = 200) -> Rule:
    return Rule(OPERATOR, call, ok)


def _fresh_profile(_: World) -> Call:
    slug = "shop-" + secrets.token_hex(4)
    return Call("/dashboard/profile", {"slug": slug, "name": "Shop", "enabled": "on"})


_WEBHOOK = "/dashboard/webhooks/{endpoint_id}"
_ENDPOINT = "/v1/webhook_endpoints/{endpoint_id}"


def _hook(w: World, suffix: str = "") -> str:
    return f"/dashboard/webhooks/{w.endpoint_id}{suffix}"


def _endpoint(w: World, suffix: str = "") -> str:
    return f"/v1/webhook_endpoints/{w.endpoint_id}{suffix}"


def _batch(w: World) -> Call:
    return Call("", json={"selection": {"user_id": w.user_id}})


RULES: dict[Route, Rule] = {
    # Public by design ----------------------------------------------------------------------
    ("GET", "/"): public("redirects to the dashboard, which asks for the sign-in"),
    ("GET", "/healthz"): public("health check for load balancers; says only ok"),
    ("GET", "/openapi.json"): public("the API's published schema"),
    ("GET", "/docs"): public("the API's documentation (Swagger UI)"),
    ("GET", "/docs/oauth2-redirect"): public("part of the Swagger UI"),
    ("GET", "/redoc"): public("the API's documentation (ReDoc)"),
    ("*", "/dashboard/static"): public("the dashboard's stylesheets, scripts and images"),
    ("GET", "/public/v1/profiles/{slug}"): public("a published public profile, as JSON"),
    ("OPTIONS", "/public/v1/profiles/{slug}"): public("CORS preflight of the public profile"),
    ("OPTIONS", "/badge/{slug}/{name}"): public("CORS preflight of the badges"),
    ("GET", "/badge/{slug}/{impact_type}.svg"): public("a published badge, for other sites"),
    ("GET", "/badge/{slug}/{impact_type}.json"): public("a published badge's figures"),
    ("GET", "/impact/{slug}"): public("the published public profile page"),
    ("GET", "/impact/{slug}/share.png"): public("the public profile's share image"),
    ("GET", "/widget/{slug}/counter"): public("the widget other sites frame"),
    ("GET", "/widget.js"): public("the widget's script, loaded by other sites"),
    ("GET", "/public/static/{name}"): public("the public pages' stylesheets and images"),
    ("GET", "/my-impact/{token}"): public("a customer's page; the secret token is the key"),
    ("GET", "/certificates/{certificate_id}"): public("a certificate, shared by its owner"),
    ("GET", "/certificates/{certificate_id}.png"): public("a certificate's image"),
    ("GET", "/certificates/{certificate_id}.pdf"): public("a certificate's PDF"),
    ("GET", "/certificates/{certificate_id}/image.png"): public("a certificate's image"),
    ("GET", "/certificates/{certificate_id}/certificate.pdf"): public("a certificate's PDF"),
    ("GET", "/certificate/{tracking_id}"): public("the certificate link /v1/track gives"),
    ("GET", "/certificate/{tracking_id}/image.png"): public("that certificate's image"),
    ("GET", "/certificate/{tracking_id}/certificate.pdf"): public("that certificate's PDF"),
    ("GET", "/v1/certificates/{certificate_id}"): public("anyone may verify a certificate"),
    ("GET", "/dashboard/login"): public("the sign-in page", lambda w: Call("/dashboard/login")),
    ("POST", "/dashboard/login"): public(
        "signing in",
        lambda w: Call("/dashboard/login", {"email": w.colleague_email, "password": PASSWORD}),
        ok=303,
        changes=True,
    ),
    ("GET", "/dashboard/forgot"): public(
        "asking for a reset link", lambda w: Call("/dashboard/forgot")
    ),
    ("POST", "/dashboard/forgot"): public(
        "asking for a reset link",
        lambda w: Call("/dashboard/forgot", {"email": w.colleague_email}),
        changes=True,
    ),
    ("GET", "/dashboard/invite/{token}"): public(
        "an invitation; the secret link is the key",
        lambda w: Call(f"/dashboard/invite/{w.invitation}"),
    ),
    ("POST", "/dashboard/invite/{token}"): public(
        "accepting an invitation; the secret link is the key",
        lambda w: Call(f"/dashboard/invite/{w.invitation}", {"password": NEW_PASSWORD}),
        ok=303,
        changes=True,
    ),
    ("GET", "/dashboard/reset/{token}"): public(
        "a reset link; the secret link is the key",
        lambda w: Call(f"/dashboard/reset/{w.reset}"),
    ),
    ("POST", "/dashboard/reset/{token}"): public(
        "setting a password with a reset link; the secret link is the key",
        lambda w: Call(f"/dashboard/reset/{w.reset}", {"password": NEW_PASSWORD}),
        ok=303,
        changes=True,
    ),
    # Dashboard: any signed-in member of the account ----------------------------------------
    ("GET", "/dashboard"): page(lambda w: Call("/dashboard")),
    ("GET", "/dashboard/impacts"): page(lambda w: Call("/dashboard/impacts")),
    ("GET", "/dashboard/impacts.csv"): page(lambda w: Call("/dashboard/impacts.csv")),
    ("GET", "/dashboard/impacts/{tracking_id}"): page(
        lambda w: Call(f"/dashboard/impacts/{w.tracking_id}"), victims=True
    ),
    ("GET", "/dashboard/customers"): page(lambda w: Call("/dashboard/customers")),
    ("GET", "/dashboard/customers/{customer_id}"): page(
        lambda w: Call(f"/dashboard/customers/{w.customer_id}"), victims=True
    ),
    ("GET", "/dashboard/certificates"): page(lambda w: Call("/dashboard/certificates")),
    ("GET", "/dashboard/profile"): page(lambda w: Call("/dashboard/profile")),
    ("GET", "/dashboard/developers"): page(lambda w: Call("/dashboard/developers")),
    ("GET", "/dashboard/team"): page(lambda w: Call("/dashboard/team")),
    ("GET", "/dashboard/schedules"): page(lambda w: Call("/dashboard/schedules")),
    ("GET", "/dashboard/budget"): page(lambda w: Call("/dashboard/budget")),
    ("GET", "/dashboard/webhooks"): page(lambda w: Call("/dashboard/webhooks")),
    ("GET", _WEBHOOK): page(lambda w: Call(_hook(w)), victims=True),
    ("POST", "/dashboard/logout"): action(MEMBER, lambda w: Call("/dashboard/logout")),
    ("POST", "/dashboard/env"): action(
        MEMBER, lambda w: Call("/dashboard/env", {"env": "sandbox"})
    ),
    ("POST", "/dashboard/team/password"): action(
        MEMBER,
        lambda w: Call(
            "/dashboard/team/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        ),
    ),
    # Members can cancel impacts (README: "members see everything and can cancel impacts").
    ("POST", "/dashboard/impacts/{tracking_id}/cancel"): action(
        MEMBER,
        lambda w: Call(f"/dashboard/impacts/{w.tracking_id}/cancel", {"reason": "refund"}),
        ok=200,
        victims=True,
    ),
    # Dashboard: owners only ------------------------------------------------------------------
    ("POST", "/dashboard/customers/{customer_id}/rotate-link"): action(
        OWNER, lambda w: Call(f"/dashboard/customers/{w.customer_id}/rotate-link"), victims=True
    ),
    ("POST", "/dashboard/profile"): action(OWNER, _fresh_profile),
    ("POST", "/dashboard/developers/keys"): action(
        OWNER, lambda w: Call("/dashboard/developers/keys", {"env": "sandbox"}), ok=200
    ),
    ("POST", "/dashboard/developers/keys/{prefix}/revoke"): action(
        OWNER,
        lambda w: Call(f"/dashboard/developers/keys/{w.key_prefix}/revoke"),
        victims=True,
        account_wide=True,
    ),
    ("POST", "/dashboard/team/invite"): action(
        OWNER,
        lambda w: Call("/dashboard/team/invite", {"email": unique_email("new"), "role": "owner"}),
        ok=200,
    ),
    ("POST", "/dashboard/team/{user_pk}/remove"): action(
        OWNER,
        lambda w: Call(f"/dashboard/team/{w.colleague_pk}/remove"),
        victims=True,
        account_wide=True,
    ),
    ("POST", "/dashboard/schedules"): action(
        OWNER, lambda w: Call("/dashboard/schedules", {k: str(v) for k, v in TREES.items()})
    ),
    ("POST", "/dashboard/schedules/{schedule_id}/{action}"): action(
        OWNER, lambda w: Call(f"/dashboard/schedules/{w.schedule_id}/pause"), victims=True
    ),
    ("POST", "/dashboard/budget"): action(
        OWNER, lambda w: Call("/dashboard/budget", {"monthly": "500"})
    ),
    ("POST", "/dashboard/webhooks"): action(
        OWNER, lambda w: Call("/dashboard/webhooks", {"url": HOOK_URL})
    ),
    # Shows the secret and changes nothing: a POST so that no GET, cache or history has it.
    ("POST", _WEBHOOK + "/secret"): action(
        OWNER, lambda w: Call(_hook(w, "/secret")), ok=200, victims=True, changes=False
    ),
    ("POST", _WEBHOOK + "/rotate-secret"): action(
        OWNER, lambda w: Call(_hook(w, "/rotate-secret")), ok=200, victims=True
    ),
    ("POST", _WEBHOOK + "/test"): action(
        OWNER, lambda w: Call(_hook(w, "/test")), ok=200, victims=True
    ),
    # Already enabled: whether that writes is not this test's business.
    ("POST", _WEBHOOK + "/enable"): action(
        OWNER, lambda w: Call(_hook(w, "/enable")), victims=True, changes=None
    ),
    ("POST", _WEBHOOK + "/disable"): action(
        OWNER, lambda w: Call(_hook(w, "/disable")), victims=True
    ),
    ("POST", _WEBHOOK + "/delete"): action(
        OWNER, lambda w: Call(_hook(w, "/delete")), victims=True
    ),
    ("POST", _WEBHOOK + "/deliveries/{delivery_id}/resend"): action(
        OWNER,
        lambda w: Call(_hook(w, f"/deliveries/{w.delivery_id}/resend")),
        victims=True,
    ),
    # API: an account key -------------------------------------------------------------------
    ("GET", "/v1/whoami"): api(lambda w: Call("/v1/whoami")),
    **{
        ("POST", f"/v1/{name}"): api(lambda w: Call("", json={"amount": 1}), changes=True)
        for name in ("plant_tree", "clean_ocean", "capture_carbon", "restore_coral")
    },
    ("POST", "/v1/donate_money"): api(lambda w: Call("", json={"amount": 100}), changes=True),
    ("POST", "/v1/cancel_impact"): api(
        lambda w: Call("", json={"user_id": w.user_id, "time_utc": w.impact_time}),
        victims=True,
        changes=True,
    ),
    ("GET", "/v1/records"): api(lambda w: Call("/v1/records")),
    ("GET", "/v1/customer_records"): api(lambda w: Call("/v1/customer_records")),
    ("GET", "/v1/track"): api(
        lambda w: Call("/v1/track", params={"user_id": w.user_id, "time_utc": w.impact_time}),
        victims=True,
    ),
    ("GET", "/v1/impact"): api(lambda w: Call("/v1/impact")),
    ("GET", "/v1/impact/daily"): api(lambda w: Call("/v1/impact/daily")),
    ("GET", "/v1/customers"): api(lambda w: Call("/v1/customers")),
    ("GET", "/v1/budget"): api(lambda w: Call("/v1/budget")),
    ("GET", "/v1/events"): api(lambda w: Call("/v1/events")),
    ("GET", "/v1/projects"): api(lambda w: Call("/v1/projects")),
    ("GET", "/v1/projects/{project_id}"): api(lambda w: Call(f"/v1/projects/{w.project_id}")),
    ("POST", "/v1/schedules"): api(lambda w: Call("", json=TREES), changes=True),
    ("GET", "/v1/schedules"): api(lambda w: Call("/v1/schedules")),
    ("GET", "/v1/schedules/{schedule_id}"): api(
        lambda w: Call(f"/v1/schedules/{w.schedule_id}"), victims=True
    ),
    ("PATCH", "/v1/schedules/{schedule_id}"): api(
        lambda w: Call(f"/v1/schedules/{w.schedule_id}", json={"status": "paused"}),
        victims=True,
        changes=True,
    ),
    ("DELETE", "/v1/schedules/{schedule_id}"): api(
        lambda w: Call(f"/v1/schedules/{w.schedule_id}"), victims=True, changes=True
    ),
    ("POST", "/v1/webhook_endpoints"): api(
        lambda w: Call("", json={"url": HOOK_URL}), changes=True
    ),
    ("GET", "/v1/webhook_endpoints"): api(lambda w: Call("/v1/webhook_endpoints")),
    ("GET", _ENDPOINT): api(lambda w: Call(_endpoint(w)), victims=True),
    ("PATCH", _ENDPOINT): api(
        lambda w: Call(_endpoint(w), json={"description": "changed"}), victims=True, changes=True
    ),
    ("DELETE", _ENDPOINT): api(lambda w: Call(_endpoint(w)), victims=True, changes=True),
    ("GET", _ENDPOINT + "/secret"): api(lambda w: Call(_endpoint(w, "/secret")), victims=True),
    ("POST", _ENDPOINT + "/rotate_secret"): api(
        lambda w: Call(_endpoint(w, "/rotate_secret")), victims=True, changes=True
    ),
    ("POST", _ENDPOINT + "/test"): api(
        lambda w: Call(_endpoint(w, "/test")), victims=True, changes=True
    ),
    ("GET", _ENDPOINT + "/deliveries"): api(
        lambda w: Call(_endpoint(w, "/deliveries")), victims=True
    ),
    ("POST", _ENDPOINT + "/deliveries/{delivery_id}/resend"): api(
        lambda w: Call(_endpoint(w, f"/deliveries/{w.delivery_id}/resend")),
        ok=202,
        victims=True,
        changes=True,
    ),
    ("POST", _ENDPOINT + "/recover"): api(
        lambda w: Call(_endpoint(w, "/recover"), json={"since": ms_to_iso(now_ms() - 3_600_000)}),
        ok=202,
        victims=True,
    ),
    # The operator's API ----------------------------------------------------------------------
    ("POST", "/admin/v1/lifecycle/receive"): operator(_batch),
    ("POST", "/admin/v1/lifecycle/transfer"): operator(_batch),
    ("POST", "/admin/v1/lifecycle/complete"): operator(_batch),
    ("GET", "/admin/v1/lifecycle/status"): operator(lambda w: Call("/admin/v1/lifecycle/status")),
    ("GET", "/admin/v1/impacts/{tracking_id}/transitions"): operator(
        lambda w: Call(f"/admin/v1/impacts/{w.tracking_id}/transitions")
    ),
    ("GET", "/admin/v1/accounts/{user_id}/projects"): operator(
        lambda w: Call(f"/admin/v1/accounts/{w.user_id}/projects")
    ),
    ("PUT", "/admin/v1/accounts/{user_id}/projects"): operator(
        lambda w: Call(f"/admin/v1/accounts/{w.user_id}/projects", json={"project_overrides": {}})
    ),
}


def request_of(route: Route, w: World) -> Call:
    """The rule's real request for the route; a call without a path of its own
    (the API's bodies) goes to the route's fixed path."""
    rule = RULES[route]
    assert rule.call is not None, f"{route} has no request to send"
    call = rule.call(w)
    return call if call.path else dataclasses.replace(call, path=route[1])


# Sending ---------------------------------------------------------------------------------


def send_form(who: TestClient, method: str, call: Call, token: str | None) -> Response:
    """A dashboard request as a page sends it (a form with its CSRF token)."""
    if method == "GET":
        return who.get(call.path, params=call.params)
    data = {**(call.data or {}), **({"csrf_token": token} if token else {})}
    return who.request(method, call.path, params=call.params, data=data)


def send_api(who: TestClient, method: str, call: Call, headers: dict[str, str]) -> Response:
    return who.request(method, call.path, params=call.params, json=call.json, headers=headers)


def as_owner(route: Route, w: World, call: Call | None = None) -> Response:
    """The victim's owner's own request (the control)."""
    method = route[0]
    call = call or request_of(route, w)
    rule = RULES[route]
    if rule.access == KEY:
        return send_api(browser(w.client), method, call, w.api.headers())
    if rule.access == OPERATOR:
        return send_api(browser(w.client), method, call, {"authorization": f"Bearer {ADMIN_TOKEN}"})
    if rule.by_anonymous:
        who, token = anonymous(w.client)
        return send_form(who, method, call, token)
    return send_form(w.owner.client, method, call, w.owner.csrf())


_IDS = (
    "tracking_id",
    "customer_id",
    "schedule_id",
    "endpoint_id",
    "delivery_id",
    "key_prefix",
    "colleague_pk",
    "impact_time",
)


def _without_ids(text: str, w: World) -> str:
    """A page or message without the ids it repeats (the path in the environment
    switch, an id in a message), to compare the answers about two ids. A
    number within a dotted one (a vendored library's version, htmx-2.0.11) is
    not an id."""
    for name in _IDS:
        value = str(getattr(w, name))
        for form in {quote(value, safe=""), value}:
            text = re.sub(rf"(?<![\w.-]){re.escape(form)}(?![\w-]|\.\d)", name.upper(), text)
    return text


# The tests ---------------------------------------------------------------------------------


def test_every_route_is_classified() -> None:
    unclassified = [route for route in ROUTES if route not in RULES]
    assert not unclassified, (
        "classify each new route in RULES (public with a reason, member, owner, key or "
        f"operator): {unclassified}"
    )
    stale = [route for route in RULES if route not in ROUTES]
    assert not stale, f"rules for routes the app no longer has: {stale}"
    for route, rule in RULES.items():
        assert rule.access in (PUBLIC, MEMBER, OWNER, KEY, OPERATOR), route
        assert rule.access != PUBLIC or rule.reason, f"{route}: say why it is public"
        assert rule.access == PUBLIC or rule.call is not None, f"{route}: no request to send"
        dashboard = route[1] == "/dashboard" or route[1].startswith("/dashboard/")
        if rule.access in (MEMBER, OWNER):
            assert dashboard, f"{route}: member and owner rules are for dashboard routes"
        if rule.access == KEY:
            assert route[1].startswith("/v1/"), route
        if rule.access == OPERATOR:
            assert route[1].startswith("/admin/v1/"), route


PROTECTED = [route for route in ROUTES if RULES.get(route, Rule(MEMBER)).access != PUBLIC]


def _id(route: Route) -> str:
    return f"{route[0]} {route[1]}"


@pytest.mark.parametrize("route", PROTECTED, ids=_id)
def test_intruders_get_the_documented_answer_and_change_nothing(
    client: TestClient, route: Route
) -> None:
    assert route in RULES, f"{_id(route)} is not classified in RULES"
    rule = RULES[route]
    w = build_world(client)
    db = db_of(client)
    attempts = {
        KEY: _api_intruders,
        OPERATOR: _operator_intruders,
        MEMBER: _dashboard_intruders,
        OWNER: _dashboard_intruders,
    }[rule.access](route, rule, w)
    before = snapshot(db, w.account_pk)
    for label, attempt in attempts:
        attempt()
        after = snapshot(db, w.account_pk)
        assert after == before, f"{_id(route)}, {label}: changed {changed(before, after)}"

    done = as_owner(route, w)
    assert done.status_code == rule.ok, (_id(route), done.status_code, done.text[:1000])
    if rule.changes is not None:
        after = snapshot(db, w.account_pk)
        assert (after != before) is rule.changes, (_id(route), changed(before, after))


Attempt = tuple[str, Callable[[], None]]


def _dashboard_intruders(route: Route, rule: Rule, w: World) -> list[Attempt]:
    method = route[0]
    call = request_of(route, w)
    attempts: list[Attempt] = []

    def not_found(who: Dashboard) -> None:
        """The same 404 page as for a thing that never existed."""
        answer = send_form(who.client, method, call, who.csrf())
        assert answer.status_code == 404, (answer.status_code, answer.text[:500])
        assert "Not found" in visible_text(answer.text)
        never = send_form(who.client, method, request_of(route, w.phantom()), who.csrf())
        assert never.status_code == 404
        assert _without_ids(answer.text, w) == _without_ids(never.text, w.phantom())

    def stranger() -> None:
        if rule.names_victims_object:
            not_found(w.stranger)
            return
        # Nothing of the victim's named: the stranger's own account's answer.
        answer = send_form(w.stranger.client, method, call, w.stranger.csrf())
        assert answer.status_code == rule.ok, (answer.status_code, answer.text[:500])

    attempts.append(("another account's owner", stranger))

    if rule.names_victims_object and not rule.account_wide:
        # The victim's own owner, the dashboard switched to the sandbox: the
        # production thing is not there.
        sandbox = again(w.owner)
        switched = sandbox.post("/dashboard/env", {"env": "sandbox"})
        assert switched.status_code == 303
        attempts.append(("the account's owner in the sandbox", lambda: not_found(sandbox)))

    if rule.access == OWNER:

        def member() -> None:
            answer = send_form(w.member.client, method, call, w.member.csrf())
            assert answer.status_code == 403, (answer.status_code, answer.text[:500])
            assert NOT_ALLOWED in visible_text(answer.text)

        attempts.append(("a member of the account", member))

    def nobody() -> None:
        # A signed-out browser with a valid form token: the session check answers.
        who, token = anonymous(w.client)
        answer = send_form(who, method, call, token)
        assert answer.status_code == 303, (answer.status_code, answer.text[:500])
        if method == "GET":
            # Back to the page after signing in.
            assert answer.headers["location"] == "/dashboard/login?next=" + quote(
                call.path, safe="/"
            )
        else:
            assert answer.headers["location"] == "/dashboard/login"

    attempts.append(("no session", nobody))
    return attempts


def _api_intruders(route: Route, rule: Rule, w: World) -> list[Attempt]:
    method = route[0]
    call = request_of(route, w)
    attempts: list[Attempt] = []
    others = [("another account's key", w.stranger_api.headers())]
    if rule.names_victims_object:
        # The victim's own sandbox key: production's things are not the sandbox's.
        others.append(("the account's own sandbox key", {"x-api-key": w.owner.account.sandbox_key}))
    for label, headers in others:

        def other(headers: dict[str, str] = headers) -> None:
            answer = send_api(browser(w.client), method, call, headers)
            if not rule.names_victims_object:
                assert answer.status_code == rule.ok, (answer.status_code, answer.text[:500])
                return
            assert answer.status_code == 404, (answer.status_code, answer.text[:500])
            assert answer.json()["type"] == "not_found"
            never = send_api(browser(w.client), method, request_of(route, w.phantom()), headers)
            assert never.status_code == 404
            assert _without_ids(answer.text, w) == _without_ids(never.text, w.phantom())

        attempts.append((label, other))

    for label, headers, message in (
        ("no key", {}, "missing x-api-key header"),
        (
            "a key that does not exist",
            {"x-api-key": "oi_live_" + "x" * 40},
            "API Key does not exist",
        ),
        ("the operator token as a key", {"x-api-key": ADMIN_TOKEN}, "API Key does not exist"),
    ):

        def nobody(headers: dict[str, str] = headers, message: str = message) -> None:
            answer = send_api(browser(w.client), method, call, headers)
            assert answer.status_code == 401, (answer.status_code, answer.text[:500])
            assert answer.json() == {"type": "key_error", "message": message}

        attempts.append((label, nobody))
    return attempts


def _operator_intruders(route: Route, rule: Rule, w: World) -> list[Attempt]:
    method = route[0]
    call = request_of(route, w)
    key = w.owner.account.production_key
    attempts: list[Attempt] = []
    for label, headers in (
        ("an account key", {"x-api-key": key}),
        ("an account key as the bearer token", {"authorization": f"Bearer {key}"}),
        ("no credentials", {}),
    ):

        def refused(headers: dict[str, str] = headers) -> None:
            answer = send_api(browser(w.client), method, call, headers)
            assert answer.status_code == 401, (answer.status_code, answer.text[:500])
            assert answer.json() == {"type": "key_error", "message": "invalid operator token"}

        attempts.append((label, refused))
    return attempts


def test_ids_of_two_objects_must_belong_together(client: TestClient) -> None:
    """A delivery id of the victim's endpoint, sent with the stranger's own
    endpoint, is no delivery of that endpoint (a 404), and resends nothing."""
    w = build_world(client)
    db = db_of(client)
    own = w.stranger_api.post("/v1/webhook_endpoints", {"url": HOOK_URL}).json()["id"]
    before = snapshot(db, w.account_pk)
    api_path = f"/v1/webhook_endpoints/{own}/deliveries/{w.delivery_id}/resend"
    answer = w.stranger_api.post(api_path, {})
    assert (answer.status_code, answer.json()["type"]) == (404, "not_found")
    page = w.stranger.post(f"/dashboard/webhooks/{own}/deliveries/{w.delivery_id}/resend")
    assert page.status_code == 404
    assert snapshot(db, w.account_pk) == before


class TestWithoutAnOperatorToken:
    """With OPENIMPACT_ADMIN_TOKEN unset the operator's API is off: every
    route is a 403, whatever key comes, and changes nothing."""

    @pytest.fixture
    def settings(self, database: TestDatabase) -> Settings:
        return database.settings(webhooks_allow_private=True)

    def test_every_operator_route_is_refused(self, client: TestClient) -> None:
        w = build_world(client)
        db = db_of(client)
        before = snapshot(db, w.account_pk)
        key = w.owner.account.production_key
        routes = [r for r in ROUTES if RULES.get(r, Rule(PUBLIC)).access == OPERATOR]
        assert len(routes) >= 7
        for route in routes:
            call = request_of(route, w)
            for headers in ({"x-api-key": key}, {"authorization": f"Bearer {key}"}, {}):
                answer = send_api(browser(client), route[0], call, headers)
                assert answer.status_code == 403, (_id(route), answer.text)
                assert answer.json()["type"] == "forbidden"
        after = snapshot(db, w.account_pk)
        assert after == before, changed(before, after)
