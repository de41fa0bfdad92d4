"""The calls one server runs: a fixed number at once, each with an engine of its own.

A runtime streams one scene at a time, so each concurrent call needs its own engine. Engines
are built on first need by the factory (in a thread) and reused by later calls. Who gets a
slot, and how long a call may keep it, is `Admission`'s and `CallLimits`' business: a call
over capacity is refused (CallsBusy) and costs the running calls nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiortc import RTCSessionDescription

from app.avatar import AvatarEngine
from app.casting import Casting, CastRequest
from app.characters import CharacterLibrary
from app.conversation import prepare_conversation
from app.local_call.admission import Admission, Slot, SlotPhase
from app.local_call.call import CallPhase, LocalCall
from app.local_call.limits import CallLimits
from app.local_call.offer import parse_offer

logger = logging.getLogger(__name__)

LOCAL_CLIENT = "local"  # the caller's address when none is given (in-process callers, tests)
SLOT_PHASES = {CallPhase.RUNNING: SlotPhase.RUNNING, CallPhase.CLOSING: SlotPhase.CLOSING}


class LocalCalls:
    """Answers offers (`offer`) and owns the calls and engines until `aclose`."""

    def __init__(
        self,
        *,
        engine_factory: Callable[[], AvatarEngine],
        library: CharacterLibrary,
        sessions: int = 1,
        limits: CallLimits | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        ice_servers: tuple[str, ...] = (),
    ) -> None:
        """Args:
        engine_factory: builds a new engine (blocking; called at most `sessions` times).
        sessions: calls at once.
        limits: the connect window, call length and idle limits, and per-address limits.
        api_key, base_url: OpenAI Realtime's (default: the environment's; none: offline voice).
        ice_servers: STUN/TURN URLs for the calls' peer connections.
        """
        self.library, self.sessions = library, sessions
        self.limits = limits or CallLimits()
        self.admission = Admission(sessions=sessions, limits=self.limits)
        self._engine_factory = engine_factory
        self._api_key, self._base_url, self._ice_servers = api_key, base_url, ice_servers
        self._idle: list[AvatarEngine] = []  # built and free
        self._built: list[AvatarEngine] = []  # closed by aclose()
        self._calls: dict[LocalCall, tuple[AvatarEngine, Slot]] = {}
        self._closed = False

    @property
    def open_calls(self) -> list[LocalCall]:
        return list(self._calls)

    def casting(self, request: CastRequest) -> Casting:
        """Who the request names (blocking: reads pictures). LookupError if unknown."""
        return Casting.of(request, self.library)

    async def offer(
        self, sdp: str, kind: str, request: CastRequest, *, client: str = LOCAL_CLIENT
    ) -> RTCSessionDescription:
        """The answer to a browser's offer, from the address `client`, for a call with the
        requested cast.

        Raises OfferError (bad offer), LookupError (unknown character or scene), ValueError
        (invalid id), CallerLimited (this address's share is used), CallsBusy (at capacity);
        nothing is left behind when it raises.
        """
        offer = parse_offer(sdp, kind)
        casting = await asyncio.to_thread(self.casting, request)
        slot = await self.admission.admit(client)
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
                limits=self.limits,
                on_phase=self._on_phase,
                on_closed=self._release,
            )
            self._calls[call] = (engine, slot)
            answer = await call.answer(offer)
        except BaseException:
            if call is None:
                self.admission.release(slot, abandoned=False)
            else:
                await call.aclose()  # releases its slot and engine
            raise
        logger.info(
            "call answered", extra={"characters": list(names), "open": len(self.admission.held)}
        )
        return answer

    async def aclose(self) -> None:
        """End every call, then close the engines."""
        self._closed = True
        self.admission.close()
        calls = list(self._calls)
        await asyncio.gather(*(call.aclose() for call in calls), return_exceptions=True)
        for engine in self._built:
            await asyncio.to_thread(engine.close)
        self._built.clear()
        self._idle.clear()

    # ---- engines and slots ---------------------------------------------------------------

    async def _take_engine(self) -> AvatarEngine:
        if self._idle:
            return self._idle.pop()
        engine = await asyncio.to_thread(self._engine_factory)
        self._built.append(engine)
        return engine

    def _on_phase(self, call: LocalCall) -> None:
        held = self._calls.get(call)
        if held is not None and call.phase in SLOT_PHASES:
            self.admission.set_phase(held[1], SLOT_PHASES[call.phase], abandoned=call.abandoned)

    def _release(self, call: LocalCall) -> None:
        held = self._calls.pop(call, None)
        if held is None:
            return
        engine, slot = held
        if not self._closed:
            self._idle.append(engine)
        self.admission.release(slot, abandoned=call.abandoned)
        logger.info("call closed", extra={"open": len(self.admission.held)})
