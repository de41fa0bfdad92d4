"""The offline voice through the app's assembly (prepare_conversation without an OpenAI key),
played out by AvatarPlayout in real time: a spoken turn gets a spoken reply on the avatar's
frames, then listening frames; in a two-character scene the floor passing between the
characters (the user naming one, round-robin, a line naming one) switches the engine's speaker
at a chunk boundary, the silent one's speech zeroed."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from livekit import rtc

from app.avatar import AvatarEngine, AvatarFrame, AvatarVideoGenerator
from app.casting import Casting, CastRequest
from app.characters import CharacterLibrary
from app.conversation import AGENT_AUDIO_RATE, Conversation, prepare_conversation, start_local
from llm_bridge.offline.tts import FRAME_MS as TTS_FRAME_MS
from llm_bridge.offline.tts import SAMPLE_RATE as ESPEAK_RATE
from llm_bridge.persona import Persona
from tests.app.avatar.conftest import SpyRuntime, run
from tests.app.session_io import PlayedFrames, UserAudio, assert_av_pairing, wait_for
from tests.conftest import MICRO_STREAM
from tests.llm_bridge.conftest import espeak, speech_bounds

FPS = MICRO_STREAM.fps
CHUNK = MICRO_STREAM.video_frames_per_chunk
LIBRARY = CharacterLibrary()  # the shipped characters: Ada, Bo, and their scene "duo"
SILENCE = np.zeros(ESPEAK_RATE, dtype=np.int16)  # 1 s, either side of the user's words
MAX_RESAMPLING_LSB = 4  # livekit's resampler rounds a little differently with other frame cuts
TURN_S = 20.0  # a generous bound for one turn on a loaded CPU


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def spy_engine(micro_engine) -> AvatarEngine:
    """The conversation tests' engine, its runtime watched."""
    return dataclasses.replace(micro_engine, runtime=SpyRuntime(micro_engine.runtime))


@dataclass(frozen=True)
class FloorTaken:
    """A character took the floor: the cast told the generator it speaks next."""

    character: int
    submitted: int  # chunks the runtime had been given by then
    at: float  # time.monotonic()


@pytest.fixture
def floor(spy_engine, monkeypatch) -> list[FloorTaken]:
    """Each time a character takes the floor, with spy_engine's chunks submitted by then."""
    spy, taken = spy_engine.runtime, []
    set_speaker = AvatarVideoGenerator.set_speaker

    def recording_set_speaker(self: AvatarVideoGenerator, index: int) -> None:
        taken.append(FloorTaken(index, len(spy.speaking), time.monotonic()))
        set_speaker(self, index)

    monkeypatch.setattr(AvatarVideoGenerator, "set_speaker", recording_set_speaker)
    return taken


@dataclass
class Call:
    conversation: Conversation
    user: UserAudio
    frames: PlayedFrames = field(default_factory=PlayedFrames)

    async def segment(self, n: int) -> list[AvatarFrame]:
        """The n-th segment (from 1), once played to its end."""
        await wait_for(lambda: len(self.frames.finished()) >= n, timeout=TURN_S)
        return self.frames.finished()[n - 1]

    async def listening(self) -> None:
        """Until the session has heard the reply played out and waits for the user."""
        session = self.conversation.session
        await wait_for(lambda: session.agent_state == "listening", timeout=TURN_S)

    def replies(self) -> list[str]:
        """What the characters said, each reply played to its end."""
        history = self.conversation.session.history.messages()
        said = [m for m in history if m.role == "assistant"]
        assert not any(m.interrupted for m in said)
        return [m.text_content for m in said]


@contextlib.asynccontextmanager
async def offline_call(engine: AvatarEngine, casting: Casting) -> AsyncIterator[Call]:
    conv = await prepare_conversation(engine=engine, casting=casting)  # no key given or set
    assert not conv.cast.online
    c = Call(conversation=conv, user=UserAudio(sample_rate=ESPEAK_RATE))
    await start_local(conv, user_audio=c.user, sink=c.frames)
    try:
        yield c
    finally:
        await conv.aclose()


