"""Characters as livekit Agents, and a scene's cast: one AgentSession, one Agent per character,
the floor passed by hand-over (a tool the LLM calls, naming the next character).

    cast = build_cast(personas, on_active=engine_set_speaker)  # online if OPENAI_API_KEY is set
    session = cast.create_session()
    session.output.audio = ...  # e.g. QueueAudioOutput feeding the avatar
    await session.start(agent=cast.agents[0])
    ...
    await session.aclose()
    await cast.aclose()
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from typing import Any

from livekit.agents import Agent, AgentSession, llm
from livekit.agents.llm import ToolError, function_tool

from llm_bridge.handoff import CHARACTER_ARG, HANDOFF_TOOL, handoff_schema
from llm_bridge.offline import EspeakTTS, ScriptedLLM, UtteranceSTT, WebRtcVAD
from llm_bridge.persona import Persona
from llm_bridge.realtime import api_key_from_env, realtime_model

logger = logging.getLogger(__name__)

OnActive = Callable[[int], None]  # gets the index of the character that takes the floor
# The offline voice's turns: our VAD ends them; its hangover is counted in the endpointing delay
OFFLINE_TURN_HANDLING: dict[str, Any] = {
    "turn_detection": "vad",
    "interruption": {"mode": "vad"},
    # a speculative reply would use up a scripted line that may then be thrown away
    "preemptive_generation": {"enabled": False},
}


def scene_instructions(persona: Persona, others: Sequence[str]) -> str:
    """The persona's instructions, plus how the scene works when there are other characters."""
    if not others:
        return persona.instructions
    return (
        f"{persona.instructions}\n\nYou are {persona.name}, in a scene with "
        f"{', '.join(others)}. Earlier replies in the conversation may have been spoken by "
        f"them. When the user addresses one of them by name, or one of them should answer "
        f"next, call {HANDOFF_TOOL} with that name and do not answer yourself."
    )


class CharacterAgent(Agent):
    """One character: its persona's instructions and voice, a greeting, and the hand-over."""

    def __init__(self, *, persona: Persona, index: int, cast: Cast, **models: Any) -> None:
        others = [p.name for p in cast.personas if p.name != persona.name]
        super().__init__(
            instructions=scene_instructions(persona, others),
            id=persona.name,
            tools=[self._handoff_tool(persona.name, others)] if others else [],
            **models,
        )
        self.persona, self.index = persona, index
        self._cast = cast
        self._greeted = False
        self._handed_over = False  # set by the hand-over that picked this character

    def _handoff_tool(self, name: str, others: Sequence[str]) -> llm.RawFunctionTool:
        async def hand_over(raw_arguments: dict[str, object]) -> Agent:
            try:
                target = self._cast.character(str(raw_arguments.get(CHARACTER_ARG, "")))
            except ValueError as e:
                raise ToolError(str(e)) from None
            if target is self:
                raise ToolError(f"you are {name}; answer the user yourself")
            # the conversation so far goes with the floor; the instructions stay each one's own
            await target.update_chat_ctx(self.chat_ctx.copy(exclude_instructions=True))
            target._handed_over = True
            logger.info("hand over", extra={"from": name, "to": target.persona.name})
            return target

        return function_tool(hand_over, raw_schema=handoff_schema(name, others))

    async def on_enter(self) -> None:
        self._cast._set_active(self.index)
        handed_over, self._handed_over = self._handed_over, False
        greeting = self.persona.greeting
        if greeting and not self._greeted:
            self._greeted = True
            if self._cast.online:
                answer = " Then answer what was last said to you." if handed_over else ""
                self.session.generate_reply(
                    instructions=f'Greet the user with these words: "{greeting}".{answer}',
                    tool_choice="none",
                )
            else:
                self.session.say(greeting)
        elif handed_over:
            # the new speaker answers; it may not hand the floor straight back
            self.session.generate_reply(tool_choice="none")


