"""Offline render: the video follows the audio (frame count, durations), turns start at chunk
boundaries with their speaker, and `avatar render` writes a playable mp4 or exits 2 with one
clear line and no file."""

from __future__ import annotations

import argparse
import math
import re
import subprocess
import threading

import av
import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from app.characters import CharacterLibrary
from app.render import RenderStopped, Turn, render, speak
from app.render_cli import add_parsers, cmd_render
from avatar_engine.config import Preset


def tone(seconds: float, rate: int, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="avatar")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["render", *argv])


def mp4_facts(path) -> tuple[int, float, float]:
    """(decoded video frames, video duration s, audio duration s) of an mp4."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        durations = (float(s.duration * s.time_base) for s in (video, audio))
        frames = sum(1 for _ in container.decode(video=0))
    return frames, *durations


def test_two_turns_follow_each_other_at_chunk_boundaries(micro_engine):
    """A 16 kHz turn, then a 24 kHz one by the other character: one 24 kHz track, the second
    turn at the first chunk after the first turn's last, and frames exactly to the end."""
    g, fps = micro_engine.geometry, micro_engine.fps
    first, second = tone(0.5, 16000), tone(0.3, 24000, hz=300.0)
    calls = []
    picture = np.full((96, 96, 3), 128, dtype=np.uint8)
    boxes = [(0.0, 0.25, 0.5, 0.75), (0.5, 0.25, 1.0, 0.75)]
    out = render(
        micro_engine,
        picture,
        boxes,
        [Turn(0, first, 16000), Turn(1, second, 24000)],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert out.rate == 24000 and out.fps == fps
    second_chunk = g.chunk_of_frame(math.ceil(0.5 * fps) - 1) + 1
    second_start = g.chunk_start_frame(second_chunk) * 24000 // fps
    end = second_start + len(second)
    assert len(out.frames) == math.ceil(end * fps / 24000)
    assert len(out.audio) == len(out.frames) * 24000 // fps  # padded to the last frame's end
    assert np.array_equal(out.audio[second_start:end], second)
    assert not out.audio[round(0.5 * 24000) + 50 : second_start].any()  # silence between
    assert not out.audio[end:].any()
    assert out.frames.dtype == np.uint8 and out.frames.shape[1:] == (64, 64, 3)
    assert out.frames.std(axis=0).mean() > 1.0  # generated frames move (not one repeated)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and calls[-1] == (len(out.frames), len(out.frames))


def test_render_refuses_a_busy_engine_and_a_speaker_outside_the_scene(micro_engine):
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="speaker 1 is not one of the 1 characters"):
        render(micro_engine, picture, [(0.2, 0.2, 0.8, 0.8)], [Turn(1, tone(0.5, 16000), 16000)])
    with micro_engine.stream_lock, pytest.raises(RuntimeError, match="streaming for someone"):
        render(micro_engine, picture, [(0.2, 0.2, 0.8, 0.8)], [Turn(0, tone(0.5, 16000), 16000)])


def test_avatar_render_a_scene_from_a_script(micro_engine, tmp_path, capsys):
    """`--scene duo --script`: ada speaks text in her espeak voice, then bo plays a wav."""
    soundfile.write(tmp_path / "reply.wav", tone(0.3, 22050), 22050)
    script = tmp_path / "script.txt"
    script.write_text("# two turns\nada: Hello there.\n\nbo: reply.wav\n")
    out = tmp_path / "duo.mp4"
    args = parse("--scene", "duo", "--script", str(script), "-o", str(out))
    args.data = tmp_path / "no-library"  # the shipped defaults only
    assert cmd_render(args, engine=micro_engine) == 0

    g, fps = micro_engine.geometry, micro_engine.fps
    ada = CharacterLibrary().character("ada").persona
    spoken, rate = speak(ada, "Hello there.")  # espeak-ng is deterministic
    second_chunk = g.chunk_of_frame(math.ceil(len(spoken) * fps / rate) - 1) + 1
    audio_s = g.chunk_start_frame(second_chunk) / fps + 0.3
    frames, video_s, sound_s = mp4_facts(out)
    assert frames == math.ceil(audio_s * fps - 1e-9)
    assert video_s == pytest.approx(frames / fps)
    assert abs(sound_s - audio_s) <= 1 / fps
    assert f"{frames} frames" in capsys.readouterr().out


