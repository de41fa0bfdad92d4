"""Offline render: the video follows the audio (frame count, durations), turns start at chunk
boundaries with their speaker, and `avatar render` writes a playable mp4 or exits 2 with one
clear line and no file."""

from __future__ import annotations

import argparse
import math
import re

import av
import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from app.characters import CharacterLibrary
from app.render import Turn, render, speak
from app.render_cli import add_parsers, cmd_render


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
def test_avatar_render_one_character(micro_engine, tmp_path, who):
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
