"""The avatar as its own participant (`avatar worker --role avatar`): it joins an agent's room
with the token the agent minted (app/avatar_job.py), takes the agent's replies as data streams
and publishes our video and audio on the agent's behalf.

livekit-agents' DataStreamAudioReceiver brings in the audio and answers lk.clear_buffer;
AvatarRunner drives our VideoGenerator with it and tells the agent lk.playback_started at the
first frame of a segment that plays, and lk.playback_finished once per segment: when its last
frame has played, or at once with the played position when it is cleared.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from livekit import rtc
from livekit.agents.voice.avatar import AudioSegmentEnd, AvatarRunner, DataStreamAudioReceiver

from app.avatar import AvatarEngine, AvatarVideoGenerator
from app.avatar_job import AvatarJob
from app.casting import SPEAKER_ATTRIBUTE, Casting
from app.characters import CharacterLibrary
from app.conversation import AGENT_AUDIO_RATE, avatar_options

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _SpeakerMark:
    """In the receiver's channel, before a segment's audio: who speaks it."""

    name: str


class NamedAudioReceiver(DataStreamAudioReceiver):
    """DataStreamAudioReceiver that passes on each segment's speaker (its stream's
    SPEAKER_ATTRIBUTE) in order with the audio: `on_speaker` is called just before the
    segment's first frame is handed on, so what was pushed before it keeps its speaker.

    It reaches into livekit-agents 1.8's receiver (`_iter_reader`, `_data_ch`; pyproject pins
    <1.9): the scene test in tests/app/test_avatar_participant.py fails if those change."""

    def __init__(
        self, room: rtc.Room, *, sender_identity: str, on_speaker: Callable[[str], None]
    ) -> None:
        super().__init__(room, sender_identity=sender_identity)
        self._on_speaker = on_speaker

    async def _iter_reader(self, reader: rtc.ByteStreamReader) -> AsyncIterator[bytes]:
        # each stream is read whole, in arrival order, its frames queued as they come: a mark
        # queued first goes out right before them (and is dropped with them at a clear)
        name = (reader.info.attributes or {}).get(SPEAKER_ATTRIBUTE)
        if name:
            self._data_ch.send_nowait(_SpeakerMark(name))  # type: ignore[arg-type]
        async for data in super()._iter_reader(reader):
            yield data

    async def __anext__(self) -> rtc.AudioFrame | AudioSegmentEnd:
        while True:
            item: object = await super().__anext__()
            if isinstance(item, _SpeakerMark):
                self._on_speaker(item.name)
                continue
            assert isinstance(item, rtc.AudioFrame | AudioSegmentEnd)
            return item


class AvatarParticipant:
    """One avatar in one room: the generator, and the runner that publishes it."""

    def __init__(self, *, generator: AvatarVideoGenerator, runner: AvatarRunner) -> None:
        self.generator, self.runner = generator, runner

    async def aclose(self) -> None:
        await self.runner.aclose()
        await self.generator.aclose()


def speaker_index(casting: Casting) -> Callable[[str], int | None]:
    """A speaker's name or character id (any case) -> its index in the cast, None if not in
    it; a cast of one speaks whatever the agent is called."""
    if len(casting.personas) == 1:
        return lambda name: 0
    names = tuple(p.name for p in casting.personas)
    index = {key.casefold(): i for keys in (casting.ids, names) for i, key in enumerate(keys)}
    return lambda name: index.get(name.casefold())


async def start_avatar_participant(
    *,
    room: rtc.Room,
    engine: AvatarEngine,
    job: AvatarJob,
    library: CharacterLibrary | None = None,
) -> AvatarParticipant:
    """In a room the avatar has joined: show the job's cast, speaking the agent's audio."""
    casting = Casting.of(job.request, library or CharacterLibrary())
    scene = await asyncio.to_thread(engine.scene, casting.picture, casting.face_boxes)
    generator = AvatarVideoGenerator(engine=engine, scene=scene, sample_rate=AGENT_AUDIO_RATE)
    index_of = speaker_index(casting)

    def on_speaker(name: str) -> None:
        index = index_of(name)
        if index is None:
            logger.warning("audio names no character of the scene", extra={"speaker": name})
            return
        generator.set_next_speaker(index)

    receiver = NamedAudioReceiver(room, sender_identity=job.agent_identity, on_speaker=on_speaker)
    runner = AvatarRunner(
        room, audio_recv=receiver, video_gen=generator, options=avatar_options(engine)
    )
    participant = AvatarParticipant(generator=generator, runner=runner)
    try:
        await runner.start()
    except BaseException:
        await participant.aclose()
        raise
    logger.info("avatar participant started", extra={"room": room.name, "job": repr(job)})
    return participant
