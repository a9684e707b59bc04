"""Keep credentials out of the logs.

Account keys travel in the ``x-api-key`` header and the operator token in
``Authorization``, and no log line shows headers (uvicorn's access log shows
method, path and query; even its trace level elides headers). A client may
still put a key in a URL (``?api_key=oi_live_...``), which the access log
would print, so every log record is masked when it is made, before any
handler or formatter sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# Keys are the prefix and token_urlsafe(32) (accounts/service.py).
_ACCOUNT_KEY = re.compile(r"(oi_(?:test|live)_)[A-Za-z0-9_\-]+")
_secrets: set[str] = set()
_installed = False


def mask(text: str) -> str:
    text = _ACCOUNT_KEY.sub(r"\1[redacted]", text)
    for secret in _secrets:
        text = text.replace(secret, "[redacted]")
    return text


def _masked(value: Any) -> Any:
    if value is None or isinstance(value, (int, float)):
        return value
    # Anything else is formatted with %s or %r into the message: do it now,
    # masked (uvicorn's trace level logs the ASGI scope, a dict holding the
    # path and the query string as bytes).
    return mask(value if isinstance(value, str) else str(value))


def redact_logs(*secrets: str | None) -> None:
    """From now on, mask account keys and ``secrets`` in every log record."""
    global _installed
    _secrets.update(s for s in secrets if s)
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.msg = _masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _masked(v) for k, v in record.args.items()}
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
