"""One browser call: an aiortc peer connection around one conversation.

The answer is made when the offer arrives (the conversation prepared, its tracks added); the
conversation starts once the connection is up, so the greeting is not spoken to nobody. The
call ends, and takes everything with it, when the peer closes, the state channel closes, the
connection fails, or it never connects.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)

from app.avatar.frames import AvatarFrame
from app.conversation import AUDIO_RATE, Conversation, start_local
from app.local_call.microphone import MicrophoneInput
from app.local_call.offer import Offer, OfferError
from app.local_call.tracks import AvatarTracks

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 20.0  # an answered call that does not connect by then is given up
STATE_CHANNEL = "state"  # negotiated data channel id 0, created by both peers
STATE_CHANNEL_ID = 0


class LocalCall:
    """A peer connection carrying the microphone in, the avatar's audio and video out, and the
    characters' state (JSON on the state channel: {"state": "listening"} or {"state":
    "speaking", "character": NAME})."""

    def __init__(
        self,
        *,
        conversation: Conversation,
        names: tuple[str, ...],
        ice_servers: tuple[str, ...] = (),
        on_closed: Callable[[LocalCall], None] | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        """Args:
        names: the characters' names by speaker index.
        ice_servers: STUN/TURN URLs; none by default (a browser on this machine or network
            reaches the host candidates, and nothing is asked of the internet).
        on_closed: called once when the call has released everything.
        """
        self.conversation, self.names = conversation, names
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(url) for url in ice_servers])
        )
        self.tracks = AvatarTracks(fps=conversation.generator.fps)
        self.state: dict[str, Any] = {"state": "listening"}
        self._on_closed, self._connect_timeout = on_closed, connect_timeout_s
        self._microphone: MediaStreamTrack | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closing: asyncio.Task[None] | None = None

    @property
    def closing(self) -> asyncio.Task[None] | None:
        """The teardown under way, if any (awaitable)."""
        return self._closing

    async def answer(self, offer: Offer) -> RTCSessionDescription:
        """Take the offer and make the answer; OfferError when aiortc refuses the offer."""
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        try:
            await self.pc.setRemoteDescription(offer.description)
        except (ValueError, AssertionError, KeyError, TypeError) as err:
            raise OfferError(f"the SDP offer was refused: {err}") from None
        if self._microphone is None:
            raise OfferError("the SDP offer carries no audio track: the call needs the microphone")
        self.pc.addTrack(self.tracks.audio)
        self.pc.addTrack(self.tracks.video)
        if offer.data_channel:
            self._channel = self.pc.createDataChannel(
                STATE_CHANNEL, negotiated=True, id=STATE_CHANNEL_ID
            )
            self._channel.on("open", self._send_state)
            self._channel.on("close", lambda: self.close_soon("state channel closed"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._spawn(self._give_up_unless_connected(), name="local-call-connect-timeout")
        return self.pc.localDescription

    def close_soon(self, reason: str) -> asyncio.Task[None]:
        """Start the teardown (once); returns it."""
        if self._closing is None:
            logger.info("call ending", extra={"reason": reason})
            self._closing = asyncio.ensure_future(self._close())
        return self._closing

    async def aclose(self) -> None:
        await asyncio.shield(self.close_soon("closed by the server"))

    # ---- events --------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._microphone is None:
            self._microphone = track

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self._started:
            self._started = True
            self._spawn(self._start(), name="local-call-start")
        elif state in ("failed", "closed"):
            self.close_soon(f"connection {state}")

    async def _start(self) -> None:
        assert self._microphone is not None
        user_audio = MicrophoneInput(self._microphone, sample_rate=AUDIO_RATE)
        try:
            await start_local(self.conversation, user_audio=user_audio, sink=self._play)
        except Exception:
            logger.exception("call could not start")
            self.close_soon("start failed")
            return
        logger.info("call started", extra={"characters": list(self.names)})

    async def _give_up_unless_connected(self) -> None:
        await asyncio.sleep(self._connect_timeout)
        if not self._started:
            self.close_soon(f"not connected within {self._connect_timeout:.0f} s")

    def _play(self, frame: AvatarFrame) -> None:
        """AvatarPlayout's sink: the frame to the tracks; the state as the frames show it."""
        self.tracks.push(frame)
        if frame.in_segment:
            speaker = None if frame.speaker is None else self.names[frame.speaker]
            state = {"state": "speaking", "character": speaker}
        else:
            state = {"state": "listening"}
        if state != self.state:
            self.state = state
            self._send_state()

    def _send_state(self) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(self.state))

    # ---- teardown ------------------------------------------------------------------------

    def _spawn(self, coro: Any, *, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self) -> None:
        """The network first (the browser sees the end at once), then the conversation (which
        a cancelled start_local may have closed already: closing twice is harmless)."""
        try:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.tracks.stop()
            try:
                await self.pc.close()
            finally:
                await self.conversation.aclose()
        finally:
            if self._on_closed is not None:
                self._on_closed(self)
