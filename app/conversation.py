"""One conversation: the cast's agents and the avatar around one AgentSession.

The assembly is the same in every transport: the avatar's `QueueAudioOutput`
(wait_playback_start=True) is the session's audio output, and whatever plays the avatar out
(livekit's `AvatarRunner` in a room, `AvatarPlayout` elsewhere) drains it and reports playback.
The avatar is started before `session.start()`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.avatar import AvatarOptions, AvatarRunner, QueueAudioOutput
from livekit.agents.voice.io import AudioInput

from app.avatar import AvatarEngine, AvatarVideoGenerator
from app.avatar.playout import AvatarPlayout, FrameSink
from app.casting import SPEAKER_ATTRIBUTE, Casting, CastRequest
from app.characters import CharacterLibrary
from app.transcript import LineSink, Transcript
from llm_bridge.cast import Cast, build_cast

logger = logging.getLogger(__name__)

AGENT_AUDIO_RATE = 24000  # what OpenAI Realtime and the avatar's published audio use
CLOSE_TRANSCRIPT_S = 0.2  # how long a closing session waits for the last user transcript


class Conversation:
    """An AgentSession, its cast and its avatar; `audio` is the session's audio output, which
    the avatar plays out (`runner` in a LiveKit room)."""

    def __init__(
        self,
        *,
        session: AgentSession,
        cast: Cast,
        generator: AvatarVideoGenerator,
        audio: QueueAudioOutput,
    ) -> None:
        self.session, self.cast, self.generator, self.audio = session, cast, generator, audio
        self.runner: AvatarRunner | AvatarPlayout | None = None  # drains `audio`
        self.transcript: Transcript | None = None  # our transports' (a room has its own)
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run `coro` in the background until it ends or the conversation closes."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """The session first (it stops speaking), then the avatar, then the voices."""
        await self.session.aclose()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transcript is not None:
            await self.transcript.aclose()
        if self.runner is not None:
            await self.runner.aclose()
        await self.generator.aclose()
        await self.cast.aclose()


async def prepare_conversation(
    *,
    engine: AvatarEngine,
    casting: Casting,
    api_key: str | None = None,
    base_url: str | None = None,
    on_speaker: Callable[[int], None] | None = None,
) -> Conversation:
    """The session, cast and avatar of one conversation, not yet started.

    Args:
        on_speaker: told the index of each character that takes the floor (the engine is).
        api_key, base_url: OpenAI Realtime's (default: OPENAI_API_KEY, OPENAI_BASE_URL);
            without a key the offline voice speaks.
    """
    scene = await asyncio.to_thread(engine.scene, casting.picture, casting.face_boxes)
    generator = AvatarVideoGenerator(engine=engine, scene=scene, sample_rate=AGENT_AUDIO_RATE)

    def on_active(index: int) -> None:
        generator.set_speaker(index)
        if on_speaker is not None:
            on_speaker(index)

    cast = build_cast(casting.personas, on_active=on_active, api_key=api_key, base_url=base_url)
    # A closing session waits for the user's last transcript (2 s by default); after a hang-up
    # nothing reads it, and the call's slot stays taken meanwhile.
    session = cast.create_session(session_close_transcript_timeout=CLOSE_TRANSCRIPT_S)
    audio = QueueAudioOutput(wait_playback_start=True, sample_rate=generator.sample_rate)
    session.output.audio = audio
    return Conversation(session=session, cast=cast, generator=generator, audio=audio)


async def start_conversation(
    *,
    room: rtc.Room,
    engine: AvatarEngine,
    request: CastRequest,
    library: CharacterLibrary | None = None,
) -> Conversation:
    """In a connected room: cast the request, publish the avatar (avatar_audio, avatar_video)
    through AvatarRunner, then start the session on the room's audio. The character who has
    the floor is named in the agent's SPEAKER_ATTRIBUTE; the session's RoomIO publishes the
    transcript (lk.transcription text streams, the character's paced with its audio)."""
    casting = Casting.of(request, library or CharacterLibrary())
    names = [p.name for p in casting.personas]

    def announce(index: int) -> None:
        conversation.spawn(name_speaker(room, names[index]), name="name-speaker")

    conversation = await prepare_conversation(engine=engine, casting=casting, on_speaker=announce)
    conversation.runner = AvatarRunner(
        room,
        audio_recv=conversation.audio,
        video_gen=conversation.generator,
        options=avatar_options(engine),
    )
    try:
        await conversation.runner.start()  # the avatar before the session, as livekit requires
        await conversation.session.start(agent=conversation.cast.agents[0], room=room)
    except BaseException:
        await conversation.aclose()
        raise
    logger.info("conversation started", extra={"room": room.name, "characters": names})
    return conversation


def avatar_options(engine: AvatarEngine) -> AvatarOptions:
    """What AvatarRunner publishes: the engine's frames and fps, the agent's audio."""
    stream = engine.preset.stream
    return AvatarOptions(
        video_width=stream.output_width,
        video_height=stream.output_height,
        video_fps=engine.fps,
        audio_sample_rate=AGENT_AUDIO_RATE,
        audio_channels=1,
    )


async def name_speaker(room: rtc.Room, name: str) -> None:
    """Set the agent's SPEAKER_ATTRIBUTE (a room not yet connected has no participant)."""
    if room.isconnected():
        await room.local_participant.set_attributes({SPEAKER_ATTRIBUTE: name})


async def start_local(
    conversation: Conversation,
    *,
    user_audio: AudioInput,
    sink: FrameSink,
    transcript: LineSink | None = None,
    names: tuple[str, ...] = (),
) -> Conversation:
    """Without a room (our own transports, tests): the user's audio in, the avatar's frames
    to `sink` at real time through AvatarPlayout, started before the session.

    Args:
        transcript: gets the call's transcript lines (app/transcript.py), the character's
            words paced with its audio.
        names: the characters' names by speaker index, for the transcript.
    """
    session = conversation.session
    session.input.audio = user_audio
    if transcript is not None:
        generator = conversation.generator
        conversation.transcript = Transcript(
            session=session, speaker=lambda: names[generator.speaker], on_line=transcript
        )
        session.output.audio, session.output.transcription = conversation.transcript.outputs(
            conversation.audio
        )
    conversation.runner = AvatarPlayout(
        audio_recv=conversation.audio, video_gen=conversation.generator, sink=sink
    )
    try:
        await conversation.runner.start()
        await conversation.session.start(agent=conversation.cast.agents[0])
    except BaseException:
        await conversation.aclose()
        raise
    return conversation
