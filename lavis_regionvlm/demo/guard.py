"""The demo's outermost ASGI layer: what every request passes before the app sees it.

- **Trusted Host** (`allowed_hosts`): a server bound to this machine only answers requests
  whose Host header names this machine (localhost, 127.0.0.1, [::1], any port), so a web page
  elsewhere cannot drive it through DNS rebinding. 400 otherwise.
- **Busy** (`max_active_requests`): more requests at once than that are answered 503 at once
  (with Retry-After) instead of queueing behind the model without bound.
- **Body size, counted while it streams** (`max_body_bytes`, the upload limit for
  `POST /api/sessions`): whatever Content-Length says or does not say (chunked), the body is
  read here up to the limit and no further; over it, 413. Nothing is spooled past the limit.
- **Body time** (`body_timeout_s`): the whole body must arrive within it; otherwise 408.
- **Any unhandled error** becomes 500 `{"error": "internal error, see the server log"}`;
  the traceback goes to the log, never to the client.

Every answer made here is JSON `{"error": ...}`, as the app's own errors are.
"""
from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Optional

logger = logging.getLogger(__name__)

__all__ = ["Guard", "LOCAL_HOSTS", "INTERNAL_ERROR", "host_name"]

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
INTERNAL_ERROR = "internal error, see the server log"

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class _TooLarge(Exception):
    pass


def host_name(header: str) -> str:
    """The host part of a Host header, lower case: "[::1]:7860" -> "::1", "Localhost:80" -> "localhost"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard:
    """ASGI middleware (see the module docstring).

    Args:
        app: the ASGI app.
        max_body_bytes: largest request body, bytes (JSON requests).
        body_limit_for: (method, path) -> (limit in bytes, its name, the option that sets it) for
            a route with a limit of its own (uploads), or None.
        body_timeout_s: seconds the whole body may take to arrive.
        max_active_requests: requests handled at once.
        allowed_hosts: host names accepted in the Host header (None: any).
    """

    def __init__(
        self,
        app: Callable,
        *,
        max_body_bytes: int,
        body_limit_for: Callable[[str, str], Optional[tuple[int, str, str]]] = lambda method, path: None,
        body_timeout_s: float = 30.0,
        max_active_requests: int = 32,
        allowed_hosts: Optional[Iterable[str]] = LOCAL_HOSTS,
    ):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)
        self.body_limit_for = body_limit_for
        self.body_timeout_s = float(body_timeout_s)
        self.max_active_requests = int(max_active_requests)
        self.allowed_hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None:
            headers = dict(scope.get("headers") or [])
            host = headers.get(b"host", b"").decode("latin-1")
            if host_name(host) not in self.allowed_hosts:
                await _answer(send, 400, f"Host header {host!r} is not this server's name: it answers only to "
                                         f"{', '.join(sorted(self.allowed_hosts))} (server option --allowed-hosts)")
                return
        if self.active >= self.max_active_requests:
            await _answer(send, 503, f"the server is busy: {self.active} requests are being handled, the limit "
                                     "(server option --max-active-requests); retry in a moment",
                          [(b"retry-after", b"1")])
            return
        self.active += 1
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            body = await self._read_body(scope, receive, send)
            if body is None:
                return
            await self.app(scope, _replay(body, receive), tracking_send)
        except Exception:  # noqa: BLE001  (the last line of defence: log it, answer JSON)
            logger.exception("error while handling %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _answer(send, 500, INTERNAL_ERROR)
        finally:
            self.active -= 1

    async def _read_body(self, scope: Scope, receive: Receive, send: Send) -> Optional[bytes]:
        """The whole body (None when refused: an answer was sent)."""
        special = self.body_limit_for(scope["method"], scope["path"])
        limit, label, option = special or (self.max_body_bytes, "body limit", "server option --max-body-mb")
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:  # refused before reading a byte
            await _answer(send, 413, f"the request body of {int(declared)} bytes is over the {label} of {limit} bytes "
                                     f"({option})", [(b"connection", b"close")])
            return None
        chunks: list[bytes] = []
        size = 0

        async def read_all() -> None:
            nonlocal size
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ConnectionResetError("client went away")
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise _TooLarge()
                chunks.append(chunk)
                more = message.get("more_body", False)

        try:
            await asyncio.wait_for(read_all(), self.body_timeout_s)
        except _TooLarge:
            await _answer(send, 413, f"the request body is over the {label} of {limit} bytes ({option})",
                          [(b"connection", b"close")])
            return None
        except asyncio.TimeoutError:
            await _answer(send, 408, f"the request body did not arrive within {self.body_timeout_s:g} s "
                                     "(server option --body-timeout)", [(b"connection", b"close")])
            return None
        except ConnectionResetError:
            return None
        return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A `receive` that gives `body` as one message, then defers to the real one (disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, error: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"error": error}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})
