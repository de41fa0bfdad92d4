"""livekit-agents' VAD interface over our webrtcvad detector (voice_activity.py).

The session uses it for the start of the user's speech (barge-in) and its end (end of turn).
Times come from the audio itself, not the wall clock: a turn's END_OF_SPEECH carries the
silence already heard after the speech, so the session counts its endpointing delay from the
real end of speech.
"""

from __future__ import annotations

import functools
import logging
import time
from collections import deque

import numpy as np
from livekit import rtc
from livekit.agents import vad

from llm_bridge.offline.voice_activity import FRAME_MS, VAD_RATE, VadEvent, VoiceActivityDetector

logger = logging.getLogger(__name__)

PRE_ROLL_S = 1.0  # audio kept while nobody speaks: covers the detector's onset window
MAX_SPEECH_S = 60.0  # longest speech kept for END_OF_SPEECH; older audio is dropped


class WebRtcVAD(vad.VAD):
    """Speech start/end from webrtcvad with onset smoothing and a hangover."""

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        onset_frames: int = 3,
        onset_window: int = 5,
        hangover_s: float = 0.3,
    ) -> None:
        """Args: as VoiceActivityDetector; hangover_s is the silence that ends speech."""
        super().__init__(capabilities=vad.VADCapabilities(update_interval=FRAME_MS / 1000))
        self._detector = functools.partial(
            VoiceActivityDetector,
            aggressiveness=aggressiveness,
            onset_frames=onset_frames,
            onset_window=onset_window,
            hangover_s=hangover_s,
        )
        self._detector()  # bad settings fail here, not in a stream task

    @property
    def model(self) -> str:
        return "webrtcvad"

    @property
    def provider(self) -> str:
        return "webrtcvad"

    def stream(self) -> WebRtcVADStream:
        return WebRtcVADStream(self, detector=self._detector())


class WebRtcVADStream(vad.VADStream):
    def __init__(self, owner: WebRtcVAD, *, detector: VoiceActivityDetector) -> None:
        self._detector = detector
        # livekit's native resampler: the detector's own (exact, torch) one costs ~10x more
        self._resampler: tuple[tuple[int, int], rtc.AudioResampler] | None = None
        self._frames: deque[tuple[float, rtc.AudioFrame]] = deque()  # (stream time, frame)
        self._now = 0.0  # seconds of audio pushed
        self._origin = 0.0  # stream time of the detector's time 0 (moves on flush)
        self._start: float | None = None  # stream time the current speech started
        self._end = 0.0  # stream time the last speech ended
        super().__init__(owner)  # starts _main_task

    async def _main_task(self) -> None:
        async for item in self._input_ch:
            if isinstance(item, vad.VADStream._FlushSentinel):
                self._reset()
            else:
                self._push(item)

    def _reset(self) -> None:
        self._detector.reset()
        self._resampler = None
        self._frames.clear()
        self._origin = self._end = self._now
        self._start = None

    def _push(self, frame: rtc.AudioFrame) -> None:
        began = time.perf_counter()
        events: list[VadEvent] = []
        for part in self._to_vad_rate(frame):
            pcm = np.frombuffer(part.data, dtype=np.int16)
            events += self._detector.push(pcm, VAD_RATE, channels=part.num_channels)
        self._frames.append((self._now, frame))
        self._now += frame.duration
        for event in events:
            self._emit_edge(event)
        speaking = self._start is not None
        speech = self._now - self._start if self._start is not None else 0.0
        silence = 0.0 if speaking else self._now - self._end
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=vad.VADEventType.INFERENCE_DONE,
                samples_index=round(self._now * frame.sample_rate),
                timestamp=self._now,
                speech_duration=speech,
                silence_duration=silence,
                frames=[frame],
                probability=1.0 if speaking else 0.0,
                inference_duration=time.perf_counter() - began,
                speaking=speaking,
                raw_accumulated_speech=speech,
                raw_accumulated_silence=silence,
            )
        )
        self._trim()

    def _to_vad_rate(self, frame: rtc.AudioFrame) -> list[rtc.AudioFrame]:
        if frame.sample_rate == VAD_RATE:
            return [frame]
        layout = (frame.sample_rate, frame.num_channels)
        if self._resampler is None or self._resampler[0] != layout:
            quality = rtc.AudioResamplerQuality.QUICK  # plenty for voice activity
            resampler = rtc.AudioResampler(
                layout[0], VAD_RATE, num_channels=frame.num_channels, quality=quality
            )
            self._resampler = (layout, resampler)
        return self._resampler[1].push(frame)

    def _emit_edge(self, event: VadEvent) -> None:
        at = self._origin + event.time_s
        rate = self._frames[-1][1].sample_rate
        if event.speaking:
            self._start = at
            speech, silence, audio = self._now - at, 0.0, self._audio(at, self._now)
        else:
            start = self._start if self._start is not None else at
            self._start, self._end = None, at
            speech, silence, audio = at - start, self._now - at, self._audio(start, at)
        state = "starts" if event.speaking else "ends"
        logger.debug("user speech %s", state, extra={"at_s": round(at, 3), "speech_s": speech})
        self._event_ch.send_nowait(
            vad.VADEvent(
                type=(
                    vad.VADEventType.START_OF_SPEECH
                    if event.speaking
                    else vad.VADEventType.END_OF_SPEECH
                ),
                samples_index=round(at * rate),
                timestamp=self._now,
                speech_duration=speech,
                silence_duration=silence,
                frames=[audio],
                speaking=event.speaking,
            )
        )

    def _audio(self, begin: float, end: float) -> rtc.AudioFrame:
        """The pushed audio between two stream times, as one frame."""
        parts = [(t, f) for t, f in self._frames if t + f.duration > begin and t < end]
        if not parts:
            last = self._frames[-1][1]
            return rtc.AudioFrame(b"", last.sample_rate, last.num_channels, 0)
        first = parts[0][0]
        merged = rtc.combine_audio_frames([f for _, f in parts])
        rate, channels = merged.sample_rate, merged.num_channels
        i0 = max(0, round((begin - first) * rate))
        i1 = min(merged.samples_per_channel, max(i0, round((end - first) * rate)))
        data = np.frombuffer(merged.data, dtype=np.int16)[i0 * channels : i1 * channels]
        return rtc.AudioFrame(data.tobytes(), rate, channels, i1 - i0)

    def _trim(self) -> None:
        keep_from = self._now - (MAX_SPEECH_S if self._start is not None else PRE_ROLL_S)
        while self._frames and self._frames[0][0] + self._frames[0][1].duration < keep_from:
            self._frames.popleft()
