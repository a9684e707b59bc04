"""Hostile input: every malformed request is a JSON 4xx, answered quickly;
never a 500, never a hang, and nothing is written.

The app's own answers are checked in-process on both databases. What the
HTTP server (uvicorn with httptools) refuses before the app sees the request
is checked against a live server: those few answers are uvicorn's plain-text
400 (docs/reliability.md says which and why).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator, Sequence
from urllib.parse import unquote

import anyio
import pytest
from fastapi import FastAPI
from httpx import Response

from openimpact.kit import RECORD_KEYS
from tests.conftest import TestDatabase
from tests.factories import AccountKeys, Api, Caller
from tests.live import LiveServer, create_account, server_env

# Not a speed target (benchmarks measure speed): a bound far above any honest
# answer on a loaded CI machine, so that only a hang or a stall fails.
QUICK_SECONDS = 10.0
MAX_BODY = 64 * 1024  # Settings.max_body_bytes


def assert_json_4xx(response: Response, started: float, status: int | None = None) -> dict:
    elapsed = time.monotonic() - started
    assert elapsed < QUICK_SECONDS, f"took {elapsed:.1f}s"
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    if status is not None:
        assert response.status_code == status, response.text[:300]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["type"], str) and body["type"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def post_raw(caller: Caller, path: str, content: bytes, content_type: str | None) -> Response:
    headers = caller.headers()
    if content_type is not None:
        headers["content-type"] = content_type
    return caller.client.post(path, content=content, headers=headers)


def assert_nothing_written(caller: Caller) -> None:
    totals = caller.get("/v1/impact").json()
    assert all(totals[k] == 0 for k in RECORD_KEYS)
    assert caller.get("/v1/records").json() == {"user_records": []}
    assert caller.get("/v1/customers").json() == {"customers": []}


_DEEP = 20_000  # well past json's recursion limit, well under the body limit

BAD_BODIES: list[tuple[str, bytes, str | None, int]] = [
    # label, body, content type, expected status
    (
        "deeply nested arrays",
        b'{"amount": 1, "metadata": ' + b"[" * _DEEP + b"]" * _DEEP + b"}",
        "application/json",
        400,
    ),
    (
        "deeply nested objects",
        b'{"a":' * (_DEEP // 5) + b"1" + b"}" * (_DEEP // 5),
        "application/json",
        400,
    ),
    (
        "invalid UTF-8",
        b'{"amount": 1, "customer_email": "a@b.co", "customer_name": "\xff\xfe"}',
        "application/json",
        400,
    ),
    ("a raw NUL byte", b'{"amount": 1,\x00 "notify": true}', "application/json", 400),
    (
        "an escaped NUL in a string",
        b'{"amount": 1, "metadata": {"order": "a\\u0000b"}}',
        "application/json",
        400,
    ),
    (
        "a lone surrogate",
        b'{"amount": 1, "customer_email": "a@b.co", "customer_name": "\\ud800"}',
        "application/json",
        400,
    ),
    (
        "a lone surrogate in a metadata key",
        b'{"amount": 1, "metadata": {"\\udfff": "x"}}',
        "application/json",
        400,
    ),
    ("text/plain", b'{"amount": 1}', "text/plain", 415),
    ("no content type", b'{"amount": 1}', None, 415),
    ("a form", b"amount=1", "application/x-www-form-urlencoded", 415),
    (
        "multipart",
        b'--x\r\nContent-Disposition: form-data; name="amount"\r\n\r\n1\r\n--x--\r\n',
        "multipart/form-data; boundary=x",
        415,
    ),
    ("2**64", b'{"amount": 18446744073709551616}', "application/json", 400),
    ("-2**64", b'{"amount": -18446744073709551616}', "application/json", 400),
    (
        "2**64 in metadata",
        b'{"amount": 1, "metadata": {"n": 18446744073709551616}}',
        "application/json",
        400,
    ),
    ("an integer of 5000 digits", b'{"amount": ' + b"9" * 5000 + b"}", "application/json", 400),
    ("a float", b'{"amount": 1.5}', "application/json", 400),
    # 2.0 is the integer 2 (tests/impacts/test_create.py::TestIntegers), but
    # one past every limit is still refused.
    ("a huge whole float", b'{"amount": 1e30}', "application/json", 400),
    ("1e400", b'{"amount": 1e400}', "application/json", 400),
    ("NaN", b'{"amount": NaN}', "application/json", 400),
    ("Infinity", b'{"amount": Infinity}', "application/json", 400),
    ("-Infinity", b'{"amount": -Infinity}', "application/json", 400),
    ("NaN in notify", b'{"amount": 1, "notify": NaN}', "application/json", 400),
    ("a boolean", b'{"amount": true}', "application/json", 400),
    ("a string", b'{"amount": "1"}', "application/json", 400),
    ("null", b"null", "application/json", 400),
    ("an array", b"[1]", "application/json", 400),
    ("an empty body", b"", "application/json", 400),
    ("not JSON", b"{amount: 1", "application/json", 400),
    (
        "one byte over the limit",
        b'{"amount": 1, "metadata": {"a": "' + b"x" * MAX_BODY + b'"}}',
        "application/json",
        413,
    ),
]


@pytest.mark.parametrize(
    ("label", "content", "content_type", "status"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_are_json_4xx(
    api: Api, label: str, content: bytes, content_type: str | None, status: int
) -> None:
    caller = api.as_(api.account())
    for path in ("/v1/plant_tree", "/v1/donate_money"):
        started = time.monotonic()
        assert_json_4xx(post_raw(caller, path, content, content_type), started, status)
    assert_nothing_written(caller)


def test_bad_cancel_bodies_are_json_4xx(api: Api) -> None:
    caller = api.as_(api.account())
    impact = caller.plant(3)
    bodies = [
        {"user_id": impact["user_id"], "time_utc": 2**64},
        {"user_id": 2**64, "time_utc": impact["time_utc"]},
        {"user_id": impact["user_id"], "time_utc": "\u0000"},
        {"user_id": "\u0000", "time_utc": impact["time_utc"]},
        {"user_id": impact["user_id"], "time_utc": impact["time_utc"], "reason": "\u0000"},
        {"user_id": impact["user_id"], "time_utc": "99999-01-01T00:00:00Z"},
        {"user_id": impact["user_id"], "time_utc": True},
        {"user_id": impact["user_id"], "time_utc": None},
    ]
    for body in bodies:
        started = time.monotonic()
        assert_json_4xx(caller.post("/v1/cancel_impact", body), started, 400)
    for body, ct in [(b'{"user_id": NaN}', "application/json"), (b"x", "text/plain")]:
        started = time.monotonic()
        assert_json_4xx(post_raw(caller, "/v1/cancel_impact", body, ct), started)
    assert caller.get("/v1/impact").json()["tree_planted"] == 3


def test_oversized_bodies_are_413_json_whatever_the_framing(api: Api) -> None:
    caller = api.as_(api.account())
    headers = {**caller.headers(), "content-type": "application/json"}
    big = b'{"amount": 1, "metadata": {"a": "' + b"x" * (4 * MAX_BODY) + b'"}}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    for content, extra in (
        (big, {}),
        (chunks(), {}),
        # A Content-Length of 5000 digits is refused before anything reads it.
        (b"{}", {"content-length": "9" * 5000}),
    ):
        started = time.monotonic()
        response = caller.client.post("/v1/plant_tree", content=content, headers=headers | extra)
        assert assert_json_4xx(response, started, 413)["type"] == "payload_too_large"
    assert_nothing_written(caller)


def _bad_queries(account: AccountKeys) -> list[tuple[str, int]]:
    return [
        ("/v1/records?limit=1000000000", 400),
        ("/v1/records?limit=18446744073709551616", 400),
        ("/v1/records?limit=" + "9" * 5000, 400),
        ("/v1/records?limit=-1", 400),
        ("/v1/records?limit=1.5", 400),
        ("/v1/records?limit=NaN", 400),
        ("/v1/records?limit=true", 400),
        ("/v1/customers?limit=1e3", 400),
        ("/v1/records?cursor=%00", 400),
        ("/v1/records?cursor=garbage", 400),
        ("/v1/records?cursor=e30.AAAA", 400),
        ("/v1/records?cursor=" + "A" * 501, 400),
        ("/v1/customers?cursor=..", 400),
        ("/v1/customer_records?cursor=x.y", 400),
        ("/v1/records?filter_by=%00", 400),
        ("/v1/records?filter_by=tree_planted%00", 400),
        ("/v1/records?filter_by=%FF", 400),
        ("/v1/records?start_date=%FF%FE", 400),
        ("/v1/records?start_date=2024-02-30", 400),
        ("/v1/records?start_date=", 400),
        ("/v1/impact/daily?end_date=99999-01-01", 400),
        ("/v1/customers?customer_email=%00", 400),
        ("/v1/customers?customer_email=a%00b%40c.co", 400),
        ("/v1/customers?customer_email=%FF%40x.co", 400),
        ("/v1/customer_records?customer_email=%00", 400),
        ("/v1/customer_records?customer_email=%ED%A0%80", 400),
        (f"/v1/track?user_id={account.user_id}&time_utc=%00", 400),
        ("/v1/track?user_id=%00&time_utc=2024-01-01T00:00:00.000Z", 400),
        ("/v1/track?user_id=%C0%AF&time_utc=2024-01-01T00:00:00.000Z", 400),
        (f"/v1/track?user_id={account.user_id}&time_utc=2024-01-01T00:00:00.000Z&time_utc=", 400),
        (f"/v1/track?user_id={account.user_id}&time_utc=NaN", 400),
        (f"/v1/track?user_id={account.user_id}&time_utc=" + "9" * 64, 400),
        ("/v1/projects/%00", 400),
        ("/v1/projects/%FF", 400),
        ("/v1/projects?locale=%00", 400),
        ("/v1/records?" + "&".join(["filter_by=tree_planted"] * 11), 400),
        ("/v1/records?" + "&".join(["limit=1"] * 101), 400),
    ]


def test_bad_queries_are_json_4xx(api: Api) -> None:
    account = api.account()
    caller = api.as_(account)
    caller.plant(1, customer_email="jane@example.com")
    for url, status in _bad_queries(account):
        started = time.monotonic()
        response = caller.client.get(url, headers=caller.headers())
        try:
            assert_json_4xx(response, started, status)
        except AssertionError as exc:
            raise AssertionError(f"{url[:120]}: {exc}") from None


async def _asgi(
    app: FastAPI, path: str, query: bytes, headers: Sequence[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One GET straight into the app, for what an HTTP client would refuse to
    send (a URL of 80 kB, a NUL in a header value)."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def test_a_parameter_repeated_10000_times_is_a_quick_json_400(api: Api) -> None:
    account = api.account()
    key = account.production_key.encode()
    app = api.client.app
    for query in (
        b"&".join([b"limit=1"] * 10_000),
        b"&".join([b"filter_by=tree_planted"] * 10_000),
    ):
        started = time.monotonic()
        status, headers, body = anyio.run(_asgi, app, "/v1/records", query, [(b"x-api-key", key)])
        assert time.monotonic() - started < QUICK_SECONDS
        assert status == 400
        assert headers[b"content-type"] == b"application/json"
        assert "query parameters" in json.loads(body)["message"]


def test_bad_header_values_are_json_4xx(api: Api) -> None:
    account = api.account()
    caller = api.as_(account)
    app = api.client.app
    # What an HTTP client refuses to send, straight into the app.
    for headers in (
        [(b"x-api-key", b"oi_live_\x00")],
        [(b"x-api-key", account.production_key.encode() + b"\x00")],
        [(b"x-api-key", b"oi_live_\xff\xfe\xed\xa0\x80")],
        [(b"x-api-key", b"oi_live_" + b"A" * 100_000)],
    ):
        started = time.monotonic()
        status, _, body = anyio.run(_asgi, app, "/v1/whoami", b"", headers)
        assert time.monotonic() - started < QUICK_SECONDS
        assert status == 401, body
        assert json.loads(body)["type"] == "key_error"
    plant = {"amount": 1}
    for value in (b"\xff\xfe", b"a\x00b", b"\xed\xa0\x80", b"x" * 256, b"\t"):
        started = time.monotonic()
        response = caller.client.post(
            "/v1/plant_tree", json=plant, headers={**caller.headers(), "Idempotency-Key": value}
        )
        body = assert_json_4xx(response, started, 400)
        assert body["message"].startswith("Idempotency-Key: ")
    assert_nothing_written(caller)


# -- the HTTP layer ---------------------------------------------------------


def _exchange(server: LiveServer, raw: bytes, timeout: float = QUICK_SECONDS) -> bytes:
    """Send ``raw`` and read the answer until the server closes."""
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(raw)
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            # The server answered and closed before reading all we sent.
            pass
    return answer


@pytest.fixture
def live(database: TestDatabase) -> Iterator[tuple[LiveServer, dict[str, str]]]:
    env = server_env(database.url)
    account = create_account(env, "hostile@example.com")
    server = LiveServer(env).start()
    try:
        yield server, account
    finally:
        server.stop()


def test_the_http_server_refuses_broken_requests_at_once(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    """Requests no HTTP client sends: uvicorn answers them itself with a plain
    400 and closes the connection, quickly, and keeps serving everyone else."""
    server, account = live
    key = account["production_key"].encode()
    head = b"Host: x\r\nx-api-key: " + key + b"\r\nConnection: close\r\n"
    broken = [
        # a parameter repeated 10,000 times: a request line of 80 kB
        b"GET /v1/records?" + b"&".join([b"limit=1"] * 10_000) + b" HTTP/1.1\r\n" + head + b"\r\n",
        b"GET /v1/customers?customer_email=a\x00b HTTP/1.1\r\n" + head + b"\r\n",
        b"GET /v1/customers?customer_email=a\xffb HTTP/1.1\r\n" + head + b"\r\n",
        b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nx-api-key: oi_live_\x00\r\n\r\n",
        b"POST /v1/plant_tree HTTP/1.1\r\n"
        + head
        + b"Content-Length: "
        + b"9" * 5000
        + b"\r\n\r\n{}",
    ]
    for raw in broken:
        started = time.monotonic()
        answer = _exchange(server, raw)
        assert time.monotonic() - started < QUICK_SECONDS
        assert answer.startswith(b"HTTP/1.1 400 "), (raw[:60], answer[:200])

    # What reaches the app over a real socket is JSON, oversized bodies included.
    chunked_1mb = b"".join(b"%x\r\n%s\r\n" % (65536, b" " * 65536) for _ in range(16))
    reaching = [
        (
            b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nx-api-key: oi_live_\xff\xfe\r\n"
            b"Connection: close\r\n\r\n",
            b"401",
        ),
        (b"GET /v1/customers?customer_email=%00 HTTP/1.1\r\n" + head + b"\r\n", b"400"),
        (
            b"POST /v1/plant_tree HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + chunked_1mb + b"0\r\n\r\n",
            b"413",
        ),
        (
            b"POST /v1/plant_tree HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
            b"Content-Length: 1048576\r\n\r\n" + b" " * 1048576,
            b"413",
        ),
    ]
    for raw, status in reaching:
        started = time.monotonic()
        answer = _exchange(server, raw)
        assert time.monotonic() - started < QUICK_SECONDS
        head_part, _, body = answer.partition(b"\r\n\r\n")
        assert head_part.startswith(b"HTTP/1.1 " + status), answer[:200]
        assert b"content-type: application/json" in head_part.lower()
        assert set(json.loads(body)) == {"type", "message"}


def test_a_stalled_request_does_not_hold_up_others(
    live: tuple[LiveServer, dict[str, str]],
) -> None:
    """A client that promises a body and never sends it waits alone (uvicorn
    has no body timeout; docs/reliability.md): the server keeps answering."""
    server, account = live
    stalled = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(20)]
    try:
        for sock in stalled:
            sock.sendall(
                b"POST /v1/plant_tree HTTP/1.1\r\nHost: x\r\nx-api-key: "
                + account["production_key"].encode()
                + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"amo'
            )
        started = time.monotonic()
        answer = _exchange(
            server,
            b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nx-api-key: "
            + account["production_key"].encode()
            + b"\r\nConnection: close\r\n\r\n",
        )
        assert time.monotonic() - started < QUICK_SECONDS
        assert answer.startswith(b"HTTP/1.1 200 ")
    finally:
        for sock in stalled:
            sock.close()
