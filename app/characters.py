"""Characters and scenes on disk: a picture with a face box plus a persona per character, and
scenes that put 2-4 characters in one frame, side by side or in one group photo. Looked up in
the given roots in order (the creators' data directory, app/store.py, or the defaults shipped
in assets/). Also turns an uploaded picture into a portrait cropped around its face."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avatar_engine import photo_portrait
from llm_bridge.persona import Persona

ASSETS = Path(__file__).resolve().parent.parent / "assets"
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
Box = tuple[float, float, float, float]
Face = tuple[int, int, int]  # a detected face: row, col, side in pixels
PORTRAIT_SIZE = 512  # stored pictures are square, like the defaults; the engine resizes them
FACE_ZOOM = 0.5  # the face's width as a fraction of a portrait (the defaults' framing)


def check_id(kind: str, value: str) -> str:
    """Ids name directories, so they must not be able to escape one."""
    if not isinstance(value, str):  # an API client may send anything, e.g. null
        raise ValueError(f"give a {kind} id (1-64 lowercase letters, digits, '-' or '_')")
    if not ID_PATTERN.match(value):
        raise ValueError(
            f"{kind} id {value!r} is not valid: use 1-64 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


def id_from_name(name: str) -> str:
    """A valid id made from a display name ("Dr. Zoë Ng" -> "dr-zoe-ng"); '/' and '.' become
    separators, so no name can make an id that leaves a directory."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:64].strip("-")
    return check_id("derived", slug or "unnamed")


@dataclass(frozen=True)
class Character:
    id: str
    persona: Persona
    image: Path  # the reference picture
    face_box: Box  # (x0, y0, x1, y1) fractions of the picture
    voice: Path | None = None  # a voice sample (mono wav) for previews and cloning voices
    revision: int = 0  # bumped by every save (app/store.py); defaults start at 0

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
    group_photo: bool = False  # True: one photo of them all; False: composed side by side
    revision: int = 0


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
                # One version's directory: the store swaps a link to save, and every file read
                # next must come from the version this one came from.
                return path.resolve()
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
        voice = data.get("voice")
        return Character(
            ident,
            Persona.from_dict(data["persona"]),
            path.parent / data["image"],
            box,
            voice=None if voice is None else path.parent / voice,
            revision=int(data.get("revision", 0)),
        )

    def scene(self, ident: str) -> Scene:
        path = self._find("scene", ident, "scene.json")
        data = json.loads(path.read_text())
        characters = tuple(self.character(c) for c in data["characters"])
        if not 2 <= len(characters) <= 4:
            raise ValueError(f"{path}: a scene has 2 to 4 characters, not {len(characters)}")
        name, revision = data.get("name", ident), int(data.get("revision", 0))
        if "picture" not in data:
            picture, placed = side_by_side(characters)
            return Scene(ident, name, characters, picture, tuple(placed), revision=revision)
        given = [tuple(float(v) for v in box) for box in data["face_boxes"]]
        if len(given) != len(characters) or any(len(box) != 4 for box in given):
            raise ValueError(f"{path}: face_boxes needs one (x0, y0, x1, y1) per character")
        with Image.open(path.parent / data["picture"]) as im:
            picture = np.asarray(im.convert("RGB"))
        boxes = tuple((x0, y0, x1, y1) for x0, y0, x1, y1 in given)
        return Scene(ident, name, characters, picture, boxes, group_photo=True, revision=revision)


@dataclass(frozen=True)
class FaceCrop:
    """A picture cut to what the store keeps: a square around the chosen face(s)."""

    image: np.ndarray  # [S, S, 3] uint8 RGB
    face_boxes: tuple[Box, ...]  # per face, fractions of `image`


def crop_portrait(image: np.ndarray, face: Face | None, size: int = PORTRAIT_SIZE) -> FaceCrop:
    """A square portrait framed like the defaults around `face`; with no face (the detector
    misses drawn faces), the centre square with its middle as the face.

    Args:
        image: [H, W, 3] uint8 RGB.
    """
    if face is None:
        margin = (1 - FACE_ZOOM) / 2
        return group_picture(image, [], size, centre=(margin, margin, 1 - margin, 1 - margin))
    portrait = photo_portrait(image, face, size, zoom=FACE_ZOOM)
    pixels = (portrait.image * 255).round().to(torch.uint8).numpy()  # [S, S, 3]
    x0, y0, x1, y1 = (min(max(v, 0.0), 1.0) for v in portrait.face_box)
    return FaceCrop(pixels, ((x0, y0, x1, y1),))


def group_picture(
    image: np.ndarray, faces: list[Face], size: int = PORTRAIT_SIZE, *, centre: Box | None = None
) -> FaceCrop:
    """A square framing the chosen faces with a face's width of margin around them, resized,
    with each face's box in it in the order given. With no faces, the photo's centre square
    and `centre` as its one box. Where the square reaches past the photo (faces far apart in a
    wide photo), the photo's edges are extended, so no face is ever cut.

    Args:
        image: [H, W, 3] uint8 RGB.
    """
    h, w = image.shape[:2]
    if faces:
        r0, c0 = min(r for r, _, _ in faces), min(c for _, c, _ in faces)
        r1, c1 = max(r + s for r, _, s in faces), max(c + s for _, c, s in faces)
        margin = max(s for _, _, s in faces)
        side = min(max(r1 - r0, c1 - c0) + 2 * margin, max(h, w))
        top = _place(round((r0 + r1 - side) / 2), side, h)
        left = _place(round((c0 + c1 - side) / 2), side, w)
    else:
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
    pad = ((max(-top, 0), max(top + side - h, 0)), (max(-left, 0), max(left + side - w, 0)))
    padded = np.pad(image, (*pad, (0, 0)), mode="edge")
    y, x = top + pad[0][0], left + pad[1][0]
    square = Image.fromarray(np.ascontiguousarray(padded[y : y + side, x : x + side]))
    resized = np.asarray(square.resize((size, size), Image.Resampling.LANCZOS))
    boxes = [centre] if centre is not None else []
    boxes += [
        ((c - left) / side, (r - top) / side, (c + s - left) / side, (r + s - top) / side)
        for r, c, s in faces
    ]
    return FaceCrop(resized, tuple(boxes))


def _place(start: int, side: int, length: int) -> int:
    """Where a square's side starts along one axis: inside the photo when it fits there,
    else centred on the photo (reaching past both ends)."""
    if side <= length:
        return min(max(start, 0), length - side)
    return (length - side) // 2
