"""The evaluation's two pools. *dev* is for choosing settings; *test* is reported in the model
card and touched once per shipped model. Nothing in either is used in training: the real
photographs ship in PyPI wheels the training never reads, the test voices come from a
synthesiser (flite) the training data never used, and the drawn characters from seeds no
training run draws.
"""

from __future__ import annotations

import importlib.util
import io
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import soundfile
import torch

from avatar_engine.audio.resample import resample
from avatar_engine.framing import Portrait, photo_portrait
from avatar_engine.training.data.clips import in_slot
from avatar_engine.training.data.portraits import background, draw_portrait
from avatar_engine.training.data.speech import HELD_OUT_TEXTS, espeak
from avatar_engine.training.judge.faces import INSTALL_HINT

FACE_ZOOM = 0.5  # the face's width as a fraction of the portrait, as the app crops uploads


@dataclass(frozen=True)
class Photo:
    """A real photograph inside an installed package, and one face in it."""

    name: str
    package: str
    path: str  # inside the package's folder
    face: tuple[int, int, int]  # (row, col, side) in pixels, as detect_faces reports it

    def portrait(self, size: int) -> Portrait:
        p = photo_portrait(_photo(self.package, self.path), self.face, size, zoom=FACE_ZOOM)
        return Portrait(p.image, p.face_box, p.mouth, p.eyes, self.name)


@cache
def _photo(package: str, path: str) -> np.ndarray:
    from PIL import Image

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the evaluation's photographs need the package {package}: "
                           f"{INSTALL_HINT}")  # fmt: skip
    with Image.open(Path(spec.submodule_search_locations[0]) / path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Drawn:
    """A procedurally drawn character from a seed no training run uses."""

    name: str
    seed: int

    def portrait(self, size: int) -> Portrait:
        p = draw_portrait(np.random.default_rng(self.seed), size)
        return Portrait(p.image, p.face_box, p.mouth, p.eyes, self.name)


@dataclass(frozen=True)
class Voice:
    """A speech synthesiser's voice."""

    synth: str  # "flite" or "espeak"
    name: str

    def speak(self, text: str, rate: int) -> np.ndarray:
        """[S] float32 at `rate` Hz."""
        if self.synth == "espeak":
            wave, source = espeak(text, voice=self.name)
        else:
            wave, source = _flite(text, self.name)
        return resample(wave.astype(np.float32), source, rate)

    @property
    def label(self) -> str:
        return f"{self.synth}:{self.name}"


def _flite(text: str, voice: str) -> tuple[np.ndarray, int]:
    binary = shutil.which("flite")
    if binary is None:
        raise RuntimeError("flite is not installed: install the Debian package flite "
                           "(bin/bootstrap eval does it when run as root)")  # fmt: skip
    wav = subprocess.run(
        [binary, "-voice", voice, "-t", text, "-o", "/dev/stdout"], capture_output=True, check=True
    ).stdout
    wave, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    return wave, rate


@dataclass(frozen=True)
class Pool:
    name: str
    portraits: tuple[Photo | Drawn, ...]
    voices: tuple[Voice, ...]
    texts: tuple[str, ...]
    pair: tuple[str, str]  # two portraits' names, side by side for the two-character figure

    def __post_init__(self):
        if len(self.voices) < 2:
            raise ValueError("a pool needs two voices at least: the other-audio control scores "
                             "each clip against another utterance")  # fmt: skip

    def source(self, name: str) -> Photo | Drawn:
        return next(p for p in self.portraits if p.name == name)

    def pair_scene(self, size: int) -> tuple[torch.Tensor, list[Portrait]]:
        """The pair's two portraits at half size, side by side, on a plain background."""
        canvas = background(np.random.default_rng(0), size)
        canvas[:] = canvas.mean(dim=(0, 1))
        half, top = size // 2, size // 4
        people = []
        for slot, name in enumerate(self.pair):
            p = self.source(name).portrait(half)
            canvas[top : top + half, slot * half : (slot + 1) * half] = p.image
            people.append(in_slot(p, slot))
        return canvas, people


FRIENDS = "data/images/t1.jpg"  # insightface's group photo of six actors
TEST = Pool(
    "test",
    (
        Photo("rachel", "insightface", FRIENDS, (276, 52, 108)),
        Photo("ross", "insightface", FRIENDS, (275, 454, 127)),
        Photo("chandler", "insightface", FRIENDS, (358, 733, 111)),
        Photo("phoebe", "insightface", FRIENDS, (271, 1111, 122)),
        Photo("ancelotti", "ultralytics", "assets/zidane.jpg", (146, 945, 111)),
        Photo("hanks", "insightface", "data/images/Tom_Hanks_54745.png", (17, 26, 68)),
        Drawn("drawn-a", 20_001),
        Drawn("drawn-b", 20_004),
    ),
    (Voice("flite", "slt"), Voice("flite", "awb"), Voice("flite", "rms")),
    (
        "Maybe we could meet by the old boat house at noon.",
        "Please bring the blue map and a few warm blankets.",
        "Oh, I see! You were waiting for me all along, weren't you?",
    ),
    ("rachel", "chandler"),
)
DEV = Pool(
    "dev",
    (
        Photo("hopper", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", (113, 168, 205)),
        Photo("monica", "insightface", FRIENDS, (170, 268, 100)),
        Photo("joey", "insightface", FRIENDS, (62, 865, 140)),
        Drawn("drawn-c", 10_000),
        Drawn("drawn-d", 10_002),
    ),
    (Voice("flite", "kal16"), Voice("espeak", "en+f5"), Voice("espeak", "en-us+m4")),
    HELD_OUT_TEXTS,
    ("hopper", "joey"),
)
POOLS = {p.name: p for p in (DEV, TEST)}
