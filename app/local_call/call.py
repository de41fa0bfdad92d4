"""One browser call: an aiortc peer connection around one conversation.

The answer is made when the offer arrives (the conversation prepared, its tracks added); the
conversation starts once the connection is up, so the greeting is not spoken to nobody. The
call ends, and takes everything with it, when the peer closes, the state channel closes, the
connection (ICE or DTLS) fails, it does not connect within its connect window, the peer sends
nothing for `peer_timeout_s` (a vanished browser: no goodbye, and aiortc's consent checks
would take about 30 s), nobody has spoken for `idle_s`, or it reaches `max_call_s`. When the
server ends a call the caller is told why on the state channel: {"state": "ended", "reason"}.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import time
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
from aiortc.exceptions import OperationError

from app.avatar.frames import AvatarFrame
from app.conversation import AGENT_AUDIO_RATE, Conversation, start_local
from app.local_call.limits import CallLimits
from app.local_call.microphone import MicrophoneInput
from app.local_call.offer import Offer, OfferError
from app.local_call.tracks import AvatarTracks
from app.transcript import TranscriptLine

logger = logging.getLogger(__name__)

STATE_CHANNEL = "state"  # negotiated data channel id 0, created by both peers
STATE_CHANNEL_ID = 0
GOODBYE_FLUSH_S = 0.2  # how long the last state message gets to leave before the connection


class CallPhase(enum.Enum):
    CONNECTING = "connecting"  # answered, not connected yet
    RUNNING = "running"  # connected: the conversation runs
    CLOSING = "closing"  # the teardown is under way


class LocalCall:
    """A peer connection carrying the microphone in, the avatar's audio and video out, and the
    characters' state and the transcript (JSON on the state channel: {"state": "listening"},
    {"state": "speaking", "character": NAME}, or {"transcript": LINE}, app/transcript.py)."""

    def __init__(
        self,
        *,
        conversation: Conversation,
        names: tuple[str, ...],
        ice_servers: tuple[str, ...] = (),
        limits: CallLimits | None = None,
        on_phase: Callable[[LocalCall], None] | None = None,
        on_closed: Callable[[LocalCall], None] | None = None,
    ) -> None:
        """Args:
        names: the characters' names by speaker index.
        ice_servers: STUN/TURN URLs; none by default (a browser on this machine or network
            reaches the host candidates, and nothing is asked of the internet).
        limits: the connect window, the longest call, the idle and vanished-peer timeouts.
        on_phase: called when the call connects and when its teardown starts.
        on_closed: called once when the call has released everything.
        """
        self.conversation, self.names = conversation, names
        self.pc = RTCPeerConnection(
            RTCConfiguration(iceServers=[RTCIceServer(url) for url in ice_servers])
        )
        self.tracks = AvatarTracks(fps=conversation.generator.fps)
        self.state: dict[str, Any] = {"state": "listening"}
        self.limits = limits or CallLimits()
        self.abandoned = False  # answered, then never connected within the connect window
        self._on_phase, self._on_closed = on_phase, on_closed
        self._microphone: MediaStreamTrack | None = None
        self._user_audio: MicrophoneInput | None = None
        self._channel: RTCDataChannel | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._last_speech = time.monotonic()  # the characters' (the caller's: _user_audio)
        self._closing: asyncio.Task[None] | None = None

    @property
    def closing(self) -> asyncio.Task[None] | None:
        """The teardown under way, if any (awaitable)."""
        return self._closing

    @property
    def phase(self) -> CallPhase:
        if self._closing is not None:
            return CallPhase.CLOSING
        return CallPhase.RUNNING if self._started else CallPhase.CONNECTING

    async def answer(self, offer: Offer) -> RTCSessionDescription:
        """Take the offer and make the answer; OfferError when aiortc refuses the offer."""
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("iceconnectionstatechange", self._on_ice_state)
        try:
            await self.pc.setRemoteDescription(offer.description)
        except (ValueError, AssertionError, KeyError, TypeError, OperationError) as err:
            # aiortc's own words name its internals; the log keeps them, the caller gets ours
            logger.info("offer refused by aiortc", extra={"error": f"{type(err).__name__}: {err}"})
            raise OfferError(
                "the SDP offer was refused: it does not describe a call this server can answer "
                "(send the browser's offer unchanged)"
            ) from None
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
        self._spawn(self._give_up_unless_connected(), name="local-call-connect-window")
        return self.pc.localDescription

    def close_soon(self, reason: str, *, tell_caller: bool = False) -> asyncio.Task[None]:
        """Start the teardown (once); returns it. `tell_caller`: send the reason on the state
        channel first (the server ends the call, and the page says why)."""
        if self._closing is None:
            logger.info("call ending", extra={"reason": reason})
            self._closing = asyncio.ensure_future(self._close(reason if tell_caller else None))
            if self._on_phase is not None:
                self._on_phase(self)
        return self._closing

    async def aclose(self) -> None:
        await asyncio.shield(self.close_soon("closed by the server"))

    # ---- events --------------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._microphone is None:
            self._microphone = track

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected" and not self._started and self._closing is None:
            self._started = True
            self._spawn(self._start(), name="local-call-start")
            self._spawn(self._supervise(), name="local-call-supervise")
            if self._on_phase is not None:
                self._on_phase(self)
        elif state in ("failed", "closed"):
            self.close_soon(f"connection {state}")

    def _on_ice_state(self) -> None:
        state = self.pc.iceConnectionState
        if state in ("failed", "closed"):
            self.close_soon(f"ICE {state}")

    async def _start(self) -> None:
        assert self._microphone is not None
        self._user_audio = MicrophoneInput(self._microphone, sample_rate=AGENT_AUDIO_RATE)
        try:
            await start_local(
                self.conversation,
                user_audio=self._user_audio,
                sink=self._play,
                transcript=self._send_line,
                names=self.names,
            )
        except Exception:
            logger.exception("call could not start")
            self.close_soon("start failed")
            return
        logger.info("call started", extra={"characters": list(self.names)})

    async def _give_up_unless_connected(self) -> None:
        await asyncio.sleep(self.limits.connect_window_s)
        if not self._started:
            self.abandoned = True
            self.close_soon(f"not connected within {self.limits.connect_window_s:g} s")

    async def _supervise(self) -> None:
        """While connected: end the call when the peer has vanished (sends no packets, not
        even RTCP), nobody speaks, or the call has lasted its longest."""
        limits = self.limits
        connected = last_packet = time.monotonic()
        packets = await self._packets_received()
        while True:
            await asyncio.sleep(limits.check_every_s)
            now = time.monotonic()
            received = await self._packets_received()
            if received != packets:
                packets, last_packet = received, now
            heard = self._user_audio.last_voice if self._user_audio is not None else connected
            spoken = max(heard, self._last_speech, connected)
            if now - last_packet > limits.peer_timeout_s:
                self.close_soon(f"nothing received for {limits.peer_timeout_s:g} s")
                return
            if now - connected > limits.max_call_s:
                why = f"the call reached its longest, {_duration(limits.max_call_s)}"
                self.close_soon(why, tell_caller=True)
                return
            if now - spoken > limits.idle_s:
                why = f"nobody has spoken for {_duration(limits.idle_s)}"
                self.close_soon(why, tell_caller=True)
                return

    async def _packets_received(self) -> int:
        """Packets the peer connection has received so far (media, RTCP and data)."""
        report = await self.pc.getStats()
        return sum(s.packetsReceived for s in report.values() if s.type == "transport")

    def _play(self, frame: AvatarFrame) -> None:
        """AvatarPlayout's sink: the frame to the tracks; the state as the frames show it."""
        self.tracks.push(frame)
        if self._closing is not None:
            return  # the caller has been told the call ended
        if frame.in_segment:
            self._last_speech = time.monotonic()
            speaker = None if frame.speaker is None else self.names[frame.speaker]
            state = {"state": "speaking", "character": speaker}
        else:
            state = {"state": "listening"}
        if state != self.state:
            self.state = state
            self._send_state()

    def _send_line(self, line: TranscriptLine) -> None:
        if self._closing is None:
            self._send(line.message())

    def _send(self, message: dict[str, Any]) -> None:
        if self._channel is not None and self._channel.readyState == "open":
            self._channel.send(json.dumps(message))

    def _send_state(self) -> None:
        self._send(self.state)

    # ---- teardown ------------------------------------------------------------------------

    def _spawn(self, coro: Any, *, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self, goodbye: str | None) -> None:
        """The network first (the browser sees the end at once), then the conversation (which
        a cancelled start_local may have closed already: closing twice is harmless)."""
        try:
            if goodbye is not None and self._channel is not None:
                self.state = {"state": "ended", "reason": goodbye}
                self._send_state()
                await asyncio.sleep(GOODBYE_FLUSH_S)
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


def _duration(seconds: float) -> str:
    """10 s, 5 min, 1 h 30 min: how a limit reads in the caller's message."""
    if seconds < 60:
        return f"{seconds:g} s"
    hours, minutes = divmod(round(seconds / 60), 60)
    parts = [f"{hours} h"] if hours else []
    return " ".join([*parts, f"{minutes} min"] if minutes or not hours else parts)
