"""The impact POSTs' fast path (impacts/fastpath.py) answers exactly as the
route does: it serves the requests it can, and hands every other one to the
route untouched."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from openimpact.impacts import fastpath
from openimpact.impacts.router import IMPACTS
from openimpact.impacts.router import router as impacts_router
from tests.factories import Api, Caller, _h

ENDPOINTS = {path.removeprefix("/"): impact_type for path, (impact_type, _) in IMPACTS.items()}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The impact types the fast path wrote (the route's own calls are not
    counted: it calls ``create_impact`` by its own module's name)."""
    seen: list[str] = []
    original = fastpath.create_impact

    async def counting(request: Any, caller: Any, key: Any, impact_type: str, body: Any) -> Any:
        seen.append(impact_type)
        return await original(request, caller, key, impact_type, body)

    monkeypatch.setattr(fastpath, "create_impact", counting)
    yield seen


def _post(me: Caller, path: str, content: bytes, content_type: str | None, **headers: str):
    sent = me.headers(_h(headers))
    if content_type is not None:
        sent["Content-Type"] = content_type
    return me.client.post(path, content=content, headers=sent)


def test_the_table_names_each_impact_route_with_its_body_model() -> None:
    routes = {
        route.path: route
        for route in impacts_router.routes
        if "POST" in getattr(route, "methods", ()) and route.path.removeprefix("/v1") in IMPACTS
    }
    assert set(routes) == {impacts_router.prefix + path for path in IMPACTS}
    for path, (_, model) in IMPACTS.items():
        route = routes[impacts_router.prefix + path]
        assert route.body_field is not None
        assert route.body_field.field_info.annotation is model


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_valid_request_is_served_by_the_fast_path_like_the_route(
    api: Api, served: list[str], endpoint: str
) -> None:
    me = api.as_(api.account())
    body = {"amount": 3, "customer_email": "Jane@Example.com", "customer_name": "Jane"}
    fast = _post(me, f"/v1/{endpoint}", json.dumps(body).encode(), "application/json")
    assert served == [ENDPOINTS[endpoint]]
    # application/*+json is the route's to parse: the same request, by the route.
    routed = _post(me, f"/v1/{endpoint}", json.dumps(body).encode(), "application/vnd.api+json")
    assert served == [ENDPOINTS[endpoint]]
    assert fast.status_code == routed.status_code == 200
    a, b = fast.json(), routed.json()
    assert a.keys() == b.keys()
    assert a[ENDPOINTS[endpoint]] == b[ENDPOINTS[endpoint]] == 3
    assert a["customer"] == b["customer"]  # one customer per email, whichever path
    assert a["time_utc"] < b["time_utc"]


@pytest.mark.parametrize(
    ("content", "content_type", "headers", "status", "message"),
    [
        (b'{"amount": 0}', "application/json", {}, 400, "amount:"),
        (b'{"amount": 1', "application/json", {}, 400, "body: is not valid JSON"),
        (b"", "application/json", {}, 400, "body: Field required"),
        (b'{"amount": 1}', "text/plain", {}, 415, "body: send JSON"),
        (b'{"amount": 1}', None, {}, 415, "body: send JSON"),
        (b"\xff\xfe", "application/json", {}, 400, "body: is not valid JSON"),
        (b"[" * 50_000, "application/json", {}, 400, "body: is not valid JSON"),
        (b'{"amount": 1}', "application/json", {"Idempotency-Key": "\u00e9"}, 400, "Idempotency"),
        (b'{"amount": 1}', "application/json", {"Idempotency-Key": "k" * 256}, 400, "Idempotency"),
    ],
)
def test_a_request_the_fast_path_cannot_serve_gets_the_routes_answer(
    api: Api,
    served: list[str],
    content: bytes,
    content_type: str | None,
    headers: dict[str, str],
    status: int,
    message: str,
) -> None:
    me = api.as_(api.account())
    sent: dict[str, str | bytes] = {**me.headers(), **{k: v.encode() for k, v in headers.items()}}
    if content_type is not None:
        sent["Content-Type"] = content_type
    else:
        sent.pop("Content-Type", None)
    response = me.client.post("/v1/plant_tree", content=content, headers=sent)
    assert served == []
    assert response.status_code == status, response.text
    assert set(response.json()) == {"type", "message"}
    assert message in response.json()["message"]
    assert me.walk("/v1/records", "user_records") == []


def test_a_bad_key_with_a_valid_body_is_a_401_from_the_fast_path(
    api: Api, served: list[str]
) -> None:
    me = api.as_(api.account())
    for key in ("", "oi_live_nope", "nonsense"):
        response = me.client.post(
            "/v1/plant_tree", json={"amount": 1}, headers={"x-api-key": key} if key else {}
        )
        assert response.status_code == 401
        assert response.json()["type"] == "key_error"
    # An invalid body with a bad key: the route checks the key first, as before.
    response = me.client.post("/v1/plant_tree", json={"amount": 0}, headers={"x-api-key": "x"})
    assert response.status_code == 401
    assert served == []


def test_an_idempotent_replay_and_a_conflict_are_the_same_on_both_paths(
    api: Api, served: list[str]
) -> None:
    me = api.as_(api.account())
    first = _post(me, "/v1/plant_tree", b'{"amount": 2}', "application/json", Idempotency_Key="k1")
    again = _post(
        me, "/v1/plant_tree", b'{"amount": 2}', "application/vnd.api+json", Idempotency_Key="k1"
    )
    assert served == ["tree_planted"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = _post(me, "/v1/plant_tree", b'{"amount": 3}', "application/json", Idempotency_Key="k1")
    assert other.status_code == 409
    assert other.json()["type"] == "idempotency_error"
    assert len(me.walk("/v1/records", "user_records")) == 1


@pytest.mark.parametrize(
    "scope",
    [
        {"headers": [(b"host", b"shop.example")], "server": ("10.0.0.1", 8000)},
        {"headers": [(b"host", b"shop.example:8443")], "scheme": "https"},
        {"headers": [], "server": ("10.0.0.1", 8000), "root_path": "/api"},
        {"headers": [], "server": ("::1", 443), "scheme": "https"},
        {"headers": [(b"host", b"bad host")], "server": ["127.0.0.1", 80]},
        {"headers": [], "server": None},
    ],
)
def test_the_base_url_is_the_requests_own(scope: dict[str, Any]) -> None:
    from starlette.requests import Request

    from openimpact.impacts.router import public_base_url

    full = {"type": "http", "path": "/v1/plant_tree", "query_string": b"q=1", **scope}
    request = Request(full)
    request.scope["app"] = type("App", (), {"state": type("S", (), {"settings": _NoPublicUrl})})
    assert public_base_url(request) == str(Request(full).base_url)


class _NoPublicUrl:
    public_url = None
