"""The OpenAI Realtime voice: one livekit-plugins-openai RealtimeModel per character.

The model, voice and server turn detection come from the persona, so characters in one scene
can sound and take turns differently. OPENAI_API_KEY and OPENAI_BASE_URL are read from the
environment unless given explicitly (a loopback test server is reached through base_url).
"""

from __future__ import annotations

import os
from typing import Any

from livekit.agents import NOT_GIVEN
from livekit.plugins.openai.realtime import RealtimeModel
from openai.types.realtime import AudioTranscription, NoiseReductionType
from openai.types.realtime.realtime_audio_input_turn_detection import (
    RealtimeAudioInputTurnDetection,
)
from pydantic import TypeAdapter, ValidationError

from llm_bridge.persona import Persona

DEFAULT_MODEL = "gpt-realtime"
SPEED_RANGE = (0.25, 1.5)  # what the Realtime API accepts
NOISE_REDUCTIONS = ("near_field", "far_field")
_TURN_DETECTION = TypeAdapter(RealtimeAudioInputTurnDetection)


def api_key_from_env() -> str | None:
    """The configured OpenAI key, or None when the offline voice should be used."""
    return os.environ.get("OPENAI_API_KEY") or None


def realtime_options(persona: Persona) -> dict[str, Any]:
    """persona.realtime checked and turned into RealtimeModel keyword arguments."""
    opts = persona.realtime
    kwargs: dict[str, Any] = {"model": opts.get("model", DEFAULT_MODEL)}
    if not isinstance(kwargs["model"], str) or not kwargs["model"].strip():
        raise ValueError(f"realtime model of {persona.name!r} must be a model name")
    if "turn_detection" in opts:
        kwargs["turn_detection"] = _turn_detection(persona.name, opts["turn_detection"])
    if "speed" in opts:
        speed = opts["speed"]
        if not isinstance(speed, int | float) or not SPEED_RANGE[0] <= speed <= SPEED_RANGE[1]:
            raise ValueError(
                f"realtime speed {speed!r} of {persona.name!r} must lie in "
                f"{SPEED_RANGE[0]}..{SPEED_RANGE[1]}"
            )
        kwargs["speed"] = float(speed)
    if "input_audio_transcription" in opts:
        model = opts["input_audio_transcription"]
        if model is not None and not isinstance(model, str):
            raise ValueError(
                f"input_audio_transcription of {persona.name!r} must be a model name or null"
            )
        kwargs["input_audio_transcription"] = model and AudioTranscription(model=model)
    if "input_audio_noise_reduction" in opts:
        mode: NoiseReductionType | None = opts["input_audio_noise_reduction"]
        if mode is not None and mode not in NOISE_REDUCTIONS:
            raise ValueError(
                f"input_audio_noise_reduction {mode!r} of {persona.name!r} must be one of "
                f"{', '.join(NOISE_REDUCTIONS)} or null"
            )
        kwargs["input_audio_noise_reduction"] = mode
    return kwargs


def _turn_detection(name: str, value: Any) -> RealtimeAudioInputTurnDetection | None:
    if value is None:
        return None
    try:
        return _TURN_DETECTION.validate_python(value)
    except ValidationError as e:
        raise ValueError(
            f"turn_detection of {name!r} is not valid: {e.errors()[0]['msg']} "
            f"(at {'.'.join(map(str, e.errors()[0]['loc'])) or 'top level'}); give "
            '{"type": "server_vad", "silence_duration_ms": 500} or {"type": "semantic_vad"}, '
            "or null to let the session's VAD detect turns"
        ) from None


def realtime_model(
    persona: Persona, *, api_key: str | None = None, base_url: str | None = None
) -> RealtimeModel:
    """The character's RealtimeModel (no connection is made until a session starts)."""
    key = api_key or api_key_from_env()
    if not key:
        raise ValueError(
            "the OpenAI Realtime voice needs an API key: set OPENAI_API_KEY or pass api_key "
            "(without one, build the cast with the offline voice)"
        )
    url = base_url or os.environ.get("OPENAI_BASE_URL") or NOT_GIVEN
    return RealtimeModel(
        voice=persona.openai_voice, api_key=key, base_url=url, **realtime_options(persona)
    )
