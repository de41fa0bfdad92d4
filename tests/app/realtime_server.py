"""A loopback stand-in for the OpenAI Realtime websocket API, scripted by the test.

It speaks the subset livekit-plugins-openai uses: session.update, input_audio_buffer.*,
server VAD (an energy threshold, or `speech_started()` on demand), response.create/cancel with
a streamed reply, conversation.item.create/delete/truncate. Every client event is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

SAMPLE_RATE = 24000  # PCM16 mono, both directions
logger = logging.getLogger(__name__)
_ids = itertools.count(1)


def _id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):06d}"


class RealtimeServer:
    """A websocket at `base_url` + "/realtime": `RealtimeModel(base_url=...)` connects to it."""

    def __init__(
        self,
        *,
        reply_audio: np.ndarray,  # int16 at 24 kHz, streamed for every response
        reply_text: str = "hello there",
        speech_threshold: float = 300.0,  # RMS (int16 units) of an append that counts as speech
        silence_ms: int = 400,  # quiet audio that ends the user's turn
        delta_ms: int = 50,  # audio per response.output_audio.delta
        pace: float | None = None,  # audio seconds sent per wall second; None: all at once
        heard: str | None = None,  # the input transcription of each user turn; None: none
    ) -> None:
        self.reply_audio = reply_audio
        self.reply_text = reply_text
        self._threshold = speech_threshold
        self._silence_ms = silence_ms
        self._delta_ms = delta_ms
        self._pace = pace
        self._heard = heard
        self.events: list[dict[str, Any]] = []  # every client event, in order
        self.sent: list[dict[str, Any]] = []  # every server event, in order
        self.input_audio_bytes = 0  # PCM16 bytes received by input_audio_buffer.append
        self.handshakes: list[dict[str, str | None]] = []  # model and auth of each connection
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._port = 0
        self._ws: web.WebSocketResponse | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._response: asyncio.Task[None] | None = None
        self._server_vad = True
        self._create_response = True
        self._interrupt_response = True
        self._input_ms = 0.0  # audio received since the connection opened
        self._user_item: str | None = None  # the user's turn, while the VAD hears speech
        self._quiet_ms = 0.0
        self._last_item: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/realtime", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self._port = self._runner.addresses[0][1]  # ephemeral port
        logger.debug("realtime loopback listening", extra={"port": self._port})

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == kind]

    async def wait_for(self, kind: str, *, count: int = 1, timeout: float = 10.0) -> dict:
        """The `count`-th client event of this type, waiting for it to arrive."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.received(kind)) >= count)
        return self.received(kind)[count - 1]

    async def speech_started(self) -> None:
        """Barge-in: the server's VAD hears the user now (and cancels its reply, like OpenAI)."""
        await self._start_speech()

    # -- the websocket

    async def _handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        auth = request.headers.get("Authorization")
        self.handshakes.append({"model": request.query.get("model"), "authorization": auth})
        self._ws = ws
        await self._send("session.created", session={"id": _id("sess")})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            event = json.loads(msg.data)
            self.events.append(event)
            await self._dispatch(event)
            async with self._changed:
                self._changed.notify_all()
        return ws

    async def _send(self, kind: str, **fields: Any) -> None:
        event = {"event_id": _id("event"), "type": kind, **fields}
        self.sent.append(event)
        if self._ws is not None and not self._ws.closed:
            await self._ws.send_str(json.dumps(event))

    async def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "session.update":
            td = event["session"].get("audio", {}).get("input", {})
            if "turn_detection" in td:
                cfg = td["turn_detection"]  # None: the client detects turns itself
                self._server_vad = cfg is not None
                self._create_response = self._server_vad and cfg.get("create_response") is not False
                self._interrupt_response = (
                    self._server_vad and cfg.get("interrupt_response") is not False
                )
            await self._send("session.updated", session=event["session"])
        elif kind == "input_audio_buffer.append":
            await self._on_audio(base64.b64decode(event["audio"]))
        elif kind == "input_audio_buffer.commit":
            await self._commit()
        elif kind == "input_audio_buffer.clear":
            await self._send("input_audio_buffer.cleared")
        elif kind == "response.create":
            await self._start_response(event.get("response") or {}, event.get("event_id"))
        elif kind == "response.cancel":
            await self._cancel_response()
        elif kind == "conversation.item.create":
            item = {**event["item"], "id": event["item"].get("id") or _id("item")}
            await self._add_item(item, event.get("previous_item_id"))
        elif kind == "conversation.item.delete":
            await self._send("conversation.item.deleted", item_id=event["item_id"])
        elif kind == "conversation.item.truncate":
            fields = {k: event[k] for k in ("item_id", "content_index", "audio_end_ms")}
            await self._send("conversation.item.truncated", **fields)

    async def _add_item(self, item: dict[str, Any], previous: str | None = None) -> None:
        previous = self._last_item if previous in (None, "root") else previous
        await self._send("conversation.item.added", previous_item_id=previous, item=item)
        self._last_item = item["id"]

    async def _error(self, code: str, message: str, event_id: str | None = None) -> None:
        error = {"type": "invalid_request_error", "code": code, "message": message}
        await self._send("error", error={**error, "event_id": event_id})

    # -- input audio and the energy VAD

    async def _on_audio(self, pcm: bytes) -> None:
        self.input_audio_bytes += len(pcm)
        samples = np.frombuffer(pcm, dtype=np.int16).astype(np.float64)
        ms = 1000.0 * len(samples) / SAMPLE_RATE
        self._input_ms += ms
        if not self._server_vad or not len(samples):
            return
        loud = float(np.sqrt(np.mean(samples**2))) >= self._threshold
        if loud and self._user_item is None:
            await self._start_speech()
        elif self._user_item is not None:
            self._quiet_ms = 0.0 if loud else self._quiet_ms + ms
            if self._quiet_ms >= self._silence_ms:
                await self._stop_speech()

    async def _start_speech(self) -> None:
        if self._user_item is not None:
            return
        self._user_item, self._quiet_ms = _id("item"), 0.0
        start_ms = int(self._input_ms)
        await self._send(
            "input_audio_buffer.speech_started", audio_start_ms=start_ms, item_id=self._user_item
        )
        if self._interrupt_response:  # then, as OpenAI does, the reply under way is cancelled
            await self._cancel_response(reason="turn_detected")

    async def _stop_speech(self) -> None:
        end_ms = int(self._input_ms)
        await self._send(
            "input_audio_buffer.speech_stopped", audio_end_ms=end_ms, item_id=self._user_item
        )
        await self._commit()
        if self._create_response:
            await self._start_response({})

    async def _commit(self) -> None:
        item_id, self._user_item = self._user_item or _id("item"), None
        await self._send("input_audio_buffer.committed", previous_item_id=None, item_id=item_id)
        content = [{"type": "input_audio", "transcript": None}]
        await self._add_item({"id": item_id, "type": "message", "role": "user", "content": content})
        if self._heard is not None:
            await self._send(
                "conversation.item.input_audio_transcription.completed",
                item_id=item_id,
                content_index=0,
                transcript=self._heard,
                usage={"type": "duration", "seconds": 1.0},
            )

    # -- responses

    async def _start_response(self, params: dict[str, Any], event_id: str | None = None) -> None:
        if self._response is not None and not self._response.done():
            message = "Conversation already has an active response in progress"
            await self._error("conversation_already_has_active_response", message, event_id)
            return
        self._response = asyncio.create_task(self._stream_response(params))
        self._tasks.add(self._response)
        self._response.add_done_callback(self._tasks.discard)

    async def _cancel_response(self, *, reason: str = "client_cancelled") -> None:
        task = self._response
        if task is None or task.done():
            if reason == "client_cancelled":  # the plugin ignores this one, as it should
                message = "Cancellation failed: no active response found"
                await self._error("response_cancel_not_active", message)
            return
        task.cancel(msg=reason)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _stream_response(self, params: dict[str, Any]) -> None:
        resp = {"id": _id("resp"), "object": "realtime.response", "status": "in_progress"}
        resp.update(output=[], metadata=params.get("metadata"), usage=None)
        item = {"id": _id("item"), "object": "realtime.item", "type": "message"}
        item.update(role="assistant", status="in_progress", content=[])
        at = {"response_id": resp["id"], "item_id": item["id"], "output_index": 0}
        part = {**at, "content_index": 0}
        await self._send("response.created", response=resp)
        await self._send("response.output_item.added", **at, item=item)
        await self._add_item(item)
        await self._send("response.content_part.added", **part, part={"type": "audio"})
        step = SAMPLE_RATE * self._delta_ms // 1000
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        try:
            for i, word in enumerate(self.reply_text.split()):
                delta = word if i == 0 else f" {word}"
                await self._send("response.output_audio_transcript.delta", **part, delta=delta)
            for start in range(0, len(self.reply_audio), step):
                pcm = self.reply_audio[start : start + step].astype("<i2").tobytes()
                delta = base64.b64encode(pcm).decode()
                await self._send("response.output_audio.delta", **part, delta=delta)
                due = t0 + (start + step) / SAMPLE_RATE / self._pace if self._pace else 0.0
                await asyncio.sleep(max(0.0, due - loop.time()))
        except asyncio.CancelledError as cancel:
            reason = str(cancel.args[0]) if cancel.args else "client_cancelled"
            await self._finish(resp, item, part, reason=reason)
            raise
        await self._finish(resp, item, part, reason=None)

    async def _finish(self, resp: dict, item: dict, part: dict, *, reason: str | None) -> None:
        """The closing events; `reason` says why the response was cancelled, if it was."""
        text = self.reply_text
        await self._send("response.output_audio.done", **part)
        await self._send("response.output_audio_transcript.done", **part, transcript=text)
        await self._send("response.content_part.done", **part, part={"type": "audio"})
        item = {**item, "status": "incomplete" if reason else "completed"}
        item["content"] = [{"type": "output_audio", "transcript": text}]
        at = {k: part[k] for k in ("response_id", "output_index")}
        await self._send("response.output_item.done", **at, item=item)
        details = {"type": "cancelled", "reason": reason} if reason else None
        resp = {**resp, "status": "cancelled" if reason else "completed", "output": [item]}
        resp.update(status_details=details, usage={"total_tokens": 0})
        await self._send("response.done", response=resp)