@pytest.mark.parametrize("who", ["character", "photo", "faceless image"])
def test_avatar_render_one_character(micro_engine, tmp_path, capsys, who):
    soundfile.write(tmp_path / "line.wav", tone(0.7, 16000), 16000)
    picture = tmp_path / "picture.png"
    if who == "photo":  # a real photo: its detected face is framed and speaks
        Image.fromarray(data.astronaut()).resize((256, 256)).save(picture)
    else:  # no face found: the centre of the picture speaks
        Image.new("RGB", (120, 90), (200, 180, 160)).save(picture)
    chosen = ["--character", "ada"] if who == "character" else ["--image", str(picture)]
    out = tmp_path / "one.mp4"
    args = parse(*chosen, "--audio", str(tmp_path / "line.wav"), "-o", str(out))
    args.data = tmp_path / "no-library"
    assert cmd_render(args, engine=micro_engine) == 0
    frames, video_s, sound_s = mp4_facts(out)
    assert frames == math.ceil(0.7 * micro_engine.fps)
    assert abs(video_s - 0.7) <= 1 / micro_engine.fps and abs(sound_s - 0.7) <= 1 / micro_engine.fps
    no_face = "avatar render: no face was found in picture.png; the centre of the picture speaks"
    assert (no_face in capsys.readouterr().err) == (who == "faceless image")


def bad_png(tmp_path) -> str:
    path = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    path.write_bytes(path.read_bytes()[:300])
    return str(path)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("unknown character", "no character 'zed'; known characters: ada"),
        ("bad audio", "not audio in a supported format"),
        ("bad image", "damaged or truncated"),
        ("missing output directory", "output directory .* does not exist"),
        ("script names a stranger", "script line 1: no character 'zed' here; use ada, bo"),
        ("scene with one audio", "--scene needs a --script"),
        ("model missing", "lacks dit.safetensors, vae.safetensors, audio.safetensors"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_file(micro_engine, tmp_path, capsys, case, message):
    good_wav, text = tmp_path / "line.wav", tmp_path / "notes.wav"
    soundfile.write(good_wav, tone(0.5, 16000), 16000)
    text.write_text("not a sound\n" * 20)
    script = tmp_path / "script.txt"
    script.write_text("zed: hello\n")
    out = tmp_path / "out.mp4"
    argv = {
        "unknown character": ["--character", "zed", "--audio", str(good_wav)],
        "bad audio": ["--character", "ada", "--audio", str(text)],
        "bad image": ["--image", bad_png(tmp_path), "--audio", str(good_wav)],
        "missing output directory": ["--character", "ada", "--audio", str(good_wav)],
        "script names a stranger": ["--scene", "duo", "--script", str(script)],
        "scene with one audio": ["--scene", "duo", "--audio", str(good_wav)],
        "model missing": ["--character", "ada", "--audio", str(good_wav)],
    }[case]
    if case == "missing output directory":
        out = tmp_path / "nowhere" / "out.mp4"
    args = parse(*argv, "-o", str(out), "--model", str(tmp_path / "no-model"))
    args.data = tmp_path / "no-library"
    engine = None if case == "model missing" else micro_engine
    assert cmd_render(args, engine=engine) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("avatar render: ") and len(err.splitlines()) == 1
    assert re.search(message, err), err
    assert not out.exists() and not list(tmp_path.rglob("*.mp4"))


def test_a_script_is_held_to_the_audio_limit(micro_engine, tmp_path, capsys):
    """Each file under 300 s, together over it: refused at the turn that passes the limit,
    before anything is rendered (a probe rendered 13 x 290 s)."""
    for name in ("a.wav", "b.wav"):  # 160 s each, at 4 kHz to keep the files small
        soundfile.write(tmp_path / name, np.zeros(160 * 4000, dtype=np.int16), 4000)
    script = tmp_path / "script.txt"
    script.write_text("ada: a.wav\nbo: b.wav\nada: Never reached.\n")
    out = tmp_path / "long.mp4"
    args = parse("--scene", "duo", "--script", str(script), "-o", str(out))
    args.data = tmp_path / "no-library"
    submitted = []
    engine = SpyEngine(micro_engine, on_submit=lambda: submitted.append(1))
    assert cmd_render(args, engine=engine) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "avatar render: script line 2: the script's speech reaches 320.0 s; the limit is 300 s "
        "in all, as for one --audio file"
    )
    assert not submitted and not out.exists()


