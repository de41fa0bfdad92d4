"""Who gets a call slot: a fixed number at once, at most a few per caller's address, in turn.

A slot is held from the offer until the call has closed. At capacity a new offer waits, in
arrival order, only while some slot may soon be free (a call still connecting within its
connect window, or one hanging up); when every slot holds a running call it is refused at
once. An address may hold `calls_per_client` slots, and one whose answered offer never
connected waits `abandoned_wait_s` before it may offer again: an offer flood from one address
can then hold a slot for one connect window at a time, and a real caller who arrives meanwhile
waits for that window instead of being refused.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.local_call.limits import CallLimits

CLOSING_WAIT_S = 5.0  # how long a call takes at most to hang up (its agent session closing)
MAX_REMEMBERED = 1024  # abandoned-offer addresses kept before expired ones are dropped


class CallsBusy(RuntimeError):
    """No slot for this call; `retry_after_s` says when one might be, if known."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class CallerLimited(CallsBusy):
    """This caller's address holds all the calls it may, or waits out an abandoned offer."""


class SlotPhase(enum.Enum):
    CONNECTING = "connecting"  # from the offer until the peer connects (or the window ends)
    RUNNING = "running"
    CLOSING = "closing"  # hanging up: its slot is about to be free


@dataclass(eq=False)
class Slot:
    client: str  # the caller's address
    phase: SlotPhase = SlotPhase.CONNECTING


@dataclass(eq=False)
class _Waiter:
    client: str
    granted: asyncio.Future[None]  # resolved when a slot is handed to this waiter


class Admission:
    """Hands out `sessions` slots: `admit` one, move it through its phases, `release` it."""

    def __init__(
        self,
        *,
        sessions: int,
        limits: CallLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if sessions < 1:
            raise ValueError(f"sessions must be 1 or more, not {sessions}")
        self.sessions, self.limits, self._clock = sessions, limits, clock
        self.held: list[Slot] = []
        self._taken = 0  # slots held or handed to a waiter that has not resumed yet
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._abandoned: dict[str, float] = {}  # address -> when it may offer again
        self._closed = False

    async def admit(self, client: str) -> Slot:
        """A slot for `client`, waiting for one that is about to be free.

        Raises:
            CallerLimited: the address holds its share, or waits out an abandoned offer.
            CallsBusy: every slot holds a running call (or none freed in time).
        """
        if self._closed:
            raise CallsBusy("the server is shutting down")
        self._check_client(client)
        if self._taken < self.sessions and not self._waiters:
            self._taken += 1
        else:
            if not self._may_free_soon():
                raise self._busy()
            await self._wait_turn(client)
        slot = Slot(client)
        self.held.append(slot)
        return slot

    def set_phase(self, slot: Slot, phase: SlotPhase, *, abandoned: bool = False) -> None:
        """`abandoned`: the slot closes because its answered offer never connected; the
        address waits out `abandoned_wait_s` from now, not from when the hang-up is done."""
        slot.phase = phase
        if abandoned:
            self._remember_abandoned(slot.client)
        if not self._may_free_soon():  # every slot holds a running call: no one need wait
            self._refuse_waiters()

    def release(self, slot: Slot, *, abandoned: bool) -> None:
        """The call has closed; `abandoned`: it was answered but never connected."""
        if slot not in self.held:
            return
        self.held.remove(slot)
        if abandoned:
            self._remember_abandoned(slot.client)
        self._taken -= 1
        self._hand_over()

    def close(self) -> None:
        """The server is shutting down: no more slots; waiters are refused."""
        self._closed = True
        self._refuse_waiters()

    # ---- internals -----------------------------------------------------------------------

    def _check_client(self, client: str) -> None:
        until = self._abandoned.get(client)
        if until is not None:
            left = until - self._clock()
            if left > 0:
                raise CallerLimited(
                    f"your last call did not connect; try again in {math.ceil(left)} s",
                    retry_after_s=left,
                )
            del self._abandoned[client]
        holding = sum(s.client == client and s.phase is not SlotPhase.CLOSING for s in self.held)
        holding += sum(w.client == client for w in self._waiters)
        if holding >= self.limits.calls_per_client:
            raise CallerLimited(
                f"your address already has {holding} call(s) open, the most one address may "
                "have; try again when one has ended"
            )

    def _may_free_soon(self) -> bool:
        return any(s.phase is not SlotPhase.RUNNING for s in self.held) or self._taken > len(
            self.held
        )

    def _busy(self) -> CallsBusy:
        return CallsBusy(
            f"all {self.sessions} call slot(s) are in use; try again when a call has ended"
        )

    async def _wait_turn(self, client: str) -> None:
        waiter = _Waiter(client, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(
                asyncio.shield(waiter.granted), self.limits.connect_window_s + CLOSING_WAIT_S
            )
        except BaseException as err:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if waiter.granted.done() and waiter.granted.exception() is None:
                self._taken -= 1  # handed over just as it gave up: pass it on
                self._hand_over()
            if isinstance(err, TimeoutError):
                raise self._busy() from None
            raise

    def _hand_over(self) -> None:
        while self._waiters and self._taken < self.sessions:
            waiter = self._waiters.popleft()
            if not waiter.granted.done():
                self._taken += 1
                waiter.granted.set_result(None)

    def _refuse_waiters(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.granted.done():
                waiter.granted.set_exception(self._busy())

    def _remember_abandoned(self, client: str) -> None:
        if self.limits.abandoned_wait_s == 0:
            return
        now = self._clock()
        if len(self._abandoned) >= MAX_REMEMBERED:
            self._abandoned = {a: t for a, t in self._abandoned.items() if t > now}
        if self._abandoned.get(client, now) <= now:  # already waiting: the wait is not extended
            self._abandoned[client] = now + self.limits.abandoned_wait_s
