"""Each utterance becomes a turn that says how long the user spoke."""

from __future__ import annotations

import asyncio

from livekit import rtc

from llm_bridge.offline import UtteranceSTT, utterance_text


def test_an_utterance_is_described_by_its_length():
    rate = 16000
    frames = [rtc.AudioFrame(b"\0\0" * (rate // 2), rate, 1, rate // 2) for _ in range(3)]
    event = asyncio.run(UtteranceSTT().recognize(frames))
    (alternative,) = event.alternatives
    assert alternative.text == utterance_text(1.5) == "(the user spoke for 1.5 s)"