def spoken(persona: Persona, text: str) -> np.ndarray:
    """[N] int16 at AGENT_AUDIO_RATE: the text as the session hands it to the avatar (espeak-ng in
    the persona's voice, resampled by livekit)."""
    samples = espeak(
        text, voice=persona.espeak_voice, rate=persona.espeak_rate, pitch=persona.espeak_pitch
    )
    resampler = rtc.AudioResampler(ESPEAK_RATE, AGENT_AUDIO_RATE, num_channels=1)
    frames = resampler.push(rtc.AudioFrame(samples.tobytes(), ESPEAK_RATE, 1, len(samples)))
    frames += resampler.flush()
    return np.concatenate([np.frombuffer(f.data, dtype=np.int16) for f in frames])


def assert_plays(frames: list[AvatarFrame], expected: np.ndarray) -> None:
    """The segment's audio is `expected`, then silence shorter than one of the TTS's frames.
    livekit's resampling depends a little on how its input was cut into frames: a few LSB,
    and where the trailing silence stops."""
    played = segment_audio(frames).astype(np.int32)
    assert len(expected) <= len(played) < len(expected) + AGENT_AUDIO_RATE * TTS_FRAME_MS // 1000
    assert np.abs(played[: len(expected)] - expected).max() <= MAX_RESAMPLING_LSB
    assert np.abs(played[len(expected) :]).max(initial=0) <= MAX_RESAMPLING_LSB


def segment_audio(frames: list[AvatarFrame]) -> np.ndarray:
    return np.concatenate([np.frombuffer(f.audio.data, dtype=np.int16) for f in frames])


def on_chunk_boundary(engine: AvatarEngine, frame: AvatarFrame) -> bool:
    geometry = engine.geometry
    return frame.index == geometry.chunk_start_frame(geometry.chunk_of_frame(frame.index))


def submitted_speakers(spy: SpyRuntime) -> list[int | None]:
    """Who spoke in each chunk submitted. One character at most; the others' speech is zeros
    (their audio tokens become their silence embedding), the speaker's is not."""
    speakers = []
    for chunk, (speaking, features) in enumerate(zip(spy.speaking, spy.features, strict=True)):
        (who,) = speaking[0].nonzero()[:, 0].tolist() or [None]
        for k in range(features.shape[1]):
            assert bool(features[0, k].any()) == (k == who), (chunk, k, who)
        speakers.append(who)
    return speakers


def test_a_spoken_turn_gets_a_spoken_reply_then_listening_frames(micro_engine):
    ada = LIBRARY.character("ada").persona
    words = espeak("Hello Ada, how are you today?")
    start, end = speech_bounds(words)
    alone = Casting.of(CastRequest(character="ada"), LIBRARY)

    async def talk() -> tuple[Call, float, float]:
        async with offline_call(micro_engine, alone) as c:
            await c.segment(1)  # Ada greets first
            await c.listening()
            said_at = time.monotonic()
            c.user.say(np.concatenate([SILENCE, words, SILENCE]))
            await c.segment(2)
            ended_at = time.monotonic()
            await c.listening()
            await wait_for(lambda: len(c.frames.since(ended_at)) >= 2 * CHUNK, timeout=TURN_S)
            return c, said_at, ended_at

    c, said_at, ended_at = run(talk())
    greeting, reply = c.frames.finished()
    history = c.conversation.session.history.messages()
    # one user turn, cut by webrtcvad at the end of the words; the reply is Ada's first line
    (user_turn,) = [m.text_content for m in history if m.role == "user"]
    heard = re.fullmatch(r"\(the user spoke for (\d+\.\d) s\)", user_turn)
    assert heard is not None and abs(float(heard[1]) - (end - start)) <= 0.3, user_turn
    assert c.replies() == [ada.greeting, ada.lines[0]]
    reply_at = next(t for t, f in c.frames.timed if f is reply[0])
    assert reply_at > said_at + 1.0 + end  # not before the user stopped speaking
    # greeting and reply play on the frames, Ada speaking throughout, each from a chunk's
    # first frame; the reply (one sentence: one synthesis) exactly as espeak-ng spoke it
    for segment in (greeting, reply):
        assert all(f.speaker == 0 and f.in_segment for f in segment)
        assert on_chunk_boundary(micro_engine, segment[0])
    assert_plays(reply, spoken(ada, ada.lines[0]))
    # then Ada listens: a chunk after the reply's end, every frame is a generated listening one
    after = c.frames.since(ended_at)[CHUNK:]
    assert len(after) >= CHUNK
    assert all(f.speaker is None and not f.in_segment for f in after)
    assert not segment_audio(after).any()
    assert len({bytes(f.video.data) for f in after}) == len(after)  # moving, never frozen
    assert_av_pairing(c.frames.since(), rate=AGENT_AUDIO_RATE, fps=FPS)


