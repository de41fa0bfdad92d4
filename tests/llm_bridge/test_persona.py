"""Persona validation: every bad field says what is wrong and what is allowed."""

from __future__ import annotations

import pytest

from llm_bridge.persona import REALTIME_OPTIONS, Persona


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "  "}, "a persona needs a name"),
        ({"openai_voice": "robot"}, "unknown OpenAI voice 'robot'; choose one of alloy, ash"),
        ({"espeak_rate": 20}, "espeak_rate 20 must lie in 80..450 words/min"),
        ({"espeak_pitch": 120}, "espeak_pitch 120 must lie in 0..99"),
        ({"lines": "Hello"}, "lines of 'Ann' must be a list of texts, not one text"),
        ({"lines": ["Hi", " "]}, "line 1 of 'Ann' is ' '; a line must be text"),
        ({"realtime": {"temperature": 1}}, r"unknown realtime options \['temperature'\] for 'Ann'"),
    ],
)
def test_bad_fields_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        Persona(**{"name": "Ann", "instructions": "You are Ann.", **fields})


def test_from_dict_rejects_unknown_keys_and_round_trips():
    with pytest.raises(ValueError, match=r"unknown persona fields \['voice'\]"):
        Persona.from_dict({"name": "Ann", "instructions": "x", "voice": "alloy"})
    persona = Persona(
        name="Ann",
        instructions="You are Ann.",
        lines=("Hi.", "Bye."),
        realtime={"model": "gpt-realtime", "turn_detection": None},
    )
    assert Persona.from_dict(persona.to_dict()) == persona
    assert set(persona.realtime) <= set(REALTIME_OPTIONS)
