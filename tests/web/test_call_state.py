"""The state channel says what the call shows: who speaks while a segment's audio plays, and
listening between; in a scene, the character who has the floor, in the state and in the
transcript."""

from __future__ import annotations

import asyncio

from app.casting import CastRequest
from app.local_call import LocalCalls
from tests.app.session_io import wait_for
from tests.web.conftest import LIBRARY, call_with

TURN_S = 20.0  # a generous bound for one turn on a loaded CPU


def test_the_state_names_the_character_speaking_in_a_scene(micro_engine):
    calls = LocalCalls(engine_factory=lambda: micro_engine, library=LIBRARY)

    async def answer(body: dict) -> dict:
        description = await calls.offer(body["sdp"], body["type"], CastRequest(scene="duo"))
        return {"sdp": description.sdp, "type": description.type}

    async def scene() -> list[dict]:
        client = await call_with(answer)
        (server,) = calls.open_calls
        try:

            def said(n: int):
                return lambda: (
                    [s["state"] for s in client.states].count("speaking") >= n
                    and (client.states[-1]["state"] == "listening")
                )

            await wait_for(said(1), timeout=TURN_S)  # Ada greets
            server.conversation.session.generate_reply(user_input="Bo, what do you think?")
            await wait_for(said(2), timeout=TURN_S)  # the floor goes to Bo, who greets
            return client.states, client.transcript
        finally:
            await client.close()
            await calls.aclose()

    states, transcript = asyncio.run(scene())
    assert [s.get("character") for s in states if s["state"] == "speaking"] == ["Ada", "Bo"]
    assert all(a != b for a, b in zip(states, states[1:], strict=False))  # changes only
    assert states[-1] == {"state": "listening"}
    speaking = [{"state": "speaking", "character": name} for name in ("Ada", "Bo")]
    shapes = [{"state": "listening"}, *speaking]
    assert all(s in shapes for s in states)
    # the transcript names them too: each greeting under its speaker, whole
    final = [(line["character"], line["text"]) for line in transcript if line["final"]]
    greetings = [(name, LIBRARY.character(name.lower()).persona.greeting) for name in ("Ada", "Bo")]
    assert final == greetings
