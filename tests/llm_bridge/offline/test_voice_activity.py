"""Voice activity on real (synthetic) speech: start and end within 100 ms."""

from __future__ import annotations

import numpy as np
import pytest

from llm_bridge.offline.voice_activity import VoiceActivityDetector
from tests.avatar_engine.audio.conftest import espeak

TOLERANCE_S = 0.1


def speech_bounds(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """Where the utterance really starts and ends: first and last sample above -40 dBFS."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > 327)[0]
    return loud[0] / rate, (loud[-1] + 1) / rate


@pytest.mark.parametrize(
    ("voice", "text"),
    [
        ("en", "Hello there, how are you today?"),
        ("en+f3", "The quick brown fox jumps over the lazy dog. Then it sleeps."),
        ("de", "Guten Morgen, wie geht es dir?"),
    ],
)
def test_finds_speech_start_and_end(tmp_path, voice, text):
    speech, rate = espeak(text, voice, tmp_path)
    start, end = speech_bounds(speech, rate)
    silence = np.zeros(rate, dtype=np.int16)
    noise = np.random.default_rng(0).normal(0, 30, size=2 * rate + len(speech))  # ~-60 dBFS hiss
    audio = (np.concatenate([silence, speech, silence]) + noise).astype(np.int16)
    vad = VoiceActivityDetector()
    events = []
    for i in range(0, len(audio), 441):  # 20 ms pushes, as a call delivers them
        events += vad.push(audio[i : i + 441], rate)
    assert [e.speaking for e in events] == [True, False], events
    assert abs(events[0].time_s - (1.0 + start)) <= TOLERANCE_S
    assert abs(events[1].time_s - (1.0 + end)) <= TOLERANCE_S


def test_pauses_between_words_do_not_end_the_turn(tmp_path):
    word, rate = espeak("hello", "en", tmp_path)
    start, end = speech_bounds(word, rate)
    word = word[int(start * rate) : int(end * rate)]
    pause = np.zeros(int(0.2 * rate), dtype=np.int16)  # shorter than the 0.3 s hangover
    audio = np.concatenate([pause, word, pause, word, np.zeros(rate, dtype=np.int16)])
    events = VoiceActivityDetector(hangover_s=0.3).push(audio, rate)
    assert [e.speaking for e in events] == [True, False]


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="aggressiveness"):
        VoiceActivityDetector(aggressiveness=5)
    with pytest.raises(ValueError, match="onset_frames"):
        VoiceActivityDetector(onset_frames=6, onset_window=5)
