"""What stands in front of every route of ``llmcost serve``: the bearer token, the body size limit, and the rule
that a server reachable from other hosts must have a token.

Both middlewares are plain ASGI, so they run before any route reads a byte, and answer in the API's error shape.

Example::

    app.add_middleware(BearerAuth, token="s3cret", open_paths=("/healthz",))
    app.add_middleware(BodyLimit, max_bytes=1024 * 1024)
    check_bind("0.0.0.0", token=None)      # ValueError: refuses to serve other hosts without a token
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

__all__ = ["COOKIE", "BearerAuth", "BodyLimit", "check_bind", "is_loopback"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: The cookie the dashboard's sign-in form sets, for browsers (which cannot send a bearer header on navigation).
COOKIE = "llmcost_token"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, token: str | None) -> None:
    """Refuse (``ValueError``) to listen on a non-loopback ``host`` without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"refusing to serve on {host!r} without a token: other hosts could read and write costs. "
            "Set LLMCOST_API_TOKEN, or serve on 127.0.0.1"
        )


async def _send_error(
    send: Send, status: int, message: str, field: str | None, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps({"error": message, "field": field}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


_SIGN_IN = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>llmcost: sign in</title></head>
<body style="font: 15px sans-serif; max-width: 420px; margin: 80px auto">
<h1 style="font-size: 20px">llmcost dashboard</h1><p>This server needs its API token (LLMCOST_API_TOKEN).</p>
<form id="f"><input id="t" type="password" placeholder="token" autofocus style="width: 100%; padding: 6px">
<button style="margin-top: 8px">Open</button></form>
<script>document.getElementById("f").addEventListener("submit", function (e) { e.preventDefault();
document.cookie = "COOKIE=" + encodeURIComponent(document.getElementById("t").value) + "; path=/; SameSite=Strict";
location.reload(); });</script></body></html>""".replace("COOKIE", COOKIE)


def _cookie(header: bytes) -> bytes | None:
    """The ``llmcost_token`` cookie of a ``Cookie`` header, read leniently as browsers send it: pairs split on ``;``,
    each at its first ``=``. ``SimpleCookie`` gives up on the whole header at one value it cannot parse (another
    app's ``prefs={"theme":"dark"}`` on the same host), which would hide the token."""
    for pair in header.split(b";"):
        key, sep, value = pair.partition(b"=")
        if sep and key.strip() == COOKIE.encode():
            value = value.strip()
            if len(value) >= 2 and value[:1] == value[-1:] == b'"':
                value = value[1:-1]
            return unquote_to_bytes(value)
    return None


class BearerAuth:
    """``Authorization: Bearer <token>`` (or the ``llmcost_token`` cookie) on every path but ``open_paths``.

    A browser asking for the dashboard without it gets a sign-in page (401) that sets the cookie.
    """

    def __init__(self, app: ASGIApp, *, token: str | None, open_paths: tuple[str, ...] = ()) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.open_paths = open_paths

    def _given(self, scope: Scope) -> bytes | None:
        cookie = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return credentials.strip()
            elif name == b"cookie":
                found = _cookie(value)
                if found is not None:
                    cookie = found
        return cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.token is None or scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = self._given(scope)
        if given is not None and hmac.compare_digest(given, self.token):
            await self.app(scope, receive, send)
            return
        challenge = [(b"www-authenticate", b'Bearer realm="llmcost"')]
        if scope["path"] == "/" and scope["method"] == "GET":
            body = _SIGN_IN.encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"), *challenge],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        what = "a wrong token" if given is not None else "no token"
        await _send_error(
            send,
            401,
            f"this server needs Authorization: Bearer <LLMCOST_API_TOKEN>; got {what}",
            "authorization",
            challenge,
        )


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, by ``Content-Length`` or while reading a chunked body."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        message = f"the request body is over the limit of {limit:,} bytes; send fewer records per request"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = 0
                if size > limit:
                    await _send_error(send, 413, message, "body")
                    return
        seen = 0
        started = refused = False

        async def counted() -> Message:
            nonlocal seen, refused
            got = await receive()
            if got["type"] == "http.request":
                seen += len(got.get("body", b""))
                if seen > limit:
                    # Answered here, before the app hears of it: FastAPI's body reader turns any exception from
                    # ``receive`` into a 400 "error parsing the body", which ``tracked_send`` now drops.
                    if not started and not refused:
                        refused = True
                        await _send_error(send, 413, message, "body")
                    raise _TooLarge
            return got

        async def tracked_send(msg: Message) -> None:
            nonlocal started
            if refused:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        with contextlib.suppress(_TooLarge):  # answered (413) in ``counted``, unless the app had begun its answer
            await self.app(scope, counted, tracked_send)


class _TooLarge(Exception):
    pass
