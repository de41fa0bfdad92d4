"""Pictures and audio from users (console uploads, CLI files), checked before anything big is
decoded: a bad file gets one sentence saying what was wrong and the limit, never a traceback,
a decompression bomb or a two-hour decode."""

from __future__ import annotations

import io
import warnings
from itertools import chain
from pathlib import Path

import av
import numpy as np
import soundfile
from PIL import Image, ImageOps, UnidentifiedImageError

from avatar_engine import MAX_RATE, MIN_RATE

MiB = 1 << 20
IMAGE_MAX_BYTES = 20 * MiB
AUDIO_MAX_SECONDS = 300.0  # one --audio file, or a whole --script, for `avatar render`
# Formats PIL decodes in-process; others (EPS runs Ghostscript) are refused.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")


class InputError(ValueError):
    """A user's file is not usable; the message says why and what the limit is."""


def _open_source(source: Path | bytes, what: str, max_bytes: int) -> Path | io.BytesIO:
    """The file to decode, its size checked without reading it (a path stays a path)."""
    opened: Path | io.BytesIO
    if isinstance(source, bytes | bytearray | memoryview):
        size, name, opened = len(source), f"the {what} file", io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{what} file {path} does not exist")
        size, name, opened = path.stat().st_size, f"{what} file {path.name}", path
    if size == 0:
        raise InputError(f"{name} is empty (0 bytes)")
    if size > max_bytes:
        raise InputError(f"{name} is {size / MiB:.1f} MiB; the limit is {max_bytes / MiB:.1f} MiB")
    return opened


def load_image(
    source: Path | bytes,
    *,
    max_bytes: int = IMAGE_MAX_BYTES,
    max_pixels: int = 40_000_000,
    min_side: int = 64,
) -> np.ndarray:
    """A picture as [H, W, 3] uint8 RGB, upright (EXIF orientation applied), transparency
    composited on white. The size is checked from the header before any pixel is decoded."""
    file = _open_source(source, "image", max_bytes)
    too_big = f"the image is larger than the limit of {max_pixels / 1e6:g} megapixels"
    try:
        with warnings.catch_warnings():
            # PIL warns above ~89 MP and refuses above ~179 MP: both are over our limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(file, formats=IMAGE_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(too_big) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InputError(
            f"the file is not a picture in a supported format ({', '.join(IMAGE_FORMATS)})"
        ) from None
    with im:
        width, height = im.size
        if width * height > max_pixels:
            raise InputError(f"the image is {width}x{height}; {too_big}")
        if min(width, height) < min_side:
            raise InputError(
                f"the image is {width}x{height}; each side must be at least {min_side} pixels"
            )
        try:
            im.load()
            upright = ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise InputError(f"the image file is damaged or truncated ({exc})") from None
    return _to_rgb(upright)


def _to_rgb(im: Image.Image) -> np.ndarray:
    """[H, W, 3] uint8: grey and palette expanded, alpha composited on white."""
    if im.mode.startswith("I"):  # 16-bit grey (PIL's convert would clip it at 255: white)
        grey = np.asarray(im, dtype=np.float64) / 257  # [H, W] 0..65535 -> 0..255
        im = Image.fromarray(grey.round().clip(0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    return np.array(im.convert("RGB"))


def load_audio(
    source: Path | bytes,
    *,
    max_seconds: float = AUDIO_MAX_SECONDS,
    min_seconds: float = 0.1,
    max_bytes: int = 256 * MiB,
) -> tuple[np.ndarray, int]:
    """Speech as ([S] float32 mono in [-1, 1], sample rate). wav/flac/ogg/mp3 via soundfile,
    other containers (m4a, webm) via PyAV. The duration is read from the header or container
    before decoding, so a long file is refused without being read."""
    file = _open_source(source, "audio", max_bytes)
    try:
        with soundfile.SoundFile(file) as f:
            _check_duration(f.frames / f.samplerate, max_seconds, min_seconds)
            _check_rate(f.samplerate)
            wave, rate = f.read(dtype="float32", always_2d=True), f.samplerate  # [S, C]
    except soundfile.LibsndfileError:
        if isinstance(file, io.BytesIO):
            file.seek(0)
        wave, rate = _decode_with_av(file, max_seconds, min_seconds)
    mono = wave.mean(axis=1)
    if not np.isfinite(mono).all():
        raise InputError("the audio contains invalid (NaN or infinite) samples")
    return np.clip(mono, -1.0, 1.0).astype(np.float32), rate


def _check_duration(seconds: float, max_seconds: float, min_seconds: float) -> None:
    if seconds > max_seconds:
        raise InputError(f"the audio is {seconds:.1f} s long; the limit is {max_seconds:g} s")
    if seconds < min_seconds:
        raise InputError(
            f"the audio is {seconds:.3f} s long; it must last at least {min_seconds:g} s"
        )


def _check_rate(rate: int) -> None:
    if not MIN_RATE <= rate <= MAX_RATE:
        raise InputError(f"the audio's sample rate is {rate} Hz; use {MIN_RATE}..{MAX_RATE} Hz")


def _decode_with_av(
    file: Path | io.BytesIO, max_seconds: float, min_seconds: float
) -> tuple[np.ndarray, int]:
    """[S, 1] float32 and the rate, from any container FFmpeg reads; stops decoding as soon
    as the limit is passed when the container does not state its duration."""
    not_audio = "the file is not audio in a supported format (wav, flac, ogg, mp3, m4a, webm)"
    try:
        with av.open(str(file) if isinstance(file, Path) else file, "r") as container:
            if not container.streams.audio:
                raise InputError(not_audio)
            stream = container.streams.audio[0]
            rate = stream.rate
            if not rate:  # FFmpeg guessed the format from the name and found no audio in it
                raise InputError(not_audio)
            _check_rate(rate)
            if stream.duration is not None and stream.time_base is not None:
                _check_duration(float(stream.duration * stream.time_base), max_seconds, 0.0)
            elif container.duration is not None:
                _check_duration(container.duration / av.time_base, max_seconds, 0.0)
            mono = av.AudioResampler(format="flt", layout="mono", rate=rate)
            pieces, samples = [], 0
            for frame in chain(container.decode(stream), [None]):  # None flushes the resampler
                for out in mono.resample(frame):
                    pieces.append(out.to_ndarray().reshape(-1))
                    samples += out.samples
                _check_duration(samples / rate, max_seconds, 0.0)
    except av.FFmpegError:
        raise InputError(not_audio) from None
    wave = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
    _check_duration(len(wave) / rate, max_seconds, min_seconds)
    return wave[:, None], rate
