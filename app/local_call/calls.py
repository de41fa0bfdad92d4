"""The calls one server runs: a fixed number at once, each with an engine of its own.

A runtime streams one scene at a time, so each concurrent call needs its own engine. Engines
are built on first need by the factory (in a thread) and reused by later calls; a call over
capacity is refused at once (CallsBusy) and costs the running calls nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription

from app.avatar import AvatarEngine
from app.characters import CharacterLibrary
from app.conversation import Casting, CastRequest, prepare_conversation
from app.local_call.call import CONNECT_TIMEOUT_S, LocalCall
from app.local_call.offer import parse_offer

logger = logging.getLogger(__name__)

CLOSING_WAIT_S = 5.0  # at capacity, how long a new call waits for one that is hanging up


class CallsBusy(RuntimeError):
    """Every call slot is taken."""


class LocalCalls:
    """Answers offers (`offer`) and owns the calls and engines until `aclose`."""

    def __init__(
        self,
        *,
        engine_factory: Callable[[], AvatarEngine],
        library: CharacterLibrary,
        sessions: int = 1,
        api_key: str | None = None,
        base_url: str | None = None,
        ice_servers: tuple[str, ...] = (),
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Args:
        engine_factory: builds a new engine (blocking; called at most `sessions` times).
        sessions: calls at once.
        api_key, base_url: OpenAI Realtime's (default: the environment's; none: offline voice).
        ice_servers: STUN/TURN URLs for the calls' peer connections.
        connect_timeout_s: an answered call that has not connected by then is ended.
        """
        if sessions < 1:
            raise ValueError(f"sessions must be 1 or more, not {sessions}")
        self.library, self.sessions = library, sessions
        self._engine_factory = engine_factory
        self._api_key, self._base_url, self._ice_servers = api_key, base_url, ice_servers
        self._connect_timeout = connect_timeout_s
        self._idle: list[AvatarEngine] = []  # built and free
        self._built: list[AvatarEngine] = []  # closed by aclose()
        self._engines: dict[LocalCall, AvatarEngine] = {}
        self._reserved = 0  # slots taken by calls being set up or running
        self._closed = False

    @property
    def open_calls(self) -> list[LocalCall]:
        return list(self._engines)

    def casting(self, request: CastRequest) -> Casting:
        """Who the request names (blocking: reads pictures). LookupError if unknown."""
        return Casting.of(request, self.library)

    async def offer(self, sdp: str, kind: str, request: CastRequest) -> RTCSessionDescription:
        """The answer to a browser's offer for a call with the requested cast.

        Raises OfferError (bad offer), LookupError (unknown character or scene), ValueError
        (invalid id), CallsBusy (at capacity); nothing is left behind when it raises.
        """
        offer = parse_offer(sdp, kind)
        casting = await asyncio.to_thread(self.casting, request)
        await self._reserve()
        call: LocalCall | None = None
        try:
            engine = await self._take_engine()
            try:
                conversation = await prepare_conversation(
                    engine=engine, casting=casting, api_key=self._api_key, base_url=self._base_url
                )
            except BaseException:
                self._idle.append(engine)
                raise
            names = tuple(p.name for p in casting.personas)
            call = LocalCall(
                conversation=conversation,
                names=names,
                ice_servers=self._ice_servers,
                on_closed=self._release,
                connect_timeout_s=self._connect_timeout,
            )
            self._engines[call] = engine
            answer = await call.answer(offer)
        except BaseException:
            if call is None:
                self._reserved -= 1
            else:
                await call.aclose()  # releases its slot and engine
            raise
        logger.info("call answered", extra={"characters": list(names), "open": self._reserved})
        return answer

    async def aclose(self) -> None:
        """End every call, then close the engines."""
        self._closed = True
        calls = list(self._engines)
        await asyncio.gather(*(call.aclose() for call in calls), return_exceptions=True)
        for engine in self._built:
            await asyncio.to_thread(engine.close)
        self._built.clear()
        self._idle.clear()

    # ---- slots and engines ---------------------------------------------------------------

    async def _reserve(self) -> None:
        if self._closed:
            raise CallsBusy("the server is shutting down")
        if self._reserved >= self.sessions:
            closing = [c.closing for c in self._engines if c.closing is not None]
            if closing:  # someone just hung up: their slot is about to be free
                await asyncio.wait(closing, timeout=CLOSING_WAIT_S)
        if self._reserved >= self.sessions:
            raise CallsBusy(
                f"all {self.sessions} call slot(s) are in use; try again when a call has ended"
            )
        self._reserved += 1

    async def _take_engine(self) -> AvatarEngine:
        if self._idle:
            return self._idle.pop()
        engine = await asyncio.to_thread(self._engine_factory)
        self._built.append(engine)
        return engine

    def _release(self, call: LocalCall) -> None:
        engine = self._engines.pop(call, None)
        if engine is None:
            return
        self._reserved -= 1
        if not self._closed:
            self._idle.append(engine)
        logger.info("call closed", extra={"open": self._reserved})
