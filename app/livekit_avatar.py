"""Our avatar for any LiveKit agent, as the livekit-agents avatar plugins do it:

    avatar = AvatarSession(character="ada")          # or scene="duo"
    await avatar.start(session, room=ctx.room)      # before session.start()

`start` mints the avatar participant's token (app/avatar_job.py), dispatches an avatar worker
(`avatar worker --role avatar`) into the room by agent name with that job as its metadata, and
replaces the session's audio output: the agent's replies go to the avatar as data streams (one
per segment, each naming the character who speaks it), and the avatar publishes video and
audio on the agent's behalf. livekit-agents' base class reports the avatar's join and playback
latencies (AvatarMetrics) and removes the avatar participant when the job shuts down.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from livekit import api, rtc
from livekit.agents import AgentSession, get_job_context
from livekit.agents.voice import avatar

from app.avatar_job import AvatarJob, avatar_agent_name_from, avatar_token
from app.casting import SPEAKER_ATTRIBUTE, CastRequest

logger = logging.getLogger(__name__)

PROVIDER = "talking-avatar"  # AvatarMetrics' model_provider
SETTINGS = ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET")


def current_agent_id(session: AgentSession) -> str:
    """The speaker a session's audio is named by: its current agent's id (our characters'
    agents take their persona's name; give yours `Agent(id="bo")`), "" before it starts."""
    try:
        return session.current_agent.id
    except RuntimeError:
        return ""


class AvatarSession(avatar.AvatarSession):
    """Our avatar as its own participant in the agent's room: one character, or a scene whose
    characters take turns as the agent's session hands over between agents."""

    def __init__(
        self,
        *,
        character: str | None = None,
        scene: str | None = None,
        avatar_identity: str | None = None,
        agent_name: str | None = None,
        speaker: Callable[[AgentSession], str] = current_agent_id,
    ) -> None:
        """Args:
        character, scene: by id, as the console knows them; neither: the default character.
        avatar_identity: the avatar participant's (default "avatar-" + the agent's identity).
        agent_name: the avatar workers' (default LIVEKIT_AVATAR_AGENT_NAME, else
            "avatar-participant").
        speaker: names the character speaking the session's audio (matched to the scene's
            characters by id or name, ignoring case).
        """
        super().__init__()
        self.request = CastRequest(character=character, scene=scene)
        self._avatar_identity = avatar_identity
        self._agent_name = agent_name or avatar_agent_name_from(os.environ)
        self._speaker = speaker
        self.job: AvatarJob | None = None

    @property
    def avatar_identity(self) -> str:
        if self.job is None:
            raise RuntimeError("the avatar has no identity before start()")
        return self.job.avatar_identity

    @property
    def provider(self) -> str:
        return PROVIDER

    async def start(
        self,
        agent_session: AgentSession,
        room: rtc.Room,
        *,
        livekit_url: str | None = None,
        api_key: str | None = None,
        api_secret: str | None = None,
    ) -> None:
        """Dispatch the avatar and send it the session's audio; call before session.start().

        Raises:
            ValueError: the server's URL, key or secret is neither given nor in LIVEKIT_*.
        """
        given = zip(SETTINGS, (livekit_url, api_key, api_secret), strict=True)
        settings = {name: value or os.environ.get(name, "") for name, value in given}
        missing = [name for name, value in settings.items() if not value]
        if missing:
            raise ValueError(
                f"the avatar needs {', '.join(missing)} (or the matching arguments of start()) "
                "to mint its token and dispatch it"
            )
        url, key, secret = settings.values()
        agent_identity = agent_identity_in(room)
        identity = self._avatar_identity or f"avatar-{agent_identity}"
        token = avatar_token(
            api_key=key,
            api_secret=secret,
            room=room.name,
            identity=identity,
            agent_identity=agent_identity,
        )
        self.job = AvatarJob(self.request, agent_identity, identity, url, token)
        await super().start(agent_session, room)
        await self._dispatch(room.name, url, key, secret)
        agent_session.output.audio = NamedAudioOutput(
            room,
            destination_identity=identity,
            speaker=lambda: self._speaker(agent_session),
        )
        logger.info("avatar dispatched", extra={"room": room.name, "avatar": identity})

    async def _dispatch(self, room: str, url: str, key: str, secret: str) -> None:
        assert self.job is not None
        request = api.CreateAgentDispatchRequest(
            agent_name=self._agent_name, room=room, metadata=self.job.to_metadata()
        )
        job_ctx = get_job_context(required=False)
        if job_ctx is not None:
            await job_ctx.api.agent_dispatch.create_dispatch(request)
            return
        async with api.LiveKitAPI(url, key, secret) as lk:
            await lk.agent_dispatch.create_dispatch(request)


def agent_identity_in(room: rtc.Room) -> str:
    """The agent's identity: the connected room's participant's, else its job's."""
    if room.isconnected():
        return room.local_participant.identity
    job_ctx = get_job_context(required=False)
    if job_ctx is None:
        raise RuntimeError("start the avatar in a job, or in a connected room")
    return job_ctx.local_participant_identity


class NamedAudioOutput(avatar.DataStreamAudioOutput):
    """livekit-agents' DataStreamAudioOutput to the avatar, each segment's stream naming the
    character who speaks it (SPEAKER_ATTRIBUTE), so one scene's avatar follows hand-overs.

    It waits for the avatar's video before sending audio, and for the avatar's
    lk.playback_started before counting a reply as playing (the playback latency)."""

    def __init__(self, room: rtc.Room, *, destination_identity: str, speaker: Callable[[], str]):
        super().__init__(
            _NamingRoom(room, speaker),  # type: ignore[arg-type]  # a view of the room
            destination_identity=destination_identity,
            wait_remote_track=rtc.TrackKind.KIND_VIDEO,
            wait_playback_start=True,
        )


class _NamingRoom:
    """The room as DataStreamAudioOutput uses it, but each byte stream the agent opens carries
    the speaker's name among its attributes; everything else is the room itself."""

    def __init__(self, room: rtc.Room, speaker: Callable[[], str]) -> None:
        self._room, self._speaker = room, speaker

    @property
    def local_participant(self) -> _NamingParticipant:  # the room's, once connected
        return _NamingParticipant(self._room.local_participant, self._speaker)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._room, name)


class _NamingParticipant:
    def __init__(self, participant: rtc.LocalParticipant, speaker: Callable[[], str]) -> None:
        self._participant, self._speaker = participant, speaker

    def __getattr__(self, name: str) -> Any:
        return getattr(self._participant, name)

    async def stream_bytes(
        self, *args: Any, attributes: dict[str, str] | None = None, **kwargs: Any
    ) -> rtc.ByteStreamWriter:
        named = {**(attributes or {}), SPEAKER_ATTRIBUTE: self._speaker()}
        return await self._participant.stream_bytes(*args, attributes=named, **kwargs)
