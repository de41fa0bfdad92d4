"""The avatar as its own participant: what an agent's AvatarSession (app/livekit_avatar.py)
asks of an avatar worker (`avatar worker --role avatar`), through LiveKit's explicit dispatch.

The agent mints the avatar's token: its own identity, one room, a short time to join, and
`lk.publish_on_behalf` naming the agent, so the room (and the agent's RoomIO) takes the
avatar's tracks as the agent's own. The token, the server's URL, both identities and the cast
travel as the job's metadata. Light to import: no livekit-agents, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from livekit import api

from app.casting import CastRequest, metadata_object

AVATAR_AGENT_NAME_VARIABLE = "LIVEKIT_AVATAR_AGENT_NAME"
DEFAULT_AVATAR_AGENT_NAME = "avatar-participant"  # what `avatar worker --role avatar` registers
PUBLISH_ON_BEHALF = "lk.publish_on_behalf"  # livekit-agents' ATTRIBUTE_PUBLISH_ON_BEHALF
AVATAR_TOKEN_TTL_S = 300  # to join; LiveKit refreshes a connected participant's token itself
JOB_KEYS = ("agent", "avatar", "url", "token")
EXPECTED = (
    'expected {"agent": "<identity>", "avatar": "<identity>", "url": "wss://...", '
    '"token": "<jwt>"} with "character" or "scene"'
)


def avatar_agent_name_from(env: Mapping[str, str]) -> str:
    """The agent name avatar workers register under and AvatarSession dispatches:
    LIVEKIT_AVATAR_AGENT_NAME, else "avatar-participant" (never the conversation workers'
    name, so neither kind is sent the other's jobs)."""
    return env.get(AVATAR_AGENT_NAME_VARIABLE) or DEFAULT_AVATAR_AGENT_NAME


@dataclass(frozen=True)
class AvatarJob:
    """One avatar participant's job: whom to show, whose audio to take, how to join."""

    request: CastRequest
    agent_identity: str  # who sends the audio; the avatar publishes on its behalf
    avatar_identity: str  # the avatar's own, in its token
    url: str  # the LiveKit server
    token: str  # for avatar_identity, minted by the agent (avatar_token)

    def __repr__(self) -> str:  # never the token in a log line
        return (
            f"AvatarJob(request={self.request!r}, agent_identity={self.agent_identity!r}, "
            f"avatar_identity={self.avatar_identity!r}, url={self.url!r})"
        )

    def to_metadata(self) -> str:
        fields = {"agent": self.agent_identity, "avatar": self.avatar_identity}
        fields |= {"url": self.url, "token": self.token}
        return json.dumps(self.request.to_fields() | fields)

    @classmethod
    def from_metadata(cls, metadata: str) -> AvatarJob:
        """Raises: ValueError naming what is missing or wrong (a conversation's metadata
        sent to an avatar worker, for one)."""
        data = metadata_object(metadata, EXPECTED) if metadata.strip() else {}
        values = {}
        for key in JOB_KEYS:
            value = data.pop(key, None)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"an avatar job's metadata needs {key!r}; {EXPECTED}")
            values[key] = value
        return cls(
            request=CastRequest.from_fields(data, EXPECTED),
            agent_identity=values["agent"],
            avatar_identity=values["avatar"],
            url=values["url"],
            token=values["token"],
        )


def avatar_token(
    *,
    api_key: str,
    api_secret: str,
    room: str,
    identity: str,
    agent_identity: str,
    ttl_s: int = AVATAR_TOKEN_TTL_S,
) -> str:
    """The avatar participant's token: an agent's, for one room, publishing for the agent."""
    return (
        api.AccessToken(api_key, api_secret)
        .with_kind("agent")
        .with_identity(identity)
        .with_name(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .with_attributes({PUBLISH_ON_BEHALF: agent_identity})
        .with_ttl(timedelta(seconds=ttl_s))
        .to_jwt()
    )
