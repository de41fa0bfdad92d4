"""Previews: pictures with their face boxes drawn, and short renders (each speaker says a
line in turn) written to mp4 for the console's video player."""

from __future__ import annotations

import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.avatar import AvatarEngine
from app.characters import Box
from app.render import Turn, render, speak
from llm_bridge.persona import Persona

BOX_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 80, 160), (120, 230, 90))
KEEP_PREVIEWS_S = 3600.0  # gradio copies a preview into its cache; ours go after an hour


def draw_faces(image: np.ndarray, boxes: Sequence[Box], labels: Sequence[str]) -> np.ndarray:
    """The picture with each face box outlined and labelled (the console's face preview).

    Args:
        image: [H, W, 3] uint8 RGB; boxes as fractions of it.
    """
    canvas = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(canvas)
    h, w = image.shape[:2]
    width = max(2, min(h, w) // 160)
    font = ImageFont.load_default(size=max(12, min(h, w) // 24))
    for k, ((x0, y0, x1, y1), label) in enumerate(zip(boxes, labels, strict=True)):
        colour = BOX_COLOURS[k % len(BOX_COLOURS)]
        draw.rectangle((x0 * w, y0 * h, x1 * w, y1 * h), outline=colour, width=width)
        draw.text((x0 * w + 2 * width, y0 * h + width), label, fill=colour, font=font)
    return np.asarray(canvas)


def say(persona: Persona, text: str, *, speaker: int = 0) -> Turn:
    """`text` spoken by the persona's offline (espeak-ng) voice, as `speaker`'s turn."""
    if not text.strip():
        raise ValueError(f"{persona.name} has nothing to say in a preview: write a greeting")
    audio, rate = speak(persona, text)
    return Turn(speaker, audio, rate)


class PreviewRenderer:
    """Renders previews on the engine the factory gives (built on first use, then kept)."""

    def __init__(self, engine_factory: Callable[[], AvatarEngine] | None) -> None:
        self._factory = engine_factory
        self._engine: AvatarEngine | None = None
        self._lock = threading.Lock()
        self._folder = Path(tempfile.mkdtemp(prefix="avatar-previews-"))

    @property
    def available(self) -> bool:
        return self._factory is not None

    def engine(self) -> AvatarEngine:
        if self._factory is None:
            raise ValueError("previews are off: this console was started without a model")
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    def render(
        self,
        picture: np.ndarray,
        face_boxes: Sequence[Box],
        turns: Sequence[Turn],
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> Path:
        """An mp4 of the turns spoken one after another; its path (in a temp folder)."""
        rendered = render(self.engine(), picture, face_boxes, turns, progress=progress)
        self._prune()
        path = self._folder / f"preview-{uuid.uuid4().hex[:12]}.mp4"
        rendered.save(path)
        return path

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_PREVIEWS_S
        for old in self._folder.glob("preview-*.mp4"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
