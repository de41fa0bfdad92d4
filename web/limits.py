"""The HTTP side's limits: request bodies capped before they are read, and per-address rates.

An address is the client's IP as uvicorn reports it (behind a reverse proxy on this machine,
the X-Forwarded-For address uvicorn trusts from 127.0.0.1). `avatar serve` sets these from its
flags (docs/WEB.md, "Exposure").
"""

from __future__ import annotations

import collections
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.local_call.offer import MAX_SDP_CHARS
from web.errors import ApiError, error_response

MAX_KEYS = 4096  # addresses a rate limit remembers before it drops those with nothing recent


@dataclass(frozen=True)
class WebLimits:
    """Per-address rates and the request body cap."""

    calls_per_minute: int = 10  # call offers (or LiveKit tokens) one address may ask for
    login_failures: int = 5  # failed logins per address and minute; then 429 till it passes
    max_body_bytes: int = 2 * MAX_SDP_CHARS  # the largest request is an offer's SDP, as JSON
    window_s: float = 60.0  # the "minute" the two counts above are kept over

    def __post_init__(self) -> None:
        for name in ("calls_per_minute", "login_failures", "max_body_bytes", "window_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


class RateLimit:
    """At most `count` events per key in any `window_s`. Thread-safe (sync routes run in
    FastAPI's thread pool)."""

    def __init__(
        self, *, count: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.count, self.window_s, self._clock = count, window_s, clock
        self._events: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def wait_s(self, key: str) -> float | None:
        """Seconds until `key` may have another event; None when it may now."""
        with self._lock:
            events = self._recent(key, self._clock())
            if len(events) < self.count:
                return None
            return events[0] + self.window_s - self._clock()

    def record(self, key: str) -> None:
        with self._lock:
            now = self._clock()
            self._recent(key, now).append(now)

    def take(self, key: str) -> float | None:
        """Record an event unless `key` is at its limit; then the seconds to wait."""
        with self._lock:
            now = self._clock()
            events = self._recent(key, now)
            if len(events) >= self.count:
                return events[0] + self.window_s - now
            events.append(now)
            return None

    def _recent(self, key: str, now: float) -> collections.deque[float]:
        if key not in self._events and len(self._events) >= MAX_KEYS:
            for stale in [k for k, e in self._events.items() if e[-1] <= now - self.window_s]:
                del self._events[stale]
        events = self._events.setdefault(key, collections.deque())
        while events and events[0] <= now - self.window_s:
            events.popleft()
        return events


def check_call_rate(call_starts: RateLimit, client: str) -> None:
    """One more call started by `client`, or 429 busy when it has started its share."""
    wait = call_starts.take(client)
    if wait is not None:
        raise ApiError(
            429,
            "busy",
            f"too many calls started from your address; try again in {math.ceil(wait)} s",
            retry_after_s=wait,
        )


class BodyLimit:
    """ASGI middleware: a request body over `max_bytes` is refused with 413 before it is read,
    by its Content-Length, and, streamed without one, once the bytes received pass the cap.
    Paths under `exempt` (the console, which takes uploads under Gradio's own limit) pass."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, exempt: tuple[str, ...] = ()) -> None:
        self.app, self.max_bytes, self.exempt = app, max_bytes, exempt

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or under(scope["path"], self.exempt):
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            refusal = error_response(
                413,
                "too_large",
                f"the request body is {int(declared)} bytes; this server reads at most "
                f"{self.max_bytes}",
            )
            await refusal(scope, receive, send)
            return
        received = 0

        async def capped() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(
                        413,
                        "too_large",
                        f"the request body is over {self.max_bytes} bytes, the most this "
                        "server reads",
                    )
            return message

        await self.app(scope, capped, send)


def under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == p or path.startswith(f"{p}/") for p in prefixes)
