"""OpenAI Realtime voices built from personas (no connection is made)."""

from __future__ import annotations

import pytest
from openai.types.realtime.realtime_audio_input_turn_detection import SemanticVad, ServerVad

from llm_bridge.persona import Persona
from llm_bridge.realtime import DEFAULT_MODEL, realtime_model


def persona(**realtime) -> Persona:
    return Persona(name="Ann", instructions="You are Ann.", openai_voice="coral", realtime=realtime)


def test_model_voice_and_turn_detection_come_from_the_persona():
    model = realtime_model(
        persona(
            model="gpt-realtime-mini",
            turn_detection={"type": "server_vad", "silence_duration_ms": 400},
            speed=1.2,
            input_audio_noise_reduction="near_field",
        ),
        api_key="sk-test",
        base_url="http://127.0.0.1:9/v1",
    )
    opts = model._opts
    assert (opts.model, opts.voice, opts.speed) == ("gpt-realtime-mini", "coral", 1.2)
    assert opts.turn_detection == ServerVad(type="server_vad", silence_duration_ms=400)
    assert opts.base_url == "http://127.0.0.1:9/v1" and opts.api_key == "sk-test"
    assert model.capabilities.turn_detection


def test_defaults_and_environment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8/v1")
    opts = realtime_model(persona())._opts
    assert (opts.model, opts.api_key, opts.base_url) == (
        DEFAULT_MODEL,
        "sk-env",
        "http://127.0.0.1:8/v1",
    )
    assert isinstance(opts.turn_detection, SemanticVad)  # livekit's default: the server decides
    assert not realtime_model(persona(turn_detection=None)).capabilities.turn_detection


def test_missing_key_says_how_to_get_a_voice(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="set OPENAI_API_KEY or pass api_key"):
        realtime_model(persona())


@pytest.mark.parametrize(
    ("realtime", "message"),
    [
        ({"turn_detection": {"type": "push_to_talk"}}, "turn_detection of 'Ann' is not valid"),
        ({"turn_detection": {"type": "server_vad", "threshold": "high"}}, "ServerVad.threshold"),
        ({"speed": 3}, r"realtime speed 3 of 'Ann' must lie in 0.25..1.5"),
        ({"model": ""}, "realtime model of 'Ann' must be a model name"),
        ({"input_audio_noise_reduction": "loud"}, "must be one of near_field, far_field"),
        ({"input_audio_transcription": 5}, "must be a model name or null"),
    ],
)
def test_bad_realtime_options_are_named(realtime, message):
    with pytest.raises(ValueError, match=message):
        realtime_model(persona(**realtime), api_key="sk-test")
