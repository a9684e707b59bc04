"""Opaque keyset cursors, one implementation for every list.

A cursor carries the sort key of the last row served and a fingerprint of the
query it belongs to (endpoint, account, environment, filters, sort order),
signed with a server secret. The next page is ``WHERE key > last`` on an index,
so a page costs the same on page one and page ten thousand (no OFFSET). A
tampered, truncated or foreign cursor fails the signature or fingerprint check
and is a 400, never a 500.

The official SDK does not URL-encode query values, so the alphabet is
base64url (no ``+``, ``/`` or ``=``), which survives any query string.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from openimpact.errors import ValidationFailed

_SIG_BYTES = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def fingerprint(*parts: Any) -> str:
    raw = json.dumps(parts, separators=(",", ":"), sort_keys=True, default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


class CursorCodec:
    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("cursor:" + secret).encode()).digest()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_SIG_BYTES]

    def encode(self, scope: str, key: list[int]) -> str:
        payload = json.dumps({"s": scope, "k": key}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(self, cursor: str, scope: str, arity: int) -> list[int]:
        """The keyset position in ``cursor``; ValidationFailed naming ``cursor``."""
        try:
            payload_part, sig_part = cursor.split(".")
            payload = _unb64(payload_part)
            signature = _unb64(sig_part)
        except (ValueError, UnicodeEncodeError):
            raise ValidationFailed(
                "cursor: is malformed; pass the cursor value exactly as returned"
            ) from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise ValidationFailed("cursor: is not valid (altered or truncated)")
        data = json.loads(payload)
        if data.get("s") != scope:
            raise ValidationFailed(
                "cursor: belongs to a different query; keep the same filters, sort order and key"
            )
        key = data.get("k")
        if not (
            isinstance(key, list) and len(key) == arity and all(isinstance(k, int) for k in key)
        ):
            raise ValidationFailed("cursor: is not valid")
        return key
