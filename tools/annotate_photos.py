"""Landmark the training photos once, offline, and keep the result as data.

Run in its own environment (MediaPipe pins protobuf 4, which LiveKit's packages rule out in
the project's venv):

    python3.11 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14 scikit-image \
        matplotlib
    /tmp/mp/bin/python tools/annotate_photos.py

It writes avatar_engine/training/data/photos.json: per photo, its face box and the mouth and
eyes from MediaPipe's face mesh (Apache-2.0, its model inside the wheel), in pixels of the
picture. Training reads that file and never imports MediaPipe; the evaluation's judge (dlib)
stays a model the data never saw.
"""

from __future__ import annotations

import json
from pathlib import Path

import mediapipe as mp
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "assets" / "training" / "photos"
OUT = ROOT / "avatar_engine" / "training" / "data" / "photos.json"

# Face-mesh vertex numbers (MediaPipe's canonical face model)
CORNERS = (61, 291)  # the lips' corners
INNER = (13, 14)  # inner upper lip, inner lower lip, on the midline
OUTER = (0, 17)  # outer upper lip, outer lower lip
EYES = ((33, 133), (362, 263))  # each eye's corners
FACE = (234, 454, 10, 152)  # left and right cheek edge, forehead top, chin


def pictures() -> dict[str, np.ndarray]:
    """The training photos, and the held-out photo that training's own checks speak with."""
    from matplotlib import cbook
    from skimage import data

    found = {"astronaut": data.astronaut()}
    with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
        found["grace_hopper"] = np.asarray(im.convert("RGB"))
    for path in sorted(PHOTOS.glob("*.jpg")):
        with Image.open(path) as im:
            found[path.stem] = np.asarray(im.convert("RGB"))
    return found


def landmarks(image: np.ndarray) -> np.ndarray:
    with mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        result = mesh.process(image)
    if not result.multi_face_landmarks:
        raise RuntimeError("no face found")
    h, w = image.shape[:2]
    return np.array([(p.x * w, p.y * h) for p in result.multi_face_landmarks[0].landmark])


def annotate(points: np.ndarray) -> dict:
    def at(i: int) -> list[float]:
        return [round(float(v), 1) for v in points[i]]

    left, right, top, chin = (points[i] for i in FACE)
    return {
        "face": [
            round(float(left[0]), 1),
            round(float(top[1]), 1),
            round(float(right[0]), 1),
            round(float(chin[1]), 1),
        ],  # fmt: skip
        "corners": [at(i) for i in CORNERS],
        "inner_lips": [at(i) for i in INNER],
        "outer_lips": [at(i) for i in OUTER],
        "eyes": [[at(a), at(b)] for a, b in EYES],
    }


def main() -> None:
    found = {name: annotate(landmarks(image)) for name, image in pictures().items()}
    lines = ",\n".join(f" {json.dumps(name)}: {json.dumps(marks)}" for name, marks in found.items())
    OUT.write_text("{\n" + lines + "\n}\n")
    print(f"wrote {OUT}: {', '.join(found)}")


if __name__ == "__main__":
    main()
