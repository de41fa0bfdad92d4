"""User files: good pictures and audio load as arrays; every bad one gets an InputError that
says what was wrong, fast, and without PIL's bomb warnings or decoding what is too big."""

from __future__ import annotations

import io
import struct
import time
import zlib
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile
from PIL import Image

from app.inputs import InputError, load_audio, load_image

# ---- pictures --------------------------------------------------------------------------------


def png_bytes(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (with a valid CRC) over a tiny data stream."""
    data = bytearray(png_bytes(Image.new("RGB", (64, 64), (10, 20, 30))))
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_png_loads_as_rgb(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (80, 120, 3), dtype=np.uint8)
    path = tmp_path / "face.png"
    Image.fromarray(pixels).save(path)
    assert np.array_equal(load_image(path), pixels)
    assert np.array_equal(load_image(path.read_bytes()), pixels)


def test_alpha_is_composited_on_white_and_grey_is_expanded():
    rgba = np.zeros((64, 64, 4), dtype=np.uint8)
    rgba[:, :32] = (200, 0, 0, 255)  # left half opaque red, right half transparent
    loaded = load_image(png_bytes(Image.fromarray(rgba, "RGBA")))
    assert loaded.shape == (64, 64, 3) and loaded.dtype == np.uint8
    assert tuple(loaded[0, 0]) == (200, 0, 0) and tuple(loaded[0, 63]) == (255, 255, 255)
    grey = load_image(png_bytes(Image.new("L", (70, 64), 90)))
    assert grey.shape == (64, 70, 3) and (grey == 90).all()
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    deep = load_image(png_bytes(Image.fromarray(ramp)))  # 16-bit grey: scaled, not clipped
    np.testing.assert_allclose(deep[..., 1], ramp / 257, atol=0.51)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (100, 64), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 10, 64))  # a red stripe on the left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif, quality=95)
    upright = load_image(out.getvalue())
    assert upright.shape == (100, 64, 3)  # portrait once rotated
    assert upright[2, 32, 0] > 200 and upright[-3, 32, 2] > 200  # the red stripe is on top


@pytest.mark.filterwarnings("error")  # PIL's DecompressionBombWarning must not escape either
@pytest.mark.parametrize("size", [(20000, 20000), (7000, 7000)])
def test_huge_image_is_refused_from_its_header(size):
    started = time.perf_counter()
    with pytest.raises(InputError, match="40 megapixels"):
        load_image(png_claiming(*size))
    assert time.perf_counter() - started < 1.0  # nothing was decoded


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(1).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    data = png_bytes(Image.fromarray(noise))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="damaged or truncated"):
        load_image(path)


def test_text_named_png_empty_file_and_missing_file(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n" * 10)
    with pytest.raises(InputError, match="not a picture in a supported format"):
        load_image(text)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        load_image(empty)
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nowhere.png")


def test_too_small_and_too_many_bytes():
    with pytest.raises(InputError, match="32x40; each side must be at least 64 pixels"):
        load_image(png_bytes(Image.new("RGB", (32, 40))))
    with pytest.raises(InputError, match=r"is 1\.5 MiB; the limit is 1\.0 MiB"):
        load_image(png_claiming(64, 64) + bytes(3 << 19), max_bytes=1 << 20)


# ---- audio -----------------------------------------------------------------------------------


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_wav_loads_as_mono_float(tmp_path):
    stereo = np.stack([tone(0.5, 22050), -0.5 * tone(0.5, 22050)], axis=1)
    path = tmp_path / "line.wav"
    soundfile.write(path, stereo, 22050, subtype="PCM_16")
    wave, rate = load_audio(path)
    assert rate == 22050 and wave.dtype == np.float32 and wave.shape == (11025,)
    np.testing.assert_allclose(wave, 0.25 * tone(0.5, 22050), atol=1e-4)  # channel mean
    same, _ = load_audio(path.read_bytes())
    assert np.array_equal(same, wave)


def test_silence_is_allowed(tmp_path):
    path = tmp_path / "quiet.flac"
    soundfile.write(path, np.zeros(8000, dtype=np.float32), 16000)
    wave, rate = load_audio(path)
    assert rate == 16000 and len(wave) == 8000 and not wave.any()


def test_m4a_is_decoded_with_pyav(tmp_path):
    path = tmp_path / "line.m4a"
    rate = 24000
    pcm = (tone(1.0, rate) * 32767).astype(np.int16)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for start in range(0, len(pcm), 1024):
            frame = av.AudioFrame.from_ndarray(pcm[None, start : start + 1024], "s16", "mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    wave, got_rate = load_audio(path)
    assert got_rate == rate and abs(len(wave) / rate - 1.0) < 0.1  # aac adds priming
    assert 0.3 < np.sqrt(np.mean(wave[2000:20000] ** 2)) < 0.4  # the tone's RMS (0.5 / sqrt 2)


def test_two_hour_wav_is_refused_from_its_header(tmp_path):
    """A real 2-hour file on disk (sparse: only its header is written), refused at once."""
    path = tmp_path / "long.wav"
    soundfile.write(path, np.zeros(16000, dtype=np.int16), 16000, subtype="PCM_16")
    header = bytearray(path.read_bytes()[:44])
    data_bytes = 2 * 3600 * 16000 * 2
    header[4:8] = struct.pack("<I", 36 + data_bytes)
    header[40:44] = struct.pack("<I", data_bytes)
    with path.open("wb") as f:
        f.write(header)
        f.truncate(44 + data_bytes)
    started = time.perf_counter()
    with pytest.raises(InputError, match=r"7200\.0 s long; the limit is 300 s"):
        load_audio(path)
    assert time.perf_counter() - started < 1.0


def test_bad_audio_files(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty \(0 bytes\)"):
        load_audio(empty)
    text = tmp_path / "notes.wav"
    text.write_text("hello, this is not a sound\n" * 20)
    with pytest.raises(InputError, match="not audio in a supported format"):
        load_audio(text)
    with pytest.raises(InputError, match="not audio in a supported format"):
        load_audio(png_claiming(64, 64))
    short = io.BytesIO()
    soundfile.write(short, np.zeros(400, dtype=np.float32), 16000, format="WAV")
    with pytest.raises(InputError, match=r"0\.025 s long; it must last at least 0\.1 s"):
        load_audio(short.getvalue())


@pytest.mark.parametrize("seed", range(3))
def test_random_bytes_named_mp3_are_not_audio(tmp_path, seed):
    """FFmpeg picks an mp3 demuxer from the name and reports a stream at 0 Hz; that is no
    audio, not a sample rate to complain about."""
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(seed).bytes(100_000))
    with pytest.raises(InputError, match=r"^the file is not audio in a supported format"):
        load_audio(path)
