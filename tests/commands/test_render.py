"""`avatar render` writes a playable mp4 or exits 2 with one clear line and no file."""

from __future__ import annotations

import argparse
import math
import re
import subprocess

import av
import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from app.characters import CharacterLibrary
from app.render import speak
from avatar_engine.config import Preset
from commands.render import add_parsers, cmd_render
from tests.app.render_doubles import SpyEngine, tone


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
