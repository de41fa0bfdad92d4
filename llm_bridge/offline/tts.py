"""Speech for the offline voice: espeak-ng, one voice (language+variant, rate, pitch) per
character. The WAV espeak-ng writes to stdout is streamed as it arrives; livekit's
AudioEmitter cuts it into frames, and the session's sentence splitter feeds it a sentence at
a time, so a reply starts playing before it is all synthesized.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import subprocess
import uuid

from livekit.agents import APIConnectOptions, APIError, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

logger = logging.getLogger(__name__)

SAMPLE_RATE = 22050  # what espeak-ng writes
FRAME_MS = 100  # audio frames handed to the session
READ_BYTES = 4096
INSTALL_HINT = "install the Debian package espeak-ng (apt-get install espeak-ng)"


def find_espeak(binary: str = "espeak-ng") -> str:
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(
            f"the offline voice needs {binary!r}, which was not found: {INSTALL_HINT}"
        )
    return path


def check_voice(binary: str, voice: str) -> None:
    """Fail now, with the fix, if espeak-ng has no such voice."""
    done = subprocess.run(
        [binary, "-q", "-v", voice, ""], capture_output=True, text=True, timeout=10, check=False
    )
    if done.returncode != 0:
        raise ValueError(
            f"espeak-ng cannot speak with voice {voice!r} ({done.stderr.strip() or 'no message'}); "
            "`espeak-ng --voices` lists the voices, e.g. 'en', 'en+f3', 'de'"
        )


class EspeakTTS(tts.TTS):
    """A livekit TTS speaking with espeak-ng."""

    def __init__(
        self, *, voice: str = "en", rate: int = 165, pitch: int = 50, binary: str = "espeak-ng"
    ) -> None:
        """Args:
        voice: espeak-ng voice, e.g. "en", "en+f3", "de".
        rate: words per minute.
        pitch: 0..99.
        """
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self._binary = find_espeak(binary)
        check_voice(self._binary, voice)
        self.voice, self.rate, self.pitch = voice, rate, pitch

    @property
    def model(self) -> str:
        return f"espeak-ng:{self.voice}"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def command(self) -> list[str]:
        """The espeak-ng command line; the text goes to its stdin."""
        return [
            self._binary, "--stdout", "-v", self.voice, "-s", str(self.rate), "-p", str(self.pitch),
        ]  # fmt: skip

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> EspeakStream:
        return EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class EspeakStream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner = self._tts
        assert isinstance(owner, EspeakTTS)
        output_emitter.initialize(
            request_id=uuid.uuid4().hex,
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            mime_type="audio/pcm",
            frame_size_ms=FRAME_MS,
        )
        proc = await asyncio.create_subprocess_exec(
            *owner.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            proc.stdin.write(self.input_text.encode())
            proc.stdin.close()
            if await _skip_wav_header(proc.stdout):
                while chunk := await proc.stdout.read(READ_BYTES):
                    output_emitter.push(chunk)
            error = (await proc.stderr.read()).decode(errors="replace").strip()
            if await proc.wait() != 0:
                raise APIError(f"espeak-ng failed: {error or 'no message'}", retryable=False)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        output_emitter.flush()


async def _skip_wav_header(stream: asyncio.StreamReader) -> bool:
    """Read past the RIFF header to the PCM; False if espeak-ng wrote nothing (empty text).
    espeak-ng writes the header before it knows the length: its sizes are not trusted."""
    try:
        riff = await stream.readexactly(12)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            return False
        raise APIError("espeak-ng wrote a truncated WAV header", retryable=False) from None
    if riff[:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise APIError(f"espeak-ng did not write WAV (it began {riff!r})", retryable=False)
    while True:
        chunk_id, size = struct.unpack("<4sI", await stream.readexactly(8))
        if chunk_id == b"data":
            return True
        body = await stream.readexactly(size + (size & 1))
        if chunk_id == b"fmt ":
            _fmt, channels, rate, _rate_bytes, _align, bits = struct.unpack("<HHIIHH", body[:16])
            if (channels, rate, bits) != (1, SAMPLE_RATE, 16):
                raise APIError(
                    f"espeak-ng wrote {channels} ch, {rate} Hz, {bits} bit audio; expected "
                    f"mono {SAMPLE_RATE} Hz 16 bit",
                    retryable=False,
                )
