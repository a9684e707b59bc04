"""The SSRF guard: every refused address class, at creation and at delivery,
and a name whose DNS answer changes between the check and the connection."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from openimpact.app import create_app
from openimpact.webhooks import guard
from tests.conftest import TestDatabase
from tests.factories import Api
from tests.webhooks.helpers import deliver, deliveries, endpoint
from tests.webhooks.receiver import Receiver

REFUSED = [
    ("http://127.0.0.1/hook", "loopback"),
    ("http://127.8.9.10/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://10.0.0.8/hook", "private"),
    ("http://172.16.5.4/hook", "private"),
    ("http://192.168.1.20/hook", "private"),
    ("http://[fd00::8]/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.10.1/hook", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://224.0.0.5/hook", "multicast"),
    ("http://[ff02::1]/hook", "multicast"),
    ("http://0.0.0.0/hook", "unspecified"),
    ("http://100.64.0.1/hook", "reserved"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://[::ffff:10.1.1.1]/hook", "private"),
    ("http://2130706433/hook", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://0177.0.0.1/hook", "loopback"),  # octal
    ("http://0x7f.0.0.1/hook", "loopback"),  # hexadecimal
    ("http://localhost:8000/hook", "loopback"),  # a name that resolves to one
]


@pytest.fixture
def guarded(database: TestDatabase) -> Iterator[Api]:
    settings = database.settings(webhooks_allow_private=False)
    with TestClient(create_app(settings)) as client:
        yield Api(client)


@pytest.mark.parametrize(("url", "kind"), REFUSED)
def test_refused_when_saved(guarded: Api, url: str, kind: str) -> None:
    me = guarded.as_(guarded.account())
    response = me.post("/v1/webhook_endpoints", {"url": url})
    assert response.status_code == 400, response.text
    message = response.json()["message"]
    assert message.startswith("url: ") and kind in message
    assert "public addresses only" in message
    assert me.get("/v1/webhook_endpoints").json()["webhook_endpoints"] == []


def test_a_public_address_is_accepted(guarded: Api) -> None:
    me = guarded.as_(guarded.account())
    made = endpoint(me, "https://93.184.216.34/hook")
    assert made["url"] == "https://93.184.216.34/hook"
    # A change of URL is checked as well.
    response = me.client.patch(
        f"/v1/webhook_endpoints/{made['id']}",
        json={"url": "http://10.0.0.1/"},
        headers=me.headers(),
    )
    assert response.status_code == 400 and "private" in response.json()["message"]


def test_an_unresolvable_name_is_refused(guarded: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver answers that the name does not exist (as it does for
    ``.invalid``); the answer is made here, so that the test does not depend
    on the machine having a DNS server to ask."""
    real = socket.getaddrinfo

    def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_name)
    me = guarded.as_(guarded.account())
    response = me.post("/v1/webhook_endpoints", {"url": "https://no-such-host.invalid/x"})
    assert response.status_code == 400, response.text
    assert response.json()["message"] == "url: the host no-such-host.invalid cannot be resolved"
    assert me.get("/v1/webhook_endpoints").json()["webhook_endpoints"] == []


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "2a00:1450:4001::200e"],
)
def test_public_addresses_pass(address: str) -> None:
    assert guard.refusal(ipaddress.ip_address(address)) is None


def test_dns_that_changes_after_the_check_is_refused_at_connect(
    guarded: Api, rx: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name resolves to a public address when the endpoint is saved and to
    the receiver on 127.0.0.1 when the worker connects: nothing is sent."""
    port = int(rx.url.split(":")[2].split("/")[0])
    answers = {"count": 0}
    real = socket.getaddrinfo

    def rebinding(host: str, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example":
            return real(host, *args, **kwargs)
        answers["count"] += 1
        address = "93.184.216.34" if answers["count"] == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    me = guarded.as_(guarded.account())
    made = endpoint(me, f"http://rebind.example:{port}/hook")
    me.plant(1)
    deliver(guarded)
    assert answers["count"] >= 2
    assert rx.requests == []
    (attempt,) = deliveries(me, made["id"])
    assert attempt["succeeded"] is False
    assert attempt["error"].startswith("refused: ") and "loopback" in attempt["error"]


def test_an_address_literal_is_checked_at_delivery_too(
    database: TestDatabase, rx: Receiver
) -> None:
    """Saved while private addresses were allowed, refused once they are not."""
    with TestClient(create_app(database.settings(webhooks_allow_private=True))) as client:
        api = Api(client)
        me = api.as_(api.account())
        made = endpoint(me, rx.url)
    with TestClient(create_app(database.settings(webhooks_allow_private=False))) as client:
        api = Api(client)
        me.client = client
        me.plant(1)
        deliver(api)
        assert rx.requests == []
        (attempt,) = deliveries(me, made["id"])
        assert "refused: " in attempt["error"] and "loopback" in attempt["error"]


def test_an_ipv6_mapped_spelling_is_unwrapped() -> None:
    assert guard.refusal(ipaddress.ip_address("::ffff:169.254.169.254")) == (
        "a cloud metadata address"
    )
    assert guard.refusal(ipaddress.ip_address("2002:a00:1::1")) == "a private address"  # 6to4
