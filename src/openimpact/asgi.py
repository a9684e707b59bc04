"""Small pieces of ASGI shared by the application's own middlewares."""

from __future__ import annotations

from starlette.types import Message, Receive


def replay_body(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the application behind a middleware that read the
    request's body: that body once, whole, then what the server sends (a
    disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
