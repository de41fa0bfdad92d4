"""The web app served on a loopback port (uvicorn with uvloop, in a thread, as `avatar serve`
runs it) around the micro engine, and a Python WebRTC client that calls it like the page."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, MediaStreamTrack
from fastapi import FastAPI

from app.characters import CharacterLibrary
from app.local_call.call import STATE_CHANNEL, STATE_CHANNEL_ID
from app.local_call.calls import LocalCalls
from tests.app.conftest import micro_engine  # noqa: F401  (the fixture, for this package)
from web.app import create_app

LIBRARY = CharacterLibrary()  # the shipped characters: ada, bo, astronaut; scene duo


@pytest.fixture(autouse=True)
def no_openai_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
def web_app(micro_engine) -> FastAPI:  # noqa: F811
    """One call at a time, on the micro engine."""
    return create_app(engine_factory=lambda: micro_engine, library=LIBRARY, sessions=1)


def calls_of(app: FastAPI) -> LocalCalls:
    return app.state.calls


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app: FastAPI) -> Iterator[str]:
    """The app on a loopback port until the block ends (then its lifespan shuts it down);
    yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), loop="uvloop", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        assert not thread.is_alive(), "uvicorn did not shut down"


@pytest.fixture
def base_url(web_app) -> Iterator[str]:
    with served(web_app) as url:
        yield url


def wait_until(predicate, *, timeout: float = 10.0, step: float = 0.02) -> None:
    """Poll (blocking) until predicate() is true; TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not true within {timeout} s")
        time.sleep(step)


@dataclass
class ClientCall:
    """A call as the page makes it: microphone out, audio and video in, state and transcript on
    channel 0."""

    pc: RTCPeerConnection
    video_frames: int = 0
    audio_frames: int = 0
    states: list[dict] = field(default_factory=list)
    transcript: list[dict] = field(default_factory=list)  # every line, as sent
    _readers: list[asyncio.Task] = field(default_factory=list)

    def message(self, text: str) -> None:
        message = json.loads(text)
        if "transcript" in message:
            self.transcript.append(message["transcript"])
        else:
            self.states.append(message)

    def read(self, track: MediaStreamTrack) -> None:
        self._readers.append(asyncio.ensure_future(self._count(track)))

    async def _count(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                await track.recv()
                if track.kind == "video":
                    self.video_frames += 1
                else:
                    self.audio_frames += 1

    async def frames(self, count: int, *, timeout: float = 10.0) -> None:
        """Until `count` more video frames have arrived."""
        target = self.video_frames + count
        deadline = time.monotonic() + timeout
        while self.video_frames < target:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.video_frames} video frames, waited for {target}")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.pc.close()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)


async def make_offer() -> tuple[RTCPeerConnection, RTCDataChannel]:
    """A peer connection with the page's offer set as its local description, and its state
    channel."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())  # a silent microphone
    pc.addTransceiver("video", direction="recvonly")
    channel = pc.createDataChannel(STATE_CHANNEL, negotiated=True, id=STATE_CHANNEL_ID)
    await pc.setLocalDescription(await pc.createOffer())
    return pc, channel


async def offer_sdp() -> str:
    """A valid offer's SDP, its peer closed: a body to post when no call should follow."""
    pc, _ = await make_offer()
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def post_offer(base_url: str, body: dict, *, source: str = "127.0.0.1") -> httpx.Response:
    """POST the offer from the loopback address `source` (127.0.0.0/8 is all loopback: another
    address there is another caller to the server's per-address limits)."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, transport=transport) as http:
        return await http.post("/api/call/offer", json=body)


Answerer = Callable[[dict], Awaitable[dict]]  # the offer request's body -> the answer


async def call_with(answer: Answerer, **who: str) -> ClientCall:
    """Call whoever `answer` asks; the call once its answer is set (media flows once
    connected)."""
    pc, channel = await make_offer()
    client = ClientCall(pc)
    pc.on("track", client.read)
    channel.on("message", client.message)
    try:
        body = {**who, "sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
        await pc.setRemoteDescription(RTCSessionDescription(**await answer(body)))
    except BaseException:
        await pc.close()
        raise
    return client


async def call(base_url: str, *, source: str = "127.0.0.1", **who: str) -> ClientCall:
    """Call the server at base_url as the page does, from the loopback address `source`."""

    async def over_http(body: dict) -> dict:
        response = await post_offer(base_url, body, source=source)
        assert response.status_code == 200, f"offer refused: {response.status_code} {response.text}"
        return response.json()

    return await call_with(over_http, **who)
