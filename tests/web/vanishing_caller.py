"""A caller that vanishes: run as `python -m tests.web.vanishing_caller BASE_URL`, it calls
Ada as the page does, prints "connected" once video arrives, then waits to be killed. Killed
with SIGKILL it leaves as a crashed browser or a pulled cable does: without a goodbye of any
kind (no DTLS close, no SCTP shutdown, no RTCP BYE). It imports only aiortc and httpx, so it
starts quickly."""

from __future__ import annotations

import asyncio
import sys

import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack


async def main(base_url: str) -> None:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTrack(AudioStreamTrack())  # a silent microphone, sending all the while
    pc.addTransceiver("video", direction="recvonly")
    video = asyncio.get_running_loop().create_future()
    pc.on("track", lambda track: track.kind == "video" and video.set_result(track))
    await pc.setLocalDescription(await pc.createOffer())
    body = {"character": "ada", "sdp": pc.localDescription.sdp, "type": "offer"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post("/api/call/offer", json=body)
    response.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(**response.json()))
    track = await video
    for _ in range(2):
        await track.recv()
    print("connected", flush=True)
    await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
