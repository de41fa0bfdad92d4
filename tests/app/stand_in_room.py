"""Rooms without a LiveKit server: participants joined in one process, with what livekit-agents'
avatar classes use of a room (participants and their tracks, RPCs, byte streams, events).

Every RPC performed is logged on the server, so tests can count lk.playback_started,
lk.playback_finished and lk.clear_buffer."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc

_ids = itertools.count()


@dataclass
class Rpc:
    caller: str
    destination: str
    method: str
    payload: str
    at: float  # time.monotonic() when performed


@dataclass
class StandInServer:
    rooms: dict[str, StandInRoom] = field(default_factory=dict)  # by identity
    rpcs: list[Rpc] = field(default_factory=list)

    def calls(self, method: str) -> list[Rpc]:
        return [rpc for rpc in self.rpcs if rpc.method == method]


@dataclass
class StandInPublication:
    kind: int
    name: str
    sid: str = field(default_factory=lambda: f"TR_{next(_ids)}")
    subscribed: bool = True
    track: Any = None

    async def wait_for_subscription(self) -> None:
        return None


@dataclass
class RemoteView:
    """Another participant as a room sees it."""

    identity: str
    kind: int
    attributes: dict[str, str]
    sid: str = field(default_factory=lambda: f"PA_{next(_ids)}")
    state: int = rtc.ParticipantState.PARTICIPANT_STATE_ACTIVE
    track_publications: dict[str, StandInPublication] = field(default_factory=dict)


class StandInReader:
    def __init__(self, info: rtc.ByteStreamInfo) -> None:
        self.info = info
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()

    def __aiter__(self) -> StandInReader:
        return self

    async def __anext__(self) -> bytes:
        data = await self._queue.get()
        if data is None:
            raise StopAsyncIteration
        return data


class StandInWriter:
    def __init__(self, readers: list[StandInReader]) -> None:
        self._readers = readers

    async def write(self, data: bytes) -> None:
        for reader in self._readers:
            reader._queue.put_nowait(bytes(data))

    async def aclose(self, **_: Any) -> None:
        for reader in self._readers:
            reader._queue.put_nowait(None)


class StandInParticipant:
    """A room's local participant."""

    def __init__(self, room: StandInRoom, identity: str, kind: int, attributes: dict) -> None:
        self._room, self.identity, self.kind = room, identity, kind
        self.attributes = dict(attributes)
        self.sid = f"PA_{next(_ids)}"
        self._rpc_handlers: dict[str, Any] = {}
        self.track_publications: dict[str, StandInPublication] = {}

    def register_rpc_method(self, method: str, handler: Any) -> None:
        self._rpc_handlers[method] = handler

    async def perform_rpc(
        self, *, destination_identity: str, method: str, payload: str, **_: Any
    ) -> str:
        server = self._room.server
        server.rpcs.append(
            Rpc(self.identity, destination_identity, method, payload, time.monotonic())
        )
        target = server.rooms.get(destination_identity)
        handler = None if target is None else target.local_participant._rpc_handlers.get(method)
        if handler is None:
            raise rtc.RpcError(rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD, f"no {method}")
        data = rtc.RpcInvocationData(f"RQ_{next(_ids)}", self.identity, payload, 10.0, method)
        result = handler(data)
        return str(await result if inspect.isawaitable(result) else result)

    async def stream_bytes(
        self,
        *,
        name: str,
        topic: str = "",
        destination_identities: list[str] | None = None,
        attributes: dict[str, str] | None = None,
        **_: Any,
    ) -> StandInWriter:
        info = rtc.ByteStreamInfo(
            stream_id=f"ST_{next(_ids)}",
            mime_type="application/octet-stream",
            topic=topic,
            timestamp=int(time.time() * 1000),
            size=None,
            attributes=dict(attributes or {}),
            name=name,
        )
        readers = []
        for room in self._room.server.rooms.values():
            if room is self._room or (
                destination_identities and room.identity not in destination_identities
            ):
                continue
            handler = room.byte_stream_handlers.get(topic)
            if handler is not None:
                reader = StandInReader(info)
                readers.append(reader)
                handler(reader, self.identity)
        return StandInWriter(readers)

    async def publish_track(self, track: Any, options: Any = None) -> StandInPublication:
        publication = StandInPublication(kind=track.kind, name=track.name, track=track)
        self.track_publications[publication.sid] = publication
        for room in self._room.others():
            view = room.remote_participants[self.sid]
            view.track_publications[publication.sid] = publication
            room.emit("track_published", publication, view)
        return publication

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)


class StandInRoom(rtc.EventEmitter[str]):
    def __init__(
        self,
        server: StandInServer,
        identity: str,
        *,
        name: str = "room",
        kind: int = rtc.ParticipantKind.PARTICIPANT_KIND_STANDARD,
        attributes: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.server, self.identity, self.name = server, identity, name
        self.local_participant = StandInParticipant(self, identity, kind, attributes or {})
        self.remote_participants: dict[str, RemoteView] = {}
        self.byte_stream_handlers: dict[str, Any] = {}
        self._connected = False

    def isconnected(self) -> bool:
        return self._connected

    def others(self) -> list[StandInRoom]:
        return [room for room in self.server.rooms.values() if room is not self]

    def register_byte_stream_handler(self, topic: str, handler: Any) -> None:
        self.byte_stream_handlers[topic] = handler

    def unregister_byte_stream_handler(self, topic: str) -> None:
        self.byte_stream_handlers.pop(topic, None)

    async def connect(self, url: str, token: str, options: Any = None) -> None:
        self.joined_with = (url, token)
        self.join()

    def join(self) -> None:
        """Connect: see who is here, and be seen (participant_active) by them."""
        me = self.local_participant
        for room in self.others():
            other = room.local_participant
            self.remote_participants[other.sid] = RemoteView(
                other.identity, other.kind, other.attributes, other.sid,
                track_publications=dict(other.track_publications),
            )  # fmt: skip
        self.server.rooms[self.identity] = self
        self._connected = True
        self.emit("connection_state_changed", rtc.ConnectionState.CONN_CONNECTED)
        for room in self.others():
            view = RemoteView(me.identity, me.kind, me.attributes, me.sid)
            room.remote_participants[me.sid] = view
            room.emit("participant_connected", view)
            room.emit("participant_active", view)

    def leave(self) -> None:
        self.server.rooms.pop(self.identity, None)
        self._connected = False
        for room in self.server.rooms.values():
            view = room.remote_participants.pop(self.local_participant.sid, None)
            if view is not None:
                room.emit("participant_disconnected", view)
        self.emit("connection_state_changed", rtc.ConnectionState.CONN_DISCONNECTED)
        self.emit("disconnected", "left")