class Cast:
    """The characters of one scene as Agents for one AgentSession (not shared across sessions)."""

    def __init__(
        self,
        *,
        personas: Sequence[Persona],
        on_active: OnActive | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
    ) -> None:
        """Args:
        personas: the scene's characters; the index of each is its speaker index.
        on_active: called with a character's index when it takes the floor.
        api_key: OpenAI key; with one every character speaks through OpenAI Realtime,
            without one the offline voice speaks (webrtcvad turns, scripted lines, espeak-ng).
        base_url: OpenAI base URL (default: OPENAI_BASE_URL, else the service's).
        """
        self.personas = tuple(personas)
        _check_scene(self.personas)
        self.online = bool(api_key)
        self._on_active = on_active
        self._active: int | None = None
        self._models: list[Any] = []  # closed by aclose()
        if self.online:
            models = [realtime_model(p, api_key=api_key, base_url=base_url) for p in self.personas]
            # a character without server turn detection needs the session's VAD for its turns
            local_turns = any(not m.capabilities.turn_detection for m in models)
            self.vad = WebRtcVAD() if local_turns else None
            self._models += models
            kwargs = [{"llm": m} for m in models]
        else:
            self.vad = WebRtcVAD()
            stt = UtteranceSTT()
            kwargs = [self._offline_voice(p, self.names, stt) for p in self.personas]
            self._models.append(stt)
        self.agents = [
            CharacterAgent(persona=p, index=i, cast=self, **kw)
            for i, (p, kw) in enumerate(zip(self.personas, kwargs, strict=True))
        ]
        logger.info(
            "cast ready",
            extra={"voice": "realtime" if self.online else "offline", "characters": self.names},
        )

    def _offline_voice(
        self, persona: Persona, roster: list[str], stt: UtteranceSTT
    ) -> dict[str, Any]:
        if not persona.lines:
            raise ValueError(
                f"{persona.name!r} has no scripted lines, and the offline voice (used because no "
                "OpenAI API key is set) only speaks those: add some under 'lines', or set "
                "OPENAI_API_KEY"
            )
        speech = EspeakTTS(
            voice=persona.espeak_voice, rate=persona.espeak_rate, pitch=persona.espeak_pitch
        )
        lines = ScriptedLLM(name=persona.name, lines=persona.lines, roster=roster)
        self._models += [speech, lines]
        turns = {k: OFFLINE_TURN_HANDLING[k] for k in ("turn_detection", "interruption")}
        return {"llm": lines, "tts": speech, "stt": stt, "vad": self.vad, "turn_handling": turns}

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.personas]

    @property
    def active_index(self) -> int | None:
        """The character that has the floor (None before the session starts)."""
        return self._active

    def character(self, name: str) -> CharacterAgent:
        """The character called `name` (any case)."""
        for agent in self.agents:
            if agent.persona.name.casefold() == name.strip().casefold():
                return agent
        raise ValueError(f"no character named {name!r}; the scene has {self.names}")

    def session_options(self) -> dict[str, Any]:
        """AgentSession keyword arguments this cast needs (a VAD, or explicitly none, so the
        session does not load its default one; the offline voice's turn handling)."""
        options: dict[str, Any] = {"vad": self.vad}
        if not self.online:
            options["turn_handling"] = copy.deepcopy(OFFLINE_TURN_HANDLING)
        return options

    def create_session(self, **overrides: Any) -> AgentSession:
        """An AgentSession for this cast; overrides are more AgentSession arguments."""
        return AgentSession(**{**self.session_options(), **overrides})

    def _set_active(self, index: int) -> None:
        self._active = index
        logger.info(
            "character active", extra={"index": index, "character": self.personas[index].name}
        )
        if self._on_active is not None:
            self._on_active(index)

    async def aclose(self) -> None:
        """Close the characters' models; close the session that used them first."""
        for model in self._models:
            await model.aclose()
        self._models.clear()


def _check_scene(personas: Sequence[Persona]) -> None:
    if not personas:
        raise ValueError("a cast needs at least one character")
    seen: set[str] = set()
    for persona in personas:
        if not isinstance(persona, Persona):
            raise TypeError(f"a cast is made of Persona objects, not {type(persona).__name__}")
        key = persona.name.strip().casefold()
        if key in seen:
            raise ValueError(
                f"two characters are called {persona.name!r}; names must differ so the user "
                "and the LLM can address each one"
            )
        seen.add(key)


def build_cast(
    personas: Sequence[Persona],
    *,
    on_active: OnActive | None = None,
    api_key: str | None = None,
    base_url: str | None = None,
    offline: bool = False,
) -> Cast:
    """The scene's cast: OpenAI Realtime voices when a key is given or OPENAI_API_KEY is set
    (and offline is False), else the offline demo voice."""
    key = None if offline else (api_key or api_key_from_env())
    return Cast(personas=personas, on_active=on_active, api_key=key, base_url=base_url)
