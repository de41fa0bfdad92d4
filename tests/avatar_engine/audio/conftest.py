"""Speech for the audio tests: espeak-ng utterances and the embedded preset's front-end."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.feature_stream import SpeechFeatureStream
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset

TINY = Preset.from_name("tiny")
GEOMETRY = FrameGeometry.of_preset(TINY)


def espeak(text: str, voice: str, tmp_path) -> tuple[np.ndarray, int]:
    """An utterance as int16 samples and its rate (espeak-ng writes 22050 Hz)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: bin/bootstrap installs it (as root), or apt install it")
    path = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    samples, rate = sf.read(path, dtype="int16")
    return samples, rate


@pytest.fixture
def mel_encoder():
    torch.manual_seed(0)
    return build_encoder(TINY.audio, GEOMETRY)


def mel_stream(encoder, **kwargs) -> SpeechFeatureStream:
    return SpeechFeatureStream(encoder, GEOMETRY, **kwargs)


def push_in_pieces(stream: SpeechFeatureStream, audio, rate: int, seed: int, **kwargs):
    """Push audio in random sizes (1 sample .. 0.2 s), then end the turn."""
    gen = np.random.default_rng(seed)
    chunks, i = [], 0
    while i < len(audio):
        n = int(gen.integers(1, rate // 5))
        chunks += stream.push(audio[i : i + n], rate, **kwargs)
        i += n
    return chunks + stream.end_of_turn()
