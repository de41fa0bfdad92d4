"""The conversation assembly: what a job asks for, who is cast, and the avatar in a room."""

from __future__ import annotations

import asyncio

import pytest
from livekit import rtc
from livekit.agents.voice.avatar import QueueAudioOutput

from app import conversation as conversation_module
from app.casting import Casting, CastRequest
from app.characters import CharacterLibrary
from app.conversation import start_conversation
from tests.app.session_io import wait_for


@pytest.mark.parametrize(
    "metadata, request_or_error",
    [
        ("", CastRequest()),
        ('{"character": "ada"}', CastRequest(character="ada")),
        ('{"scene": "duo"}', CastRequest(scene="duo")),
        ("ada", "is not JSON"),
        ('["ada"]', "is a list"),
        ('{"characters": "ada"}', "unknown job metadata keys \\['characters'\\]"),
        ('{"character": ""}', "non-empty id"),
        ('{"character": "ada", "scene": "duo"}', "not both"),
    ],
)
def test_job_metadata(metadata, request_or_error):
    if isinstance(request_or_error, CastRequest):
        assert CastRequest.from_metadata(metadata) == request_or_error
    else:
        with pytest.raises(ValueError, match=request_or_error):
            CastRequest.from_metadata(metadata)


def test_casting_from_the_library():
    library = CharacterLibrary()
    default = Casting.of(CastRequest(), library)
    assert [p.name for p in default.personas] == ["Ada"] and len(default.face_boxes) == 1
    duo = Casting.of(CastRequest(scene="duo"), library)
    assert [p.name for p in duo.personas] == ["Ada", "Bo"]
    assert duo.picture.ndim == 3 and len(duo.face_boxes) == 2
    with pytest.raises(LookupError, match="no character 'nobody'; known characters: ada"):
        Casting.of(CastRequest(character="nobody"), library)


def test_start_conversation_starts_the_avatar_then_the_session(micro_engine, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # the offline voice
    named = []

    async def name_speaker(room: rtc.Room, name: str) -> None:
        named.append(name)

    monkeypatch.setattr(conversation_module, "name_speaker", name_speaker)

    async def run() -> None:
        room = rtc.Room()  # not connected: the runner waits to publish, nothing leaves
        conversation = await start_conversation(
            room=room, engine=micro_engine, request=CastRequest(scene="duo")
        )
        try:
            assert conversation.cast.names == ["Ada", "Bo"] and not conversation.cast.online
            assert conversation.runner is not None
            # the session's audio ends in the avatar's queue (RoomIO may wrap it for captions)
            sink = conversation.session.output.audio
            while sink is not None and not isinstance(sink, QueueAudioOutput):
                sink = sink.next_in_chain
            assert sink is conversation.audio
            assert conversation.session.current_agent is conversation.cast.agents[0]
            assert conversation.cast.active_index == 0 and conversation.generator.speaker == 0
            # the room is told who has the floor (and again at each hand-over: on_active)
            await wait_for(lambda: named == ["Ada"])
        finally:
            await conversation.aclose()

    asyncio.run(run())
