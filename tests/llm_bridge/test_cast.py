"""A scene's cast: online or offline voices, and the floor passing between characters."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from livekit.agents.llm import RawFunctionTool
from livekit.plugins.openai.realtime import RealtimeModel

from llm_bridge.cast import CharacterAgent, build_cast
from llm_bridge.handoff import HANDOFF_TOOL
from llm_bridge.offline import EspeakTTS, ScriptedLLM, WebRtcVAD
from llm_bridge.persona import Persona
from tests.llm_bridge.conftest import CaptureAudioOutput, espeak

ANN = Persona(
    name="Ann",
    instructions="You are Ann.",
    greeting="Hello, I am Ann.",
    lines=("Ann line one.", "Bob, your view?"),
    openai_voice="coral",
    espeak_voice="en+f3",
    espeak_pitch=70,
)
BOB = Persona(
    name="Bob",
    instructions="You are Bob.",
    lines=("Bob line one.", "Bob line two."),
    openai_voice="ash",
    espeak_voice="en+m3",
    espeak_rate=140,
    espeak_pitch=20,
)


def spoken_by(persona: Persona, text: str) -> np.ndarray:
    return espeak(
        text, voice=persona.espeak_voice, rate=persona.espeak_rate, pitch=persona.espeak_pitch
    )


def test_the_floor_passes_by_name_and_round_robin_in_each_characters_voice():
    asyncio.run(_scene())


async def _scene():
    actives: list[int] = []
    cast = build_cast([ANN, BOB], on_active=actives.append, offline=True)
    session = cast.create_session()
    session.output.audio = audio_out = CaptureAudioOutput()
    await session.start(agent=cast.agents[0])
    try:
        await audio_out.wait_for_segments(1, timeout=10)  # Ann's greeting
        assert actives == [0]
        session.generate_reply(user_input="Bob, what do you think?")  # named: Bob
        await audio_out.wait_for_segments(2, timeout=10)
        assert actives == [0, 1] and cast.active_index == 1
        said_to_bob = [m.text_content for m in cast.agents[1].chat_ctx.messages()]
        assert "Bob, what do you think?" in said_to_bob  # the conversation went with the floor
        session.generate_reply(user_input="And the weather?")  # nobody named: the next one
        await audio_out.wait_for_segments(3, timeout=10)
        assert actives == [0, 1, 0]
        session.generate_reply(user_input="Ann, go on.")  # the speaker named: she answers,
        await audio_out.wait_for_segments(5, timeout=10)  # and her line passes the floor on
        assert actives == [0, 1, 0, 1]
    finally:
        await session.aclose()
        await cast.aclose()

    spoken = [(ANN, ANN.greeting), (BOB, "Bob line one."), (ANN, "Ann line one.")]
    spoken += [(ANN, "Bob, your view?"), (BOB, "Bob line two.")]
    for segment, (persona, text) in zip(audio_out.segments, spoken, strict=True):
        expected = spoken_by(persona, text)
        assert np.array_equal(segment.samples()[: len(expected)], expected), text
    other = spoken_by(ANN, "Bob line one.")  # the same words in the other character's voice
    assert not np.array_equal(audio_out.segments[1].samples()[: len(other)], other)


def test_offline_cast_gives_each_character_its_voice():
    cast = build_cast([ANN, BOB], offline=True)
    assert not cast.online and cast.names == ["Ann", "Bob"]
    for agent, persona in zip(cast.agents, [ANN, BOB], strict=True):
        assert isinstance(agent, CharacterAgent) and agent.persona is persona
        assert isinstance(agent.llm, ScriptedLLM)
        assert isinstance(agent.tts, EspeakTTS)
        assert (agent.tts.voice, agent.tts.rate, agent.tts.pitch) == (
            persona.espeak_voice,
            persona.espeak_rate,
            persona.espeak_pitch,
        )
    assert isinstance(cast.session_options()["vad"], WebRtcVAD)
    assert cast.session_options()["turn_handling"]["turn_detection"] == "vad"


def test_online_cast_gives_each_character_a_realtime_model(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    cast = build_cast([ANN, BOB])
    assert cast.online
    for agent, persona, other in zip(cast.agents, [ANN, BOB], ["Bob", "Ann"], strict=True):
        assert isinstance(agent.llm, RealtimeModel)
        assert agent.llm._opts.voice == persona.openai_voice
        assert agent.llm._opts.base_url == "http://127.0.0.1:9/v1"
        assert persona.instructions in agent.instructions and other in agent.instructions
        (tool,) = agent.tools
        assert isinstance(tool, RawFunctionTool) and tool.info.name == HANDOFF_TOOL
        assert tool.info.raw_schema["parameters"]["properties"]["character"]["enum"] == [other]
    assert cast.session_options() == {"vad": None}  # the service detects turns


def test_a_character_without_server_turn_detection_gets_the_local_vad():
    quiet = Persona(name="Cy", instructions="You are Cy.", realtime={"turn_detection": None})
    cast = build_cast([quiet], api_key="sk-test")
    assert cast.online and isinstance(cast.session_options()["vad"], WebRtcVAD)
    assert cast.agents[0].tools == []  # alone in the scene: nobody to hand over to


def test_the_offline_voice_is_used_without_a_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert not build_cast([ANN]).online
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert build_cast([ANN]).online
    assert not build_cast([ANN], offline=True).online


def test_scene_errors_say_what_to_fix():
    with pytest.raises(ValueError, match="at least one character"):
        build_cast([], offline=True)
    with pytest.raises(ValueError, match="two characters are called 'ann'"):
        build_cast([ANN, Persona(name="ann", instructions="x", lines=("hi",))], offline=True)
    silent = Persona(name="Dee", instructions="x")
    with pytest.raises(ValueError, match="'Dee' has no scripted lines.*OPENAI_API_KEY"):
        build_cast([silent], offline=True)
    build_cast([silent], api_key="sk-test")  # online it needs none
    with pytest.raises(ValueError, match="no character named 'Zed'; the scene has"):
        build_cast([ANN, BOB], offline=True).character("Zed")
