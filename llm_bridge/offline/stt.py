"""A speech "recognizer" for the offline voice: there is no offline speech recognition here, so
each utterance the VAD cut out becomes a turn whose text says only how long the user spoke.

It is a non-streaming livekit STT; the session wraps it in stt.StreamAdapter with the agent's
VAD, so one END_OF_SPEECH gives one final transcript and one user turn.
"""

from __future__ import annotations

import logging
import uuid

from livekit.agents import APIConnectOptions, stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given

logger = logging.getLogger(__name__)

LANGUAGE = "en"


def utterance_text(seconds: float) -> str:
    """What the transcript says for an utterance of this length."""
    return f"(the user spoke for {seconds:.1f} s)"


class UtteranceSTT(stt.STT):
    """Turns each detected user utterance into a transcript naming its duration."""

    def __init__(self) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))

    @property
    def model(self) -> str:
        return "utterance-length"

    @property
    def provider(self) -> str:
        return "offline"

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        frames = buffer if isinstance(buffer, list) else [buffer]
        seconds = sum(frame.duration for frame in frames)
        text = utterance_text(seconds)
        logger.info("user utterance", extra={"seconds": round(seconds, 2)})
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[
                stt.SpeechData(
                    language=LanguageCode(language if is_given(language) else LANGUAGE),
                    text=text,
                    end_time=seconds,
                    confidence=1.0,
                )
            ],
        )