class SpyEngine:
    """An engine whose runtime calls `on_submit` before each chunk it is given."""

    def __init__(self, engine, *, on_submit):
        self._engine, self._on_submit = engine, on_submit

    def __getattr__(self, name):
        return getattr(self._engine, name)

    @property
    def runtime(self):
        spy = self

        class Runtime:
            def __getattr__(self, name):
                return getattr(spy._engine.runtime, name)

            def submit(self, *inputs):
                spy._on_submit()
                return spy._engine.runtime.submit(*inputs)

        return Runtime()


@pytest.mark.parametrize("when", ["rendering", "saving"])
def test_ctrl_c_exits_130_with_one_line_and_no_file(micro_engine, tmp_path, capsys, when):
    """Ctrl-C printed a traceback; now one line, exit 130, no file (not even the .part.mp4
    being written), and the engine free again."""
    seconds = 1.0 if when == "rendering" else 0.3  # 3 chunks, or 1 to save
    soundfile.write(tmp_path / "line.wav", tone(seconds, 16000), 16000)
    out = tmp_path / "cut.mp4"
    args = parse("--character", "ada", "--audio", str(tmp_path / "line.wav"), "-o", str(out))
    args.data = tmp_path / "no-library"
    chunks, frames = [], []

    def interrupt_at_the_second_chunk():
        chunks.append(1)
        if when == "rendering" and len(chunks) == 2:
            raise KeyboardInterrupt

    def interrupt_mid_file(*args, **kwargs):
        frames.append(1)
        if len(frames) == 3:
            raise KeyboardInterrupt
        return from_ndarray(*args, **kwargs)

    from_ndarray = av.VideoFrame.from_ndarray
    with pytest.MonkeyPatch.context() as patch:
        if when == "saving":
            patch.setattr(av.VideoFrame, "from_ndarray", interrupt_mid_file)
        engine = SpyEngine(micro_engine, on_submit=interrupt_at_the_second_chunk)
        assert cmd_render(args, engine=engine) == 130
    assert len(frames) == (3 if when == "saving" else 0)
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "avatar render: interrupted; nothing was written"
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.mp4"))  # neither the mp4 nor its .part.mp4
    assert not micro_engine.stream_lock.locked()  # the engine is free for the next render


def test_render_stops_when_asked_and_cuts_at_max_seconds(micro_engine):
    picture = np.full((64, 64, 3), 128, dtype=np.uint8)
    box = [(0.2, 0.2, 0.8, 0.8)]
    speech = [Turn(0, tone(1.0, 16000), 16000)]
    cut = render(micro_engine, picture, box, speech, max_seconds=0.2)
    assert len(cut.frames) == round(0.2 * micro_engine.fps) and len(cut.audio) == 3200

    stop, submitted = threading.Event(), []

    def submit_one_then_stop():
        submitted.append(1)
        stop.set()  # as if cancelled while the first chunk renders

    spy = SpyEngine(micro_engine, on_submit=submit_one_then_stop)
    with pytest.raises(RenderStopped, match="the render was stopped"):
        render(spy, picture, box, speech, stop=stop)
    assert len(submitted) == 1  # of 3 chunks
    assert not micro_engine.stream_lock.locked()


def test_the_shipped_model_renders_a_photo_at_its_output_size(tmp_path):
    """`avatar render` with the embedded model, as a user runs it: the video is the shipped
    output size, the picture outside the face's window never changes, and the lower face
    moves while the character speaks."""
    line = tmp_path / "line.wav"
    subprocess.run(["espeak-ng", "-w", str(line), "Hello, how are you today?"], check=True)
    picture = tmp_path / "photo.png"
    Image.fromarray(data.astronaut()).save(picture)
    out = tmp_path / "photo.mp4"
    args = parse("--image", str(picture), "--audio", str(line), "-o", str(out))
    args.data = tmp_path / "no-library"
    assert cmd_render(args) == 0
    with av.open(str(out)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    stream = Preset.from_name("tiny").stream
    assert frames.shape[1:] == (stream.output_height, stream.output_width, 3) == (512, 512, 3)
    moving = frames.astype(np.float32).std(axis=0).mean(axis=-1)  # [H, W] over the render
    corner = moving[:48, :48].mean()  # background, outside any window around the face
    lower_face = moving[300:420, 190:330].mean()  # mouth and chin of the framed face
    assert corner < 1.0  # h264's noise only
    assert lower_face > 5 * max(corner, 0.5)
