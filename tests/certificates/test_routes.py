"""Public certificate routes: page, PNG, PDF and verification JSON, as anyone
with the link sees them (no API key)."""

from __future__ import annotations

import base64
import hashlib
import io
import re
from html.parser import HTMLParser
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from pypdf import PdfReader

from openimpact.lifecycle.service import CompleteOptions, Selection, run_batch
from tests.factories import Api

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")


class _Meta(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "meta" and values.get("property"):
            self.meta[values["property"] or ""] = values.get("content") or ""
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def _meta(html: str) -> _Meta:
    parser = _Meta()
    parser.feed(html)
    return parser


def _certified(api: Api, name: str = "Acme", **fields: Any) -> tuple[Any, dict[str, Any], str]:
    """A production impact on behalf of a customer: account, POST answer, tracking id."""
    account = api.account(name=name)
    defaults = {"customer_email": "jane.doe@example.com", "customer_name": "Jane"}
    created = api.as_(account).plant(5, **(defaults | fields))
    return account, created, f"{account.user_id}-{created['time_utc']}"


def _advance(api: Api, tid: str, *actions: str, **options: Any) -> None:
    for action in actions:
        run_batch(
            api.db,
            action,
            Selection(tracking_ids=(tid,)),
            actor="test",
            options=CompleteOptions(**options) if action == "complete" else None,
        )


def _certificate_id(client: TestClient, tid: str) -> str:
    page = client.get(f"/certificate/{tid}")
    assert page.status_code == 200, page.text
    return _meta(page.text).meta["og:url"].rsplit("/", 1)[1]


class TestPage:
    def test_the_url_track_returns_shows_the_certificate(
        self, client: TestClient, api: Api
    ) -> None:
        account, created, tid = _certified(api)
        track = api.as_(account).get(
            "/v1/track", user_id=account.user_id, time_utc=created["time_utc"]
        )
        url = track.json()["certificate"]
        assert url == f"http://testserver/certificate/{tid}"
        _advance(api, tid, "receive", "transfer", "complete", impact_video="https://v.example/1")

        page = client.get(url)  # no API key: public
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        html = page.text
        for text in (
            "Acme planted 5 trees on behalf of Jane",
            "5 trees planted",
            "Menabe Mangrove Trust",
            "Mangrove",
            "Transferred to Partner",
            "Completed",
            "Copy link",
        ):
            assert text in html, text
        assert not EMAIL.search(html), EMAIL.search(html)

        parsed = _meta(html)
        cid = parsed.meta["og:url"].rsplit("/", 1)[1]
        assert len(cid) >= 12 and cid in html
        assert parsed.meta["og:url"] == f"http://testserver/certificates/{cid}"
        assert parsed.meta["og:image"] == f"http://testserver/certificates/{cid}/image.png"
        assert "Acme planted 5 trees" in parsed.meta["og:title"]
        shares = " ".join(parsed.links)
        for network in ("linkedin.com/sharing", "twitter.com/intent/tweet", "facebook.com/sharer"):
            assert network in shares

        by_id = client.get(f"/certificates/{cid}")
        assert by_id.status_code == 200
        assert _meta(by_id.text).meta == parsed.meta

    def test_no_email_on_any_public_page(self, client: TestClient, api: Api) -> None:
        # A business whose display name holds an address, a cancellation reason
        # that quotes one, and a customer named by an address.
        account, created, tid = _certified(
            api, name="Shop (sales@shop.example)", customer_name="jane@example.com"
        )
        cancel = api.as_(account).post(
            "/v1/cancel_impact",
            {
                "user_id": account.user_id,
                "time_utc": created["time_utc"],
                "reason": "refund asked by jane.doe@example.com",
            },
        )
        assert cancel.status_code == 200
        cid = _certificate_id(client, tid)
        for path in (f"/certificate/{tid}", f"/certificates/{cid}", f"/v1/certificates/{cid}"):
            response = client.get(path)
            assert response.status_code == 200
            assert not EMAIL.search(response.text), (path, EMAIL.search(response.text))
        text = PdfReader(io.BytesIO(client.get(f"/certificates/{cid}.pdf").content)).pages[0]
        assert not EMAIL.search(text.extract_text())


class TestPageSecurity:
    def test_a_strict_csp_that_runs_only_the_pages_own_code(
        self, client: TestClient, api: Api
    ) -> None:
        """The page stays whole when saved (its style and script inline), and
        its CSP allows exactly those two by their hashes: no other inline
        code, no inline style attribute, runs."""
        _me, _impact, tid = _certified(api, "Acme")
        page = client.get(f"/certificate/{tid}")
        assert page.status_code == 200
        csp = dict(
            part.strip().split(" ", 1)
            for part in page.headers["content-security-policy"].split(";")
        )
        assert "unsafe-inline" not in page.headers["content-security-policy"]
        assert csp["frame-ancestors"] == "'none'" and csp["default-src"] == "'none'"
        assert page.headers["x-content-type-options"] == "nosniff"
        for tag, directive in (("style", "style-src"), ("script", "script-src")):
            (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>", page.text, re.S)
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert csp[directive] == f"'self' 'sha256-{digest}'"
        assert " style=" not in page.text


class TestFiles:
    def test_png_and_pdf(self, client: TestClient, api: Api) -> None:
        _account, _created, tid = _certified(api)
        _advance(api, tid, "receive", "transfer")
        cid = _certificate_id(client, tid)
        for path in (
            f"/certificates/{cid}/image.png",
            f"/certificates/{cid}.png",
            f"/certificate/{tid}/image.png",
        ):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == "image/png"
            image = Image.open(io.BytesIO(response.content))
            assert (image.format, image.size) == ("PNG", (1200, 630))
        for path in (
            f"/certificates/{cid}/certificate.pdf",
            f"/certificates/{cid}.pdf",
            f"/certificate/{tid}/certificate.pdf",
        ):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == "application/pdf"
            reader = PdfReader(io.BytesIO(response.content))
            assert len(reader.pages) == 1
            box = reader.pages[0].mediabox
            assert (round(float(box.width)), round(float(box.height))) == (595, 842)  # A4
            text = reader.pages[0].extract_text()
            assert cid in text
            assert f"/certificates/{cid}" in text  # the page the QR code points to


class TestVerification:
    def test_facts_follow_the_lifecycle(self, client: TestClient, api: Api) -> None:
        account, created, tid = _certified(api, category="food")
        cid = _certificate_id(client, tid)
        facts = client.get(f"/v1/certificates/{cid}").json()
        assert facts["status"] == "in_progress"
        assert facts["certificate_id"] == cid
        assert facts["tracking_id"] == tid
        assert (facts["impact_type"], facts["amount"], facts["unit"]) == (
            "tree_planted",
            5,
            "trees",
        )
        assert facts["description"] == "5 food trees planted"
        assert facts["headline"] == "Acme planted 5 food trees on behalf of Jane"
        assert (facts["business_name"], facts["customer_name"]) == ("Acme", "Jane")
        assert facts["issued_on"] == created["time_utc"]
        assert [s.get("reached_on") is not None for s in facts["stages"]] == [
            True,
            False,
            False,
            False,
        ]
        assert "partner" not in facts and "completed_on" not in facts

        _advance(api, tid, "receive", "transfer", "complete")
        facts = client.get(f"/v1/certificates/{cid.upper()}").json()
        assert facts["status"] == "completed"
        assert all("reached_on" in s for s in facts["stages"])
        assert facts["partner"]["name"] == "Rwenzori Smallholder Agroforestry Cooperative"
        assert facts["project"]["project_id"] == "food-trees-rwenzori-uganda"
        assert "live_session_date" in facts and "completed_on" in facts
        assert facts["certificate_url"] == f"http://testserver/certificates/{cid}"
        assert facts["pdf_url"].endswith(f"/certificates/{cid}/certificate.pdf")
        assert account.email not in client.get(f"/v1/certificates/{cid}").text

    def test_a_cancelled_impact_is_void(self, client: TestClient, api: Api) -> None:
        account, created, tid = _certified(api)
        cid = _certificate_id(client, tid)
        api.as_(account).post(
            "/v1/cancel_impact", {"user_id": account.user_id, "time_utc": created["time_utc"]}
        )
        facts = client.get(f"/v1/certificates/{cid}").json()
        assert facts["status"] == "void"
        assert "cancelled_on" in facts
        page = client.get(f"/certificates/{cid}").text
        assert "VOID" in page

    def test_public_in_the_openapi_document(self, client: TestClient) -> None:
        spec = client.get("/openapi.json").json()
        operation = spec["paths"]["/v1/certificates/{certificate_id}"]["get"]
        assert not operation.get("security")
        assert "404" in operation["responses"]


class TestNotFound:
    def test_unknown_ids_are_json_404s(self, client: TestClient, api: Api) -> None:
        account = api.account()
        sandbox = api.as_(account, "sandbox").plant(1)
        sandbox_tid = f"{account.user_id}-{sandbox['time_utc']}"
        paths = [
            "/certificates/abcdefghijklmnopqrstuvwx",
            "/certificates/abcdefghijklmnopqrstuvwx/image.png",
            "/certificates/abcdefghijklmnopqrstuvwx.pdf",
            "/certificates/not-an-id!",
            "/v1/certificates/" + "0" * 300,
            "/certificate/" + "U1-" * 100,
            "/v1/certificates/abcdefghijklmnopqrstuvwx",
            "/certificate/U0-2024-09-16T20:34:04.429Z",
            "/certificate/garbage/certificate.pdf",
            f"/certificate/{sandbox_tid}",  # sandbox impacts have no certificate
        ]
        for path in paths:
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["type"] == "not_found", path

    def test_the_schema_says_the_404_is_json(self, client: TestClient) -> None:
        """Pages, images and PDFs alike: their own answer is not JSON, their 404 is."""
        spec = client.get("/openapi.json").json()
        for path, item in spec["paths"].items():
            if path.startswith(("/certificates/", "/certificate/")):
                content = item["get"]["responses"]["404"]["content"]
                assert list(content) == ["application/json"], path
