"""What a call asks for and who answers it: the request a LiveKit token carries to a worker
(by agent name) or a local call makes, and the cast it resolves to in the library. Light to
import: web/ reads it without loading livekit-agents."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from app.characters import Box, CharacterLibrary
from llm_bridge.persona import Persona

DEFAULT_CHARACTER = "ada"  # who answers a job that names no one
METADATA_KEYS = ("character", "scene")
AGENT_NAME_VARIABLE = "LIVEKIT_AGENT_NAME"  # livekit's own variable for it
DEFAULT_AGENT_NAME = "avatar"
# The character who has the floor: an attribute of the agent's participant in a room (the call
# page names them) and of each audio stream a remote agent sends its avatar participant.
SPEAKER_ATTRIBUTE = "avatar.speaker"


def agent_name_from(env: Mapping[str, str]) -> str:
    """The agent name workers register under and tokens dispatch: LIVEKIT_AGENT_NAME, else
    "avatar"; one variable for both sides, so they cannot disagree by default."""
    return env.get(AGENT_NAME_VARIABLE) or DEFAULT_AGENT_NAME


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
        return cls.from_fields(metadata_object(metadata, CAST_EXPECTED), CAST_EXPECTED)

    @classmethod
    def from_fields(cls, data: Mapping[str, object], expected: str) -> CastRequest:
        """From a job metadata's fields; `expected` ends each error (what a job may hold)."""
        unknown = sorted(set(data) - set(METADATA_KEYS))
        if unknown:
            raise ValueError(f"unknown job metadata keys {unknown}; {expected}")
        fields = {key: metadata_id(data, key, expected) for key in data}
        return cls(**fields)

    def to_fields(self) -> dict[str, str]:
        return {k: v for k, v in (("character", self.character), ("scene", self.scene)) if v}


CAST_EXPECTED = 'expected {"character": "<id>"} or {"scene": "<id>"}'


def metadata_object(metadata: str, expected: str) -> dict[str, object]:
    """A job's metadata as a JSON object, or a ValueError that ends with `expected`."""
    try:
        data = json.loads(metadata)
    except json.JSONDecodeError as err:
        raise ValueError(f"job metadata is not JSON ({err}); {expected}") from None
    if not isinstance(data, dict):
        raise ValueError(f"job metadata is a {type(data).__name__}; {expected}")
    return data


def metadata_id(data: Mapping[str, object], key: str, expected: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"job metadata {key!r} must be a non-empty id string; {expected}")
    return value


@dataclass(frozen=True)
class Casting:
    """Who takes part and the one picture they share; speaker index = position in personas."""

    personas: tuple[Persona, ...]
    picture: np.ndarray  # [H, W, 3] uint8 RGB
    face_boxes: tuple[Box, ...]  # per persona, fractions of the picture
    ids: tuple[str, ...] = ()  # per persona, the library's character ids

    @classmethod
    def of(cls, request: CastRequest, library: CharacterLibrary) -> Casting:
        if request.scene is not None:
            scene = library.scene(request.scene)
            personas = tuple(c.persona for c in scene.characters)
            ids = tuple(c.id for c in scene.characters)
            return cls(personas, scene.picture, scene.face_boxes, ids)
        character = library.character(request.character or DEFAULT_CHARACTER)
        return cls(
            (character.persona,), character.picture(), (character.face_box,), (character.id,)
        )
