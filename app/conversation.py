"""One conversation: the cast's agents and the avatar around one AgentSession.

The assembly is the same in every transport: the avatar's `QueueAudioOutput` is the session's
audio output and is drained by the avatar, which is started before `session.start()`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from livekit import rtc

logger = logging.getLogger(__name__)

METADATA_KEYS = ("character", "scene")


@dataclass(frozen=True)
class CastRequest:
    """What a job asks for: one character or one scene, by id; neither: the default character."""

    character: str | None = None
    scene: str | None = None

    def __post_init__(self) -> None:
        if self.character is not None and self.scene is not None:
            raise ValueError("ask for a character or a scene, not both")

    @classmethod
    def from_metadata(cls, metadata: str) -> CastRequest:
        """From a job's metadata: JSON {"character": id} or {"scene": id}, or empty."""
        if not metadata.strip():
            return cls()
        expected = 'expected {"character": "<id>"} or {"scene": "<id>"}'
        try:
            data = json.loads(metadata)
        except json.JSONDecodeError as err:
            raise ValueError(f"job metadata is not JSON ({err}); {expected}") from None
        if not isinstance(data, dict):
            raise ValueError(f"job metadata is a {type(data).__name__}; {expected}")
        unknown = sorted(set(data) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"unknown job metadata keys {unknown}; {expected}")
        for key, value in data.items():
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"job metadata {key!r} must be a non-empty id string; {expected}")
        return cls(**data)


class Conversation:
    """A running conversation; `aclose()` ends the session, then the avatar."""

    def __init__(self, *, session: Any, avatar: Any) -> None:
        self.session = session
        self.avatar = avatar

    async def aclose(self) -> None:
        await self.session.aclose()
        await self.avatar.aclose()


def load_engine() -> Any:
    """The avatar engine a job process builds once (prewarm) and reuses for its sessions."""
    raise NotImplementedError("the avatar engine (app/avatar) has not landed yet")


async def start_conversation(*, room: rtc.Room, engine: Any, request: CastRequest) -> Conversation:
    """Cast the request's characters, start the avatar publishing into `room`, then the session."""
    raise NotImplementedError(
        "the cast (llm_bridge) and the avatar (app/avatar) have not landed yet"
    )
