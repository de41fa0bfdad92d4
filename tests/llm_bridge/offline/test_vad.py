"""webrtcvad behind livekit's VAD interface: speech start and end, and the speech itself."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import vad

from llm_bridge.offline import WebRtcVAD
from llm_bridge.offline.tts import SAMPLE_RATE
from tests.llm_bridge.conftest import espeak, speech_bounds

TOLERANCE_S = 0.1


def frames(samples: np.ndarray, rate: int, frame_s: float = 0.02) -> list[rtc.AudioFrame]:
    step = round(rate * frame_s)
    samples = np.pad(samples, (0, -len(samples) % step))
    return [
        rtc.AudioFrame(samples[i : i + step].tobytes(), rate, 1, step)
        for i in range(0, len(samples), step)
    ]


async def run_stream(detector: WebRtcVAD, audio: list[rtc.AudioFrame]) -> list[vad.VADEvent]:
    stream = detector.stream()
    for frame in audio:
        stream.push_frame(frame)
    stream.end_input()
    events = [event async for event in stream]
    await stream.aclose()
    return events


@pytest.mark.parametrize("rate", [SAMPLE_RATE, 16000, 48000])
def test_one_utterance_gives_one_start_and_one_end(rate):
    speech = espeak("Hello there, how are you today?")
    start, end = speech_bounds(speech)
    silence = np.zeros(SAMPLE_RATE, dtype=np.int16)
    clip = np.concatenate([silence, speech, silence])
    audio = frames(clip, SAMPLE_RATE)
    if rate != SAMPLE_RATE:  # the same clip as a call at another rate would deliver it
        resampler = rtc.AudioResampler(SAMPLE_RATE, rate, num_channels=1)
        audio = [out for frame in audio for out in resampler.push(frame)] + resampler.flush()
    events = asyncio.run(run_stream(WebRtcVAD(), audio))

    edges = [e for e in events if e.type != vad.VADEventType.INFERENCE_DONE]
    assert [e.type for e in edges] == [
        vad.VADEventType.START_OF_SPEECH,
        vad.VADEventType.END_OF_SPEECH,
    ]
    began, ended = edges
    assert abs(began.samples_index / rate - (1.0 + start)) <= TOLERANCE_S
    assert abs(ended.samples_index / rate - (1.0 + end)) <= TOLERANCE_S
    # the end comes after webrtcvad's 0.3 s hangover and carries the silence it waited out
    assert 0.25 <= ended.silence_duration <= 0.3 + TOLERANCE_S
    assert abs(ended.speech_duration - (end - start)) <= 2 * TOLERANCE_S
    (utterance,) = ended.frames
    assert abs(utterance.duration - ended.speech_duration) < 0.01
    # one inference per pushed frame, speaking exactly between the edges
    done = [e for e in events if e.type == vad.VADEventType.INFERENCE_DONE]
    assert len(done) == len(audio)
    speaking = [e.speaking for e in done]
    assert speaking.count(True) == pytest.approx(
        (ended.timestamp - began.timestamp) / audio[0].duration, abs=1
    )


def test_flush_forgets_the_speech_under_way():
    speech = espeak("Hello there, how are you today?")
    start, end = speech_bounds(speech)
    middle = speech[: round((start + end) / 2 * SAMPLE_RATE)]  # flushed while speaking
    audio = frames(np.concatenate([np.zeros(SAMPLE_RATE // 2, np.int16), middle]), SAMPLE_RATE)

    async def speak_flush_then_silence():
        stream = WebRtcVAD().stream()
        for frame in audio:
            stream.push_frame(frame)
        stream.flush()
        for frame in frames(np.zeros(SAMPLE_RATE, np.int16), SAMPLE_RATE):
            stream.push_frame(frame)
        stream.end_input()
        events = [e.type for e in [e async for e in stream]]
        await stream.aclose()
        return events

    events = asyncio.run(speak_flush_then_silence())
    assert vad.VADEventType.START_OF_SPEECH in events
    assert vad.VADEventType.END_OF_SPEECH not in events


def test_bad_settings_fail_when_built():
    with pytest.raises(ValueError, match="aggressiveness must be 0..3"):
        WebRtcVAD(aggressiveness=7)
