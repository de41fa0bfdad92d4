"""What a creator may save: a character or scene as the console edits it (a draft), held to
the library's limits on texts, uploads and voice samples before the store writes anything."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soundfile

from app.characters import Character, FaceCrop
from app.inputs import IMAGE_MAX_BYTES, InputError, MiB
from avatar_engine import resample
from llm_bridge.persona import Persona

VOICE_RATE = 24000  # voice samples are stored as mono 16-bit wav at this rate
VOICE_MAX_SECONDS = 30.0
VOICE_MAX_BYTES = 20 * MiB  # 30 s of 48 kHz stereo float wav is 11 MiB
# The largest file the library takes: no upload to the console needs to be larger.
UPLOAD_MAX_BYTES = max(IMAGE_MAX_BYTES, VOICE_MAX_BYTES)
# Text a character or scene holds, in characters (the greeting and each line are spoken; the
# instructions are the LLM's prompt).
NAME_MAX_CHARS = 80
INSTRUCTIONS_MAX_CHARS = 20_000
GREETING_MAX_CHARS = 500
LINE_MAX_CHARS = 500
LINES_MAX = 200


@dataclass(frozen=True)
class CharacterDraft:
    """Everything a character is, as the console edits it; a save stores all of it."""

    persona: Persona
    portrait: FaceCrop  # a square picture and its one face box
    voice: np.ndarray | None = None  # [S] float32 mono at VOICE_RATE, or no voice sample

    def __post_init__(self) -> None:
        check_text(self.persona)

    @classmethod
    def of(cls, character: Character) -> CharacterDraft:
        voice = None
        if character.voice is not None:
            voice, _ = soundfile.read(character.voice, dtype="float32")
        return cls(character.persona, FaceCrop(character.picture(), (character.face_box,)), voice)


@dataclass(frozen=True)
class SceneDraft:
    name: str
    characters: tuple[str, ...]  # 2-4 character ids, speaker order
    photo: FaceCrop | None = None  # a group photo with one face box per character; None:
    # the characters' portraits side by side

    def __post_init__(self) -> None:
        _check_length("scene's name", self.name, NAME_MAX_CHARS)


def check_text(persona: Persona) -> None:
    """A persona's texts within the limits above (ValueError naming the field and its limit)."""
    _check_length("name", persona.name, NAME_MAX_CHARS)
    _check_length("persona's instructions", persona.instructions, INSTRUCTIONS_MAX_CHARS)
    _check_length("greeting", persona.greeting, GREETING_MAX_CHARS)
    if len(persona.lines) > LINES_MAX:
        raise ValueError(f"there are {len(persona.lines)} scripted lines; the limit is {LINES_MAX}")
    for k, line in enumerate(persona.lines):
        _check_length(f"scripted line {k + 1}", line, LINE_MAX_CHARS)


def _check_length(what: str, text: str, limit: int) -> None:
    if len(text) > limit:
        raise ValueError(f"the {what} is {len(text):,} characters long; the limit is {limit:,}")


def prepare_voice(audio: np.ndarray, rate: int) -> np.ndarray:
    """A voice sample as stored: [S] float32 mono at VOICE_RATE, at most VOICE_MAX_SECONDS.

    Args:
        audio: [N] float32 mono in [-1, 1] (as app.inputs.load_audio gives it).
    """
    seconds = len(audio) / rate
    if seconds > VOICE_MAX_SECONDS:
        raise InputError(
            f"the voice sample is {seconds:.1f} s long; the limit is {VOICE_MAX_SECONDS:g} s "
            "(a few clear sentences are enough)"
        )
    clipped: np.ndarray = np.clip(resample(audio, rate, VOICE_RATE), -1, 1)
    return clipped
