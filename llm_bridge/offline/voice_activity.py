"""Voice activity on webrtcvad with smoothing: speech starts when most of the last few frames
are voiced, and ends only after a hangover of unvoiced frames, so short pauses between words do
not end a turn. The offline voice's VAD (vad.py) uses it for end of turn and barge-in.

A frame counts as voiced only if webrtcvad says so and it stands SNR_DB above the recent noise
floor: webrtcvad's noise model needs time to adapt and calls a quiet hiss speech at first.
webrtcvad also keeps calling frames voiced for about 100 ms after speech stops (its own
hangover), so the reported end is moved back to the last frame whose energy is within TAIL_DB
of the turn's loudest frame.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np
import torch
import webrtcvad

from avatar_engine import INT16_SCALE, StreamingResampler, to_mono

VAD_RATE = 16000  # one of webrtcvad's rates; input of any rate is resampled to it
FRAME_MS = 30  # one of webrtcvad's frame lengths (10, 20, 30 ms)
TAIL_DB = 35.0  # a frame this far below the turn's peak is no longer speech
SNR_DB = 6.0  # above the noise floor: the quietest frame of the last NOISE_WINDOW_S
NOISE_WINDOW_S = 3.0


def _decibels(frame: torch.Tensor) -> float:
    return 10 * math.log10(float(frame.square().mean()) + 1e-12)


@dataclass(frozen=True)
class VadEvent:
    speaking: bool  # True: speech started; False: speech ended
    time_s: float  # seconds since the detector started (or was reset)


class VoiceActivityDetector:
    """Feed audio of any rate and size; get speech start/end events with their times."""

    def __init__(
        self,
        *,
        aggressiveness: int = 2,
        onset_frames: int = 3,
        onset_window: int = 5,
        hangover_s: float = 0.3,
        max_push_s: float = 60.0,
    ):
        """Args:
        aggressiveness: webrtcvad's 0 (least) .. 3 (most eager to call audio non-speech).
        onset_frames: voiced frames among the last onset_window that start speech.
        hangover_s: unvoiced time that ends speech.
        """
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, not {aggressiveness}")
        if not 1 <= onset_frames <= onset_window:
            raise ValueError("onset_frames must be between 1 and onset_window")
        self.vad = webrtcvad.Vad(aggressiveness)
        self.onset_frames, self.onset_window = onset_frames, onset_window
        self.hangover_frames = max(1, round(hangover_s * 1000 / FRAME_MS))
        self.max_push_s = max_push_s
        self.frame_samples = VAD_RATE * FRAME_MS // 1000
        self.resampler: StreamingResampler | None = None
        self.reset()

    def reset(self) -> None:
        self.speaking = False
        self._pending = torch.zeros(0, dtype=torch.float64)  # 16 kHz samples not yet framed
        self._frame = 0  # index of the next frame
        self._recent: deque[tuple[int, bool]] = deque(maxlen=self.onset_window)
        self._energy: deque[float] = deque(maxlen=self.hangover_frames + self.onset_window)
        self._peak_db = -math.inf  # loudest frame of the current turn
        self._floor: deque[float] = deque(maxlen=round(NOISE_WINDOW_S * 1000 / FRAME_MS))
        self._last_voiced = -1
        if self.resampler is not None:
            self.resampler.reset()

    def push(
        self, audio: bytes | np.ndarray | torch.Tensor, sample_rate: int, *, channels: int = 1
    ) -> list[VadEvent]:
        wave = to_mono(audio, sample_rate, channels=channels, max_seconds=self.max_push_s)
        if self.resampler is None or self.resampler.in_rate != sample_rate:
            self.resampler = StreamingResampler(sample_rate, VAD_RATE)
        self._pending = torch.cat([self._pending, self.resampler.push(wave)])
        events = []
        while self._pending.numel() >= self.frame_samples:
            frame, self._pending = self._pending.split(
                [self.frame_samples, self._pending.numel() - self.frame_samples]
            )
            energy = _decibels(frame)
            self._energy.append(energy)
            self._floor.append(energy)
            voiced = energy >= min(self._floor) + SNR_DB and self._is_speech(frame)
            event = self._step(voiced)
            if event is not None:
                events.append(event)
        return events

    def _is_speech(self, frame: torch.Tensor) -> bool:
        pcm = (frame * INT16_SCALE).round().clamp(-INT16_SCALE, INT16_SCALE - 1).short()
        return bool(self.vad.is_speech(pcm.numpy().tobytes(), VAD_RATE))

    def _time(self, frame: int) -> float:
        return frame * FRAME_MS / 1000

    def _step(self, voiced: bool) -> VadEvent | None:
        index = self._frame
        self._frame += 1
        self._recent.append((index, voiced))
        if voiced:
            self._last_voiced = index
        if not self.speaking:
            if sum(v for _, v in self._recent) >= self.onset_frames:
                self.speaking = True
                first = next(i for i, v in self._recent if v)
                self._peak_db = max(self._energy)
                return VadEvent(speaking=True, time_s=self._time(first))
            return None
        self._peak_db = max(self._peak_db, self._energy[-1])
        if index - self._last_voiced < self.hangover_frames:
            return None
        self.speaking = False
        self._recent.clear()
        return VadEvent(speaking=False, time_s=self._time(self._speech_end(index)))

    def _speech_end(self, index: int) -> int:
        """The frame after the last one loud enough to be speech, at most the last voiced."""
        end = self._last_voiced + 1
        first_kept = index + 1 - len(self._energy)
        while end - 1 > first_kept and self._energy[end - 1 - first_kept] < self._peak_db - TAIL_DB:
            end -= 1
        return end
