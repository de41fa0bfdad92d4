"""The offline voice's "LLM": it answers with the character's scripted lines, in turn.

In a scene it takes turns the way an online LLM would, by calling the hand-over tool: a user
turn that names another character goes to that character, one that names nobody goes to the
next character in the scene (round-robin), and a line that names another character ("Ada,
what do you think?") hands the floor to it once said. A reply asked for with
tool_choice="none" (a character entering after a hand-over) never hands over, so the floor
cannot bounce forever.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Sequence
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.llm import ChatChunk, ChoiceDelta, FunctionToolCall, ToolChoice
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from llm_bridge.handoff import HANDOFF_TOOL, addressed, handoff_arguments

logger = logging.getLogger(__name__)


class ScriptedLLM(llm.LLM):
    """Replies with `lines` in order (cycling) for the character `name` in `roster`."""

    def __init__(self, *, name: str, lines: Sequence[str], roster: Sequence[str] = ()) -> None:
        super().__init__()
        roster = tuple(roster) or (name,)
        if not lines:
            raise ValueError(f"{name!r} has no scripted lines for the offline voice")
        if name not in roster:
            raise ValueError(f"{name!r} is not in the scene {list(roster)}")
        self._name, self._lines, self._roster = name, tuple(lines), roster
        self._spoken = 0  # lines said so far

    @property
    def model(self) -> str:
        return "scripted-lines"

    @property
    def provider(self) -> str:
        return "offline"

    def next_line(self) -> str:
        line = self._lines[self._spoken % len(self._lines)]
        self._spoken += 1
        return line

    def respond(
        self, chat_ctx: llm.ChatContext, *, tools: Sequence[llm.Tool], tool_choice: Any
    ) -> tuple[str, FunctionToolCall | None]:
        """This turn's answer: a line to say (maybe ""), then maybe a hand-over call."""
        may_hand_over = (
            len(self._roster) > 1
            and tool_choice != "none"
            and any(getattr(t, "id", None) == HANDOFF_TOOL for t in tools)
        )
        if may_hand_over and (target := self._addressee(chat_ctx)) is not None:
            return "", self._hand_over(target)
        line = self.next_line()
        named = addressed(line, self._roster) if may_hand_over else None
        return line, self._hand_over(named) if named not in (None, self._name) else None

    def _addressee(self, chat_ctx: llm.ChatContext) -> str | None:
        """Who should answer a fresh user turn, if not this character."""
        last = chat_ctx.items[-1] if chat_ctx.items else None
        if last is None or last.type != "message" or last.role != "user":
            return None
        named = addressed(last.text_content or "", self._roster)
        if named is not None:
            return None if named == self._name else named
        return self._roster[(self._roster.index(self._name) + 1) % len(self._roster)]

    def _hand_over(self, target: str) -> FunctionToolCall:
        logger.info("hand over", extra={"character": self._name, "to": target})
        return FunctionToolCall(
            name=HANDOFF_TOOL,
            arguments=handoff_arguments(target),
            call_id=f"call_{uuid.uuid4().hex[:16]}",
        )

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> ScriptedLLMStream:
        tools = tools or []
        text, call = self.respond(chat_ctx, tools=tools, tool_choice=tool_choice)
        return ScriptedLLMStream(
            self, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options, text=text, call=call
        )


class ScriptedLLMStream(llm.LLMStream):
    def __init__(
        self,
        owner: ScriptedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        text: str,
        call: FunctionToolCall | None,
    ) -> None:
        self._text, self._call = text, call
        self._id = uuid.uuid4().hex
        super().__init__(owner, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)

    async def _run(self) -> None:
        for word in re.findall(r"\S+\s*", self._text):  # streamed word by word, like an LLM
            self._send(ChoiceDelta(role="assistant", content=word))
        if self._call is not None:
            self._send(ChoiceDelta(role="assistant", tool_calls=[self._call]))

    def _send(self, delta: ChoiceDelta) -> None:
        self._event_ch.send_nowait(ChatChunk(id=self._id, delta=delta))
