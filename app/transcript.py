"""A call's live transcript: what the caller said as the session heard it, and what the
character said as it played, in order; a reply cut short by the caller keeps its unsaid rest.

The character's words are paced with its audio by livekit's `TranscriptSynchronizer` (what
a LiveKit room's RoomIO does before it publishes `lk.transcription`), so a line grows as the
avatar speaks and stops where a barge-in stopped the audio. A tap before the synchronizer
keeps each reply's whole text, so the part never played can be shown as cut.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

from livekit.agents import AgentSession
from livekit.agents.llm import ChatMessage
from livekit.agents.voice.events import ConversationItemAddedEvent, UserInputTranscribedEvent
from livekit.agents.voice.io import AudioOutput, TextOutput
from livekit.agents.voice.transcription import TranscriptSynchronizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TranscriptLine:
    """One utterance of the caller or one reply of a character, as far as it has got."""

    id: str  # a later line with the same id replaces this one
    role: Literal["user", "character"]
    text: str  # heard (user) or played (character) so far
    character: str | None = None  # who speaks it (character lines)
    final: bool = False  # the utterance or reply is over
    cut: str = ""  # the rest of an interrupted reply, never played

    def message(self) -> dict:
        """The line as the page takes it: {"transcript": {...}}."""
        return {"transcript": asdict(self)}


LineSink = Callable[[TranscriptLine], None]


class Transcript:
    """Follows one AgentSession; `on_line` gets every new or grown line, in order.

    Wire it before `session.start()`: `audio, text = transcript.outputs(audio)`, then set them
    as the session's audio and transcription outputs."""

    def __init__(
        self, *, session: AgentSession, speaker: Callable[[], str], on_line: LineSink
    ) -> None:
        """Args:
        speaker: the name of the character whose reply starts playing now.
        """
        self._session, self._speaker, self._on_line = session, speaker, on_line
        self._ids = itertools.count()
        self._user_id: str | None = None  # the caller's utterance being transcribed
        self._reply: TranscriptLine | None = None  # the reply playing
        self._written: deque[str] = deque()  # each reply's whole text, in order
        self._synchronizer: TranscriptSynchronizer | None = None
        session.on("user_input_transcribed", self._on_user)
        session.on("conversation_item_added", self._on_item)

    def outputs(self, audio: AudioOutput) -> tuple[AudioOutput, TextOutput]:
        """The session's audio output (in front of `audio`) and transcription output."""
        played = _Played(self)
        self._synchronizer = TranscriptSynchronizer(
            next_in_chain_audio=audio, next_in_chain_text=played
        )
        return self._synchronizer.audio_output, _Written(self, self._synchronizer.text_output)

    async def aclose(self) -> None:
        self._session.off("user_input_transcribed", self._on_user)
        self._session.off("conversation_item_added", self._on_item)
        if self._synchronizer is not None:
            await self._synchronizer.aclose()

    def _next_id(self) -> str:
        return f"t{next(self._ids)}"

    def _on_user(self, event: UserInputTranscribedEvent) -> None:
        if not event.transcript.strip():
            return
        if self._user_id is None:
            self._user_id = self._next_id()
        line = TranscriptLine(self._user_id, "user", event.transcript.strip(), final=event.is_final)
        if event.is_final:
            self._user_id = None
        self._on_line(line)

    def _wrote(self, delta: str, *, new_reply: bool) -> None:
        """The reply's text as the model writes it (ahead of its audio)."""
        if new_reply:
            self._written.append("")
        self._written[-1] += delta

    def _played(self, delta: str) -> None:
        """Words of the reply as its audio plays them."""
        if self._reply is None:
            self._reply = TranscriptLine(self._next_id(), "character", "", self._speaker())
            while len(self._written) > 1:  # replies written before this one never played
                self._written.popleft()
        self._reply = TranscriptLine(
            self._reply.id, "character", self._reply.text + delta, self._reply.character
        )
        self._on_line(self._reply)

    def _on_item(self, event: ConversationItemAddedEvent) -> None:
        """A reply is over (played out, or cut): its line is final."""
        item = event.item
        if not isinstance(item, ChatMessage) or item.role != "assistant":
            return
        written = self._written.popleft() if self._written else ""
        if self._reply is None:
            return  # nothing of it played
        played = (item.text_content or self._reply.text).strip()
        cut = ""
        if item.interrupted and written.startswith(played):
            cut = written[len(played) :].strip()
        reply, self._reply = self._reply, None
        self._on_line(TranscriptLine(reply.id, "character", played, reply.character, True, cut))


class _Written(TextOutput):
    """The session's transcription output: keeps each reply's whole text, then passes it on
    to the synchronizer."""

    def __init__(self, transcript: Transcript, synced: TextOutput) -> None:
        super().__init__(label="TranscriptWritten", next_in_chain=synced)
        self._transcript, self._synced = transcript, synced
        self._open = False

    async def capture_text(self, text: str) -> None:
        self._transcript._wrote(text, new_reply=not self._open)
        self._open = True
        await self._synced.capture_text(text)

    def flush(self) -> None:
        self._open = False
        self._synced.flush()


class _Played(TextOutput):
    """The synchronizer's output: the reply's words as they play."""

    def __init__(self, transcript: Transcript) -> None:
        super().__init__(label="TranscriptPlayed", next_in_chain=None)
        self._transcript = transcript

    async def capture_text(self, text: str) -> None:
        self._transcript._played(text)

    def flush(self) -> None:
        pass  # the reply's end comes with its chat item, which also says if it was cut
