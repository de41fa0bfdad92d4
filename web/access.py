"""Who may use the server when it has a login (`avatar serve --auth`, needed off loopback).

Everything but the console's own pages asks for the console's login: the gallery, the call
page, its API, the static files and the API docs (the gallery's `/` sends a visitor without
the login to the console's login form). A browser gives it either as the
console's session cookie (logged in at /console) or, asked by a 401 with `WWW-Authenticate:
Basic`, as the user and password it prompts for. Failed logins, on the console's form or in
that header, are counted per address; past `WebLimits.login_failures` in a minute every login
from that address is refused with 429 until the minute has passed, right or wrong.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from collections.abc import Callable, Mapping

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from web.errors import error_response
from web.limits import RateLimit, client_address, under

REALM = 'Basic realm="Talking avatar", charset="UTF-8"'
ConsoleSession = Callable[[Mapping[str, str]], str | None]  # cookies -> the logged-in user


class LoginGate:
    """ASGI middleware: requests outside `public` need the login; `login_paths` (the
    console's login form) are watched for failures."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        login: tuple[str, str],
        failures: RateLimit,
        public: tuple[str, ...],
        login_paths: tuple[str, ...],
        login_page: str,
        console_session: ConsoleSession | None = None,
    ) -> None:
        self.app, self.failures = app, failures
        self.public, self.login_paths, self.login_page = public, login_paths, login_page
        self._user, self._password = (part.encode() for part in login)
        self._console_session = console_session

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path, client = scope["path"], client_address(scope)
        if scope["type"] == "http" and scope["method"] == "POST" and path in self.login_paths:
            await self._watch_login(scope, receive, send, client)
        elif under(path, self.public):
            await self.app(scope, receive, send)
        elif path == "/" and not self._logged_in(scope):
            # the gallery's address leads a newcomer to the console's login form
            await RedirectResponse(self.login_page)(scope, receive, send)
        else:
            await self._guard(scope, receive, send, client)

    def _logged_in(self, scope: Scope) -> bool:
        """Carries the login (Basic or the console's session); failures are not counted."""
        authorization = Headers(scope=scope).get("authorization")
        if authorization is not None:
            return self._basic_ok(authorization)
        cookies = HTTPConnection(scope).cookies
        return self._console_session is not None and self._console_session(cookies) is not None

    async def _guard(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        authorization = Headers(scope=scope).get("authorization")
        if authorization is not None:
            if (wait := self.failures.wait_s(client)) is not None:
                await self._refuse(scope, receive, send, 429, wait)
            elif self._basic_ok(authorization):
                await self.app(scope, receive, send)
            else:
                self.failures.record(client)
                await self._refuse(scope, receive, send, 401)
        elif self._console_session is not None and self._console_session(
            HTTPConnection(scope).cookies
        ):
            await self.app(scope, receive, send)
        else:
            await self._refuse(scope, receive, send, 401)

    async def _watch_login(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        if (wait := self.failures.wait_s(client)) is not None:
            await self._refuse(scope, receive, send, 429, wait)
            return
        status = 0

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watched)
        if status in (400, 401, 403):
            self.failures.record(client)

    def _basic_ok(self, authorization: str) -> bool:
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        # both compared, always, so the time taken says nothing about which one was wrong
        user_ok = secrets.compare_digest(user, self._user)
        password_ok = secrets.compare_digest(password, self._password)
        return bool(sep) and user_ok and password_ok

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, status: int, wait: float = 0.0
    ) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
            return
        if status == 429:
            refusal = error_response(
                429,
                "too_many_attempts",
                f"too many failed logins from your address; try again in {math.ceil(wait)} s",
                retry_after_s=wait,
            )
        else:
            refusal = error_response(
                401,
                "unauthorized",
                "this server asks for a login: the console's user and password",
                headers={"WWW-Authenticate": REALM},
            )
        await refusal(scope, receive, send)
