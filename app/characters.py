"""Characters and scenes on disk: a picture with a face box plus a persona per character, and
scenes that put 2-4 characters in one frame. Looked up in the user's data directory first,
then in the defaults shipped in assets/."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from llm_bridge.persona import Persona

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
Box = tuple[float, float, float, float]


def check_id(kind: str, value: str) -> str:
    """Ids name directories, so they must not be able to escape one."""
    if not ID_PATTERN.match(value):
        raise ValueError(
            f"{kind} id {value!r} is not valid: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


@dataclass(frozen=True)
class Character:
    id: str
    persona: Persona
    image: Path  # the reference picture
    face_box: Box  # (x0, y0, x1, y1) fractions of the picture

    def picture(self) -> np.ndarray:
        """[H, W, 3] uint8 RGB."""
        with Image.open(self.image) as im:
            return np.asarray(im.convert("RGB"))


@dataclass(frozen=True)
class Scene:
    id: str
    name: str
    characters: tuple[Character, ...]
    picture: np.ndarray  # [H, W, 3] uint8, all characters in one frame
    face_boxes: tuple[Box, ...]  # per character, fractions of the picture


def side_by_side(characters: tuple[Character, ...], size: int = 512) -> tuple[np.ndarray, list]:
    """Compose square portraits into one square frame, one column each, vertically centred
    (the layout the embedded model was trained on for two characters)."""
    k = len(characters)
    cell = size // k
    top = (size - cell) // 2
    pictures = [c.picture() for c in characters]
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = pictures[0][0, 0]  # the first picture's corner colour around the tiles
    boxes = []
    for i, (c, pic) in enumerate(zip(characters, pictures, strict=True)):
        tile = np.asarray(Image.fromarray(pic).resize((cell, cell), Image.Resampling.LANCZOS))
        canvas[top : top + cell, i * cell : (i + 1) * cell] = tile
        x0, y0, x1, y1 = c.face_box
        boxes.append(
            ((i + x0) / k, (top + y0 * cell) / size, (i + x1) / k, (top + y1 * cell) / size)
        )
    return canvas, boxes


class CharacterLibrary:
    """Read-only lookups over the data directory (if any) and the shipped defaults."""

    def __init__(self, *, roots: tuple[Path, ...] = (ASSETS,)):
        self.roots = roots

    def _find(self, kind: str, ident: str, filename: str) -> Path:
        check_id(kind, ident)
        for root in self.roots:
            path = root / f"{kind}s" / ident / filename
            if path.is_file():
                return path
        known = ", ".join(self.ids(kind)) or "none"
        raise LookupError(f"no {kind} {ident!r}; known {kind}s: {known}")

    def ids(self, kind: str) -> list[str]:
        found = set()
        for root in self.roots:
            folder = root / f"{kind}s"
            if folder.is_dir():
                found |= {p.name for p in folder.iterdir() if ID_PATTERN.match(p.name)}
        return sorted(found)

    def character(self, ident: str) -> Character:
        path = self._find("character", ident, "character.json")
        data = json.loads(path.read_text())
        box = tuple(float(v) for v in data["face_box"])
        if len(box) != 4:
            raise ValueError(f"{path}: face_box needs 4 numbers (x0, y0, x1, y1)")
        return Character(
            ident, Persona.from_dict(data["persona"]), path.parent / data["image"], box
        )

    def scene(self, ident: str) -> Scene:
        path = self._find("scene", ident, "scene.json")
        data = json.loads(path.read_text())
        characters = tuple(self.character(c) for c in data["characters"])
        if not 2 <= len(characters) <= 4:
            raise ValueError(f"{path}: a scene has 2 to 4 characters, not {len(characters)}")
        picture, boxes = side_by_side(characters)
        return Scene(ident, data.get("name", ident), characters, picture, tuple(boxes))
