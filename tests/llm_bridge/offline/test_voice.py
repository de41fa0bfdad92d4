"""The offline voice in a real AgentSession: speech in at real time, espeak-ng speech out."""

from __future__ import annotations

import asyncio
import time

import numpy as np

from llm_bridge.cast import build_cast
from llm_bridge.offline import utterance_text
from llm_bridge.offline.tts import SAMPLE_RATE
from llm_bridge.persona import Persona
from tests.llm_bridge.conftest import (
    CaptureAudioOutput,
    RealTimeAudioInput,
    espeak,
    speech_bounds,
)

ANN = Persona(
    name="Ann",
    instructions="You are Ann.",
    lines=("Nice to hear from you.", "Tell me more."),
    espeak_voice="en+f3",
    espeak_pitch=60,
)
SILENCE = np.zeros(SAMPLE_RATE, dtype=np.int16)  # 1 s


def test_a_spoken_turn_gets_the_scripted_line_in_the_characters_voice():
    asyncio.run(_spoken_turn())


async def _spoken_turn():
    user = espeak("Hello Ann, how are you today?", voice="en")
    start, end = speech_bounds(user)
    actives: list[int] = []
    cast = build_cast([ANN], on_active=actives.append, offline=True)
    session = cast.create_session()
    session.input.audio = audio_in = RealTimeAudioInput(np.concatenate([SILENCE, user, SILENCE]))
    session.output.audio = audio_out = CaptureAudioOutput()
    turn_ended: list[float] = []  # wall times the user went from speaking to listening
    transcripts: list[str] = []
    session.on(
        "user_state_changed",
        lambda ev: turn_ended.append(time.time()) if ev.old_state == "speaking" else None,
    )
    session.on("user_input_transcribed", lambda ev: transcripts.append(ev.transcript))
    await session.start(agent=cast.agents[0])
    try:
        (reply,) = await audio_out.wait_for_segments(1, timeout=15)
    finally:
        await session.aclose()
        await cast.aclose()

    assert actives == [0]
    speech_end = audio_in.started_at + 1.0 + end  # wall time the user's speech really ended
    assert len(turn_ended) == 1
    assert 0.0 < turn_ended[0] - speech_end < 0.5  # webrtcvad's hangover, 0.3 s, and a frame
    assert transcripts == [utterance_text(end - start)]
    # the reply is the character's first line, spoken with its espeak-ng voice
    expected = espeak(ANN.lines[0], voice="en+f3", pitch=60)
    got = reply.samples()
    assert reply.rate == SAMPLE_RATE and reply.duration > 1.0
    assert np.array_equal(got[: len(expected)], expected)
    assert len(reply.frames) > 5 and max(f.duration for f in reply.frames) <= 0.1  # streamed
    assert 0.0 < reply.started_at - speech_end < 1.5


def test_speaking_over_the_reply_interrupts_it():
    asyncio.run(_barge_in())


async def _barge_in():
    long_line = (
        "That is a long answer that goes on and on, so there is time to interrupt it "
        "before it is over, and then it goes on some more."
    )
    ann = Persona(name="Ann", instructions="You are Ann.", lines=(long_line, "Sorry, go on."))
    first = espeak("Hello Ann.", voice="en")
    second = espeak("Wait, stop there please.", voice="en")
    pause = np.zeros(2 * SAMPLE_RATE, dtype=np.int16)  # the reply starts in this pause
    cast = build_cast([ann], offline=True)
    session = cast.create_session()
    session.input.audio = RealTimeAudioInput(np.concatenate([SILENCE, first, pause, second]))
    session.output.audio = audio_out = CaptureAudioOutput(real_time=True)
    await session.start(agent=cast.agents[0])
    try:
        segments = await audio_out.wait_for_segments(2, timeout=25)
    finally:
        await session.aclose()
        await cast.aclose()

    cut, answer = segments[:2]
    assert cut.interrupted and not answer.interrupted
    full = len(espeak(long_line)) / SAMPLE_RATE
    assert 0.5 < cut.played < full - 2.0  # stopped well before its end
    replies = [m for m in session.history.messages() if m.role == "assistant"]
    assert replies[0].text_content == long_line and replies[0].interrupted
    assert replies[1].text_content == "Sorry, go on."  # the next turn got the next line
