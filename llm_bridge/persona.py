"""What a character is to the conversation: its instructions, lines and voices."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "cedar", "coral", "echo", "marin", "sage", "shimmer", "verse",
)  # fmt: skip
# Options a persona may set in "realtime" (llm_bridge/realtime.py reads them):
REALTIME_OPTIONS = (
    "model",  # e.g. "gpt-realtime"
    "turn_detection",  # {"type": "server_vad" | "semantic_vad", ...}, or None: local VAD
    "speed",  # 0.25 .. 1.5
    "input_audio_transcription",  # a transcription model name, or None
    "input_audio_noise_reduction",  # "near_field" | "far_field" | None
)


@dataclass(frozen=True)
class Persona:
    """A character's conversational side; the picture and face region live with the app."""

    name: str  # how the user and the other characters address it
    instructions: str  # the LLM's system prompt for this character
    greeting: str = ""  # said when the character first takes the floor; "" = say nothing
    lines: tuple[str, ...] = ()  # the offline voice's scripted replies, spoken in turn
    openai_voice: str = "alloy"  # OpenAI Realtime preset voice
    espeak_voice: str = "en"  # espeak-ng voice for the offline voice, e.g. "en+f3", "de"
    espeak_rate: int = 165  # words per minute
    espeak_pitch: int = 50  # 0..99
    realtime: dict[str, Any] = field(default_factory=dict)  # extra RealtimeModel options

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a persona needs a name")
        if self.openai_voice not in OPENAI_VOICES:
            raise ValueError(
                f"unknown OpenAI voice {self.openai_voice!r}; choose one of "
                f"{', '.join(OPENAI_VOICES)}"
            )
        if not 80 <= self.espeak_rate <= 450:
            raise ValueError(f"espeak_rate {self.espeak_rate} must lie in 80..450 words/min")
        if not 0 <= self.espeak_pitch <= 99:
            raise ValueError(f"espeak_pitch {self.espeak_pitch} must lie in 0..99")
        unknown = sorted(set(self.realtime) - set(REALTIME_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown realtime options {unknown} for {self.name!r}; "
                f"known: {', '.join(REALTIME_OPTIONS)}"
            )
        if isinstance(self.lines, str):
            raise ValueError(f"lines of {self.name!r} must be a list of texts, not one text")
        object.__setattr__(self, "lines", tuple(self.lines))
        for i, line in enumerate(self.lines):
            if not isinstance(line, str) or not line.strip():
                raise ValueError(f"line {i} of {self.name!r} is {line!r}; a line must be text")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Persona:
        """From a character file's "persona" object; unknown keys are errors, not ignored."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown persona fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["lines"] = list(self.lines)
        return data
