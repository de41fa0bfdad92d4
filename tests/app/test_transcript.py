"""The call's transcript, played out in real time: through the offline voice the greeting and
the reply grow as they play and end final, the caller's utterance is the session's transcript
of it, and a reply the caller talks over ends where its audio stopped, the rest marked cut;
through OpenAI Realtime (a loopback server) the caller's line is the model's input
transcription, and a reply cut by the server's VAD ends the same way."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator

import numpy as np

from app.casting import Casting, CastRequest
from app.conversation import prepare_conversation, start_local
from app.transcript import TranscriptLine
from llm_bridge.offline.stt import utterance_text
from llm_bridge.offline.tts import SAMPLE_RATE as ESPEAK_RATE
from tests.app.avatar.conftest import run
from tests.app.realtime_server import SAMPLE_RATE, RealtimeServer
from tests.app.session_io import PlayedFrames, UserAudio, voiced, wait_for
from tests.app.test_offline_conversation import LIBRARY, SILENCE, TURN_S
from tests.app.test_realtime_loopback import MIC_RATE, PERSONA, REPLY_S
from tests.llm_bridge.conftest import espeak

ADA = LIBRARY.character("ada").persona
FACE = np.full((96, 96, 3), 128, dtype=np.uint8)


class Lines:
    """The transcript as the page keeps it: the latest version of each line, in order."""

    def __init__(self) -> None:
        self.sent: list[TranscriptLine] = []

    def __call__(self, line: TranscriptLine) -> None:
        self.sent.append(line)

    def latest(self) -> list[TranscriptLine]:
        by_id: dict[str, TranscriptLine] = {}
        for line in self.sent:
            by_id[line.id] = line
        return list(by_id.values())

    def final(self) -> list[TranscriptLine]:
        return [line for line in self.latest() if line.final]


@contextlib.asynccontextmanager
async def transcribed_call(engine, lines: Lines) -> AsyncIterator[UserAudio]:
    casting = Casting.of(CastRequest(character="ada"), LIBRARY)
    conv = await prepare_conversation(engine=engine, casting=casting)
    user = UserAudio(sample_rate=ESPEAK_RATE)
    await start_local(
        conv, user_audio=user, sink=PlayedFrames(), transcript=lines, names=(ADA.name,)
    )
    try:
        yield user
    finally:
        await conv.aclose()


def test_a_reply_talked_over_is_cut_where_its_audio_stopped(micro_engine):
    lines = Lines()
    words = espeak("Hello Ada, how are you today?")
    over = espeak("Wait, wait, stop, I have something else to ask you about now.")

    def reply_playing() -> bool:
        return len(lines.final()) == 2 and lines.latest()[-1].role == "character"

    async def body() -> None:
        async with transcribed_call(micro_engine, lines) as user:
            await wait_for(lambda: len(lines.final()) == 1, timeout=TURN_S)  # the greeting
            user.say(np.concatenate([SILENCE, words, SILENCE]))
            await wait_for(reply_playing, timeout=TURN_S)  # its first words play
            user.say(over)
            await wait_for(lambda: len(lines.final()) >= 3, timeout=TURN_S)

    run(body())
    greeting, heard, reply = lines.latest()[:3]  # in the order they began
    assert (greeting.character, greeting.text, greeting.cut) == ("Ada", ADA.greeting, "")
    # the greeting grew word by word as it played, each version a prefix of the next
    growing = [line.text for line in lines.sent if line.id == greeting.id]
    assert len(growing) > 3 and all(b.startswith(a) for a, b in itertools.pairwise(growing))
    assert heard.role == "user" and heard.text == utterance_text(_seconds(heard.text))
    assert heard.final and reply.final
    assert (reply.role, reply.character) == ("character", "Ada") and reply.text and reply.cut
    assert f"{reply.text} {reply.cut}" == ADA.lines[0]


def _seconds(text: str) -> float:
    return float(text.split("for ")[1].split(" s")[0])


def test_with_openai_realtime_the_input_transcription_and_a_cut_reply(micro_engine):
    """The Realtime model's input transcription is the caller's line; its reply, talked over
    halfway, ends where its audio stopped, the rest of its transcript cut."""
    server = RealtimeServer(
        reply_audio=voiced(REPLY_S, rate=SAMPLE_RATE),
        reply_text="one two three four five six seven eight nine ten",
        heard="Hello Tess, how are you?",
        pace=1.0,  # the reply still streams when the caller cuts in
    )
    lines = Lines()

    async def body() -> None:
        await server.start()
        casting = Casting(personas=(PERSONA,), picture=FACE, face_boxes=((0.2, 0.1, 0.8, 0.9),))
        conv = await prepare_conversation(
            engine=micro_engine, casting=casting, api_key="test", base_url=server.base_url
        )
        user = UserAudio(sample_rate=MIC_RATE)
        await start_local(
            conv, user_audio=user, sink=PlayedFrames(), transcript=lines, names=(PERSONA.name,)
        )
        try:
            user.say(voiced(1.0, rate=MIC_RATE))
            await wait_for(lambda: len(lines.latest()) == 2 and lines.latest()[1].text, timeout=20)
            await asyncio.sleep(1.2)  # some of the reply plays
            await server.speech_started()  # the caller talks over the character
            await wait_for(lambda: len(lines.final()) == 2, timeout=10)
        finally:
            await conv.aclose()
            await server.aclose()

    run(body())
    heard, reply = lines.final()
    assert (heard.role, heard.text) == ("user", "Hello Tess, how are you?")
    assert (reply.role, reply.character) == ("character", "Tess")
    assert reply.text and reply.cut  # cut part-way
    assert f"{reply.text} {reply.cut}" == server.reply_text
