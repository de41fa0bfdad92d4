"""Admission of local calls, on its own and on a fake clock: slots in arrival order, waiting
only while a slot may soon be free, per-address shares, and the wait after an abandoned offer."""

from __future__ import annotations

import asyncio

import pytest

from app.local_call.admission import Admission, CallerLimited, CallsBusy, SlotPhase
from app.local_call.limits import CallLimits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def admission(sessions: int = 1, **limits) -> tuple[Admission, Clock]:
    clock = Clock()
    limits.setdefault("connect_window_s", 0.5)
    return Admission(sessions=sessions, limits=CallLimits(**limits), clock=clock), clock


def test_a_full_server_refuses_at_once_when_every_slot_holds_a_running_call():
    gate, _ = admission()

    async def run() -> None:
        slot = await gate.admit("a")
        gate.set_phase(slot, SlotPhase.RUNNING)
        with pytest.raises(CallsBusy, match="all 1 call slot") as refused:
            await asyncio.wait_for(gate.admit("b"), 0.1)  # no waiting
        assert not isinstance(refused.value, CallerLimited)

    asyncio.run(run())


def test_waiters_get_freed_slots_in_arrival_order():
    gate, _ = admission(sessions=1)

    async def run() -> list[str]:
        first = await gate.admit("a")  # connecting: its slot may soon be free
        waiting = [asyncio.ensure_future(gate.admit(c)) for c in ("b", "c")]
        await asyncio.sleep(0)
        order = []
        gate.release(first, abandoned=True)
        second = await waiting[0]
        order.append(second.client)
        gate.release(second, abandoned=False)
        order.append((await waiting[1]).client)
        return order

    assert asyncio.run(run()) == ["b", "c"]


def test_waiters_are_refused_once_the_connecting_call_connects():
    gate, _ = admission(sessions=1)

    async def run() -> None:
        slot = await gate.admit("a")
        waiter = asyncio.ensure_future(gate.admit("b"))
        await asyncio.sleep(0)
        gate.set_phase(slot, SlotPhase.RUNNING)  # no slot will be free soon
        with pytest.raises(CallsBusy, match="all 1 call slot"):
            await waiter
        assert gate.held == [slot] and gate._taken == 1

    asyncio.run(run())


def test_an_address_holds_its_share_and_a_hanging_up_call_is_not_counted():
    gate, _ = admission(sessions=3, calls_per_client=2)

    async def run() -> None:
        first, _second = await gate.admit("a"), await gate.admit("a")
        with pytest.raises(CallerLimited, match="already has 2 call"):
            await gate.admit("a")
        assert (await gate.admit("b")).client == "b"  # another address is not held up
        gate.set_phase(first, SlotPhase.CLOSING)
        waiter = asyncio.ensure_future(gate.admit("a"))  # full, but a slot is about to free
        await asyncio.sleep(0)
        gate.release(first, abandoned=False)
        assert (await waiter).client == "a"

    asyncio.run(run())


def test_an_address_whose_offer_never_connected_waits():
    gate, clock = admission(abandoned_wait_s=30.0)

    async def run() -> None:
        gate.release(await gate.admit("a"), abandoned=True)
        clock.now += 10
        with pytest.raises(CallerLimited, match="did not connect; try again in 20 s") as err:
            await gate.admit("a")
        assert err.value.retry_after_s == pytest.approx(20)
        other = await gate.admit("b")  # others are not
        gate.release(other, abandoned=False)
        clock.now += 20.5
        assert (await gate.admit("a")).client == "a"

    asyncio.run(run())


def test_an_abandoned_call_makes_its_address_wait_from_its_hang_up_on():
    """Its slot is closing, so it no longer counts as the address's call; the wait must
    already hold then, or a flood's next offer queues for the slot meanwhile (and is refused
    as 503, the server being full, instead of 429)."""
    gate, clock = admission(abandoned_wait_s=30.0)

    async def run() -> None:
        slot = await gate.admit("a")
        gate.set_phase(slot, SlotPhase.CLOSING, abandoned=True)
        with pytest.raises(CallerLimited, match="did not connect; try again in 30 s"):
            await gate.admit("a")
        clock.now += 4
        gate.release(slot, abandoned=True)  # the hang-up done: the wait is not extended
        with pytest.raises(CallerLimited, match="try again in 26 s"):
            await gate.admit("a")

    asyncio.run(run())


def test_a_waiter_that_gives_up_does_not_lose_the_slot(monkeypatch):
    monkeypatch.setattr("app.local_call.admission.CLOSING_WAIT_S", 0.0)
    gate, _ = admission(sessions=1, connect_window_s=0.05)

    async def run() -> None:
        slot = await gate.admit("a")
        with pytest.raises(CallsBusy, match="all 1 call slot"):
            await gate.admit("b")  # waited 0.05 s, nothing freed
        gate.release(slot, abandoned=False)
        assert gate._taken == 0 and (await gate.admit("c")).client == "c"

    asyncio.run(run())


def test_shutting_down_refuses_waiters_and_new_calls():
    gate, _ = admission()

    async def run() -> None:
        await gate.admit("a")
        waiter = asyncio.ensure_future(gate.admit("b"))
        await asyncio.sleep(0)
        gate.close()
        with pytest.raises(CallsBusy):
            await waiter
        with pytest.raises(CallsBusy, match="shutting down"):
            await gate.admit("c")

    asyncio.run(run())


@pytest.mark.parametrize(
    "bad", [{"connect_window_s": 0}, {"calls_per_client": 0}, {"abandoned_wait_s": -1}]
)
def test_limits_out_of_range_are_refused(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        CallLimits(**bad)


def test_a_vanished_peer_is_noticed_within_10_s_by_default():
    limits = CallLimits()
    assert limits.peer_timeout_s + limits.check_every_s < 10
