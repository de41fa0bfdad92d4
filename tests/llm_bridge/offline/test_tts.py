"""espeak-ng behind livekit's TTS interface."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from llm_bridge.offline import EspeakTTS
from llm_bridge.offline.tts import FRAME_MS, SAMPLE_RATE
from tests.llm_bridge.conftest import espeak

TEXT = "Hello there. I am Bob, and this is how I sound."


async def synthesize(speaker: EspeakTTS, text: str):
    frames = [event.frame async for event in speaker.synthesize(text)]
    await speaker.aclose()
    return frames


def test_speech_streams_in_frames_with_the_characters_voice():
    speaker = EspeakTTS(voice="en+m3", rate=140, pitch=20)
    frames = asyncio.run(synthesize(speaker, TEXT))
    expected = espeak(TEXT, voice="en+m3", rate=140, pitch=20)
    got = np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])
    assert np.array_equal(got[: len(expected)], expected)
    assert len(got) - len(expected) <= SAMPLE_RATE * 0.03  # at most a short end marker
    assert {(f.sample_rate, f.num_channels) for f in frames} == {(SAMPLE_RATE, 1)}
    assert len(frames) > 10 and max(f.duration for f in frames) <= FRAME_MS / 1000 + 1e-6
    other = espeak(TEXT, voice="en+f3", rate=140, pitch=80)
    assert not np.array_equal(got[: len(other)], other)


def test_missing_espeak_says_which_package_to_install():
    with pytest.raises(RuntimeError, match="install the Debian package espeak-ng"):
        EspeakTTS(binary="espeak-ng-not-here")


def test_unknown_voice_is_refused_when_built():
    with pytest.raises(ValueError, match=r"cannot speak with voice 'xx-nope'.*espeak-ng --voices"):
        EspeakTTS(voice="xx-nope")
