"""The scripted LLM: lines in turn, and the floor passed by name or round-robin."""

from __future__ import annotations

import asyncio
import json

import pytest
from livekit.agents.llm import ChatContext, FunctionToolCall, function_tool

from llm_bridge.handoff import CHARACTER_ARG, HANDOFF_TOOL, handoff_schema
from llm_bridge.offline import ScriptedLLM

ROSTER = ["Ann", "Bob", "Cy"]


async def _hand_over(raw_arguments: dict[str, object]) -> None:
    return None


TOOLS = [function_tool(_hand_over, raw_schema=handoff_schema("Bob", ["Ann", "Cy"]))]


def said(text: str) -> ChatContext:
    ctx = ChatContext.empty()
    ctx.add_message(role="user", content=text)
    return ctx


def bob() -> ScriptedLLM:
    return ScriptedLLM(name="Bob", lines=["One.", "Two."], roster=ROSTER)


def reply(llm: ScriptedLLM, ctx: ChatContext, *, tools=TOOLS, tool_choice="auto"):
    """(the line said, the character handed to or None)."""
    text, call = llm.respond(ctx, tools=tools, tool_choice=tool_choice)
    if call is None:
        return text, None
    assert isinstance(call, FunctionToolCall) and call.name == HANDOFF_TOOL
    return text, json.loads(call.arguments)[CHARACTER_ARG]


def test_lines_come_in_turn_and_cycle():
    llm = bob()
    lines = [reply(llm, said("Bob?"))[0] for _ in range(3)]
    assert lines == ["One.", "Two.", "One."]


def test_the_floor_goes_to_the_named_character_else_the_next_one():
    llm = bob()
    assert reply(llm, said("Cy, your turn")) == ("", "Cy")
    assert reply(llm, said("hello all")) == ("", "Cy")  # round-robin: Ann, Bob, Cy, Ann
    last = ScriptedLLM(name="Cy", lines=["Hm."], roster=ROSTER)
    assert reply(last, said("and?")) == ("", "Ann")


def test_a_line_naming_another_character_hands_the_floor_to_it():
    llm = ScriptedLLM(name="Bob", lines=["Right. Ann, what do you think?"], roster=ROSTER)
    assert reply(llm, said("Bob?")) == ("Right. Ann, what do you think?", "Ann")
    assert reply(llm, said("Bob?"), tool_choice="none") == ("Right. Ann, what do you think?", None)


def test_no_hand_over_when_it_cannot_or_should_not_happen():
    llm = bob()
    assert reply(llm, said("hello"), tool_choice="none") == ("One.", None)  # entering
    assert reply(llm, said("hello"), tools=[]) == ("Two.", None)  # no tool
    greeting = ChatContext.empty()
    greeting.add_message(role="assistant", content="Hi, I am Ann.")
    assert reply(llm, greeting) == ("One.", None)  # no user turn to pass on
    alone = ScriptedLLM(name="Bob", lines=["Solo."])
    assert reply(alone, said("Ann?")) == ("Solo.", None)


def test_the_line_streams_as_text_chunks():
    async def collect():
        stream = bob().chat(chat_ctx=said("Bob?"), tools=TOOLS)
        chunks = [chunk async for chunk in stream]
        await stream.aclose()
        return chunks

    chunks = asyncio.run(collect())
    assert "".join(c.delta.content for c in chunks if c.delta) == "One."


def test_bad_scripts_are_refused():
    with pytest.raises(ValueError, match="'Bob' has no scripted lines"):
        ScriptedLLM(name="Bob", lines=[])
    with pytest.raises(ValueError, match=r"'Dee' is not in the scene \['Ann', 'Bob', 'Cy'\]"):
        ScriptedLLM(name="Dee", lines=["x"], roster=ROSTER)
