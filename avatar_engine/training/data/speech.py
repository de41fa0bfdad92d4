"""Speech synthesised with espeak-ng over many voices, rates, pitches and texts."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import soundfile

from avatar_engine.audio.resample import resample

VOICES = (
    "en", "en-us", "en+f2", "en+f3", "en+f4", "en+m2", "en+m3", "en+m7", "en-gb-scotland",
    "en+croak", "en+klatt", "de", "fr", "es", "it", "nl", "pt", "pl", "sv",
)  # fmt: skip
HELD_OUT_VOICES = ("en+f5", "en-us+m4", "fi", "cs")  # evaluation only
WORDS = (
    "hello there how are you today I think that the weather is lovely and we could take a walk "
    "along the river later this afternoon before the light fades tell me about your favourite "
    "book or the last film you saw maybe something about space travel ancient history music "
    "cooking a garden full of tomatoes small boats harbours mountains quiet evenings friends "
    "numbers one two three four five six seven eight nine ten yes no perhaps certainly indeed"
).split()
HELD_OUT_TEXTS = (
    "Good morning, this is a quick test of the avatar's lips.",
    "Would you like to hear a story about a lighthouse keeper?",
    "Seventy two purple umbrellas waited patiently in the hallway.",
)


def espeak(
    text: str, *, voice: str = "en", rate: int = 165, pitch: int = 50
) -> tuple[np.ndarray, int]:
    """Speak text with espeak-ng. Returns (float32 mono wave, sample rate)."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise RuntimeError(
            "espeak-ng is not installed: install the Debian package espeak-ng (bin/bootstrap "
            "does it when run as root)"
        )
    command = [binary, "--stdout", "-v", voice, "-s", str(rate), "-p", str(pitch), text]
    wav = subprocess.run(command, capture_output=True, check=True).stdout
    wave, rate_hz = soundfile.read(io.BytesIO(wav), dtype="float32")
    return wave, rate_hz


def random_utterance(
    rng: np.random.Generator, sample_rate: int, *, held_out: bool = False
) -> np.ndarray:
    """A random sentence in a random voice, rate and pitch, at sample_rate."""
    if held_out:
        text = str(rng.choice(HELD_OUT_TEXTS))
        voice = str(rng.choice(HELD_OUT_VOICES))
    else:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(3, 14))))
        voice = str(rng.choice(VOICES))
    wave, rate = espeak(
        text, voice=voice, rate=int(rng.integers(120, 260)), pitch=int(rng.integers(10, 95))
    )
    wave = wave * rng.uniform(0.3, 1.0) / (np.abs(wave).max() + 1e-6)
    return resample(wave, rate, sample_rate)