def test_a_hand_over_switches_the_speaker_at_a_chunk_boundary(spy_engine, floor):
    spy, geometry = spy_engine.runtime, spy_engine.geometry
    ada, bo = (LIBRARY.character(name).persona for name in ("ada", "bo"))
    duo = Casting.of(CastRequest(scene="duo"), LIBRARY)

    async def scene() -> Call:
        async with offline_call(spy_engine, duo) as c:
            session = c.conversation.session
            await c.segment(1)  # Ada greets
            await c.listening()
            session.generate_reply(user_input="Bo, what do you think?")  # named: to Bo
            await c.segment(2)  # Bo enters and greets
            await c.listening()
            session.generate_reply(user_input="And the weather?")  # nobody named: the next one
            await c.segment(3)  # Ada again, with her first line
            await c.listening()  # the session has heard her line end before it closes
            assert c.conversation.cast.active_index == 0
            return c

    c = run(scene())
    assert [taken.character for taken in floor] == [0, 1, 0]
    assert c.replies() == [ada.greeting, bo.greeting, ada.lines[0]]
    segments = c.frames.finished()
    assert [{f.speaker for f in s} for s in segments] == [{0}, {1}, {0}]
    voiced = [(bo, bo.greeting), (ada, ada.lines[0])]
    for segment, (persona, text) in zip(segments[1:], voiced, strict=True):
        assert_plays(segment, spoken(persona, text))  # in each one's own voice

    speakers = submitted_speakers(spy)
    # the engine's speaker changes with the floor: after each hand-over, from the next chunk
    # on, only the character who took the floor speaks
    until = [taken.submitted for taken in floor[1:]] + [len(speakers)]
    for taken, end in zip(floor, until, strict=True):
        spoke = {s for s in speakers[taken.submitted + 1 : end] if s is not None}
        assert spoke == {taken.character}
    # the frames show the chunks' speakers, so the speaker changes 0 -> 1 -> 0 on chunk
    # boundaries, each at the first frame of the next character's segment
    frames = c.frames.since()
    assert all(f.speaker == speakers[geometry.chunk_of_frame(f.index)] for f in frames)
    starts = [
        f
        for f, before in zip(frames, [None, *frames], strict=False)
        if f.speaker is not None and (before is None or before.speaker != f.speaker)
    ]
    assert [(f.index, f.speaker) for f in starts] == [(s[0].index, s[0].speaker) for s in segments]
    assert all(on_chunk_boundary(spy_engine, f) for f in starts)
    assert_av_pairing(frames, rate=AGENT_AUDIO_RATE, fps=FPS)


def test_a_line_naming_the_other_character_hands_over_once_it_is_played(spy_engine, floor):
    ann = Persona(name="Ann", instructions="You are Ann.", lines=("Bob, over to you.",))
    bob = Persona(
        name="Bob", instructions="You are Bob.", lines=("Thanks, Ann.",), espeak_voice="en+m3"
    )
    duo = Casting.of(CastRequest(scene="duo"), LIBRARY)  # its picture, Ann and Bob in it

    async def scene() -> Call:
        async with offline_call(spy_engine, dataclasses.replace(duo, personas=(ann, bob))) as c:
            c.conversation.session.generate_reply(user_input="Ann, hello.")  # to Ann, who has it
            await c.segment(2)  # her line names Bob: he answers
            await c.listening()  # the session has heard his reply end before it closes
            return c

    c = run(scene())
    assert c.replies() == [ann.lines[0], bob.lines[0]]
    assert [taken.character for taken in floor] == [0, 1]
    said, answer = c.frames.finished()
    assert {f.speaker for f in said} == {0} and {f.speaker for f in answer} == {1}
    # Bob takes the floor only once Ann's line has played out: none of it on his face
    said_until = next(t for t, f in c.frames.timed if f is said[-1])
    assert floor[1].at > said_until
    speakers = submitted_speakers(spy_engine.runtime)
    last = spy_engine.geometry.chunk_of_frame(said[-1].index)
    assert set(speakers[: last + 1]) <= {None, 0} and speakers[last] == 0
    assert_av_pairing(c.frames.since(), rate=AGENT_AUDIO_RATE, fps=FPS)
