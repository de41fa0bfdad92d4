"""Previews: pictures with their face boxes drawn, and short renders (each speaker says a
line in turn) written to mp4 for the console's video player.

Renders are bounded: a preview lasts at most PREVIEW_MAX_SECONDS; previews render one at a
time in the order they came, each page (Gradio session) with at most one waiting or running,
and at most PREVIEW_MAX_WAITING waiting; a cancelled preview (the page's stop button, or the
event cancelled through Gradio's API) stops its render before the next chunk and writes
nothing. The mp4s live in a folder of this process, removed when it exits; one that a killed
process left is removed by the next console's start."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.avatar import AvatarEngine
from app.characters import Box
from app.render import Turn, render, speak
from llm_bridge.persona import Persona

BOX_COLOURS = ((255, 196, 0), (0, 200, 255), (255, 80, 160), (120, 230, 90))
KEEP_PREVIEWS_S = 3600.0  # gradio copies a preview into its cache; ours go after an hour
PREVIEW_MAX_SECONDS = 30.0  # a preview shows at most this much of the speech
PREVIEW_MAX_WAITING = 8  # previews queued behind the one rendering; more are refused
FOLDER_PREFIX = "avatar-previews-"  # + "<pid>-<random>" in the temp directory
LEGACY_FOLDER_AGE_S = 86400.0  # folders named without a pid (older versions) go after a day


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


def preview_owner(request: gr.Request | None) -> str:
    """Whose preview it is: the page's Gradio session (None: a direct call)."""
    if request is None or not request.session_hash:
        return "direct"
    return request.session_hash


def progress_reports(progress: Callable[..., Any]) -> dict[str, Callable]:
    """PreviewRenderer.render's `progress` and `waiting`, reported to a gr.Progress."""
    return {
        "progress": lambda done, total: progress((done, total), desc="Rendering", unit="frames"),
        "waiting": lambda ahead: progress(0, desc=f"Waiting for {ahead} preview(s) ahead"),
    }


class PreviewRefused(RuntimeError):
    """The preview queue is full, or this page already has a preview waiting or rendering."""


class PreviewRenderer:
    """Renders previews on the engine the factory gives (built on first use, then kept), one
    at a time and in the order they came.

    Args:
        temp_dir: where its folder of previews goes (default: the system's temp directory).
    """

    def __init__(
        self,
        engine_factory: Callable[[], AvatarEngine] | None,
        *,
        temp_dir: Path | None = None,
        max_seconds: float = PREVIEW_MAX_SECONDS,
        max_waiting: int = PREVIEW_MAX_WAITING,
    ) -> None:
        self._factory = engine_factory
        self._engine: AvatarEngine | None = None
        self._lock = threading.Lock()
        self.max_seconds, self.max_waiting = max_seconds, max_waiting
        root = Path(temp_dir if temp_dir is not None else tempfile.gettempdir())
        sweep_previews(root)
        self.folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-", dir=root))
        # removed by close(), when the renderer is collected, or when the process exits
        self._remove_folder = weakref.finalize(self, shutil.rmtree, self.folder, True)
        self._turn = asyncio.Lock()  # fair: waiters get it in the order they asked
        self._owners: set[str] = set()  # pages with a preview waiting or rendering

    @property
    def available(self) -> bool:
        return self._factory is not None

    def close(self) -> None:
        """Remove the folder of previews (the console is going away)."""
        self._remove_folder()

    def engine(self) -> AvatarEngine:
        if self._factory is None:
            raise ValueError("previews are off: this console was started without a model")
        with self._lock:
            if self._engine is None:
                self._engine = self._factory()
            return self._engine

    async def render(
        self,
        owner: str,
        picture: np.ndarray,
        face_boxes: Sequence[Box],
        turns: Sequence[Turn],
        *,
        progress: Callable[[int, int], None] | None = None,
        waiting: Callable[[int], None] | None = None,
    ) -> Path:
        """An mp4 of the turns spoken one after another, cut at max_seconds; its path. Waits
        for the previews that came first; cancelling the awaiting task stops the render
        before its next chunk, and nothing is written.

        Args:
            owner: the page asking (its Gradio session): one preview at a time each.
            waiting: told how many previews are ahead, when there are any.
        """
        self._join(owner)
        try:
            if waiting is not None and self._turn.locked():
                waiting(len(self._owners) - 1)
            async with self._turn:
                stop = threading.Event()
                task = asyncio.ensure_future(  # to_thread: gradio's progress reads contextvars
                    asyncio.to_thread(self._render, picture, face_boxes, turns, stop, progress)
                )
                try:
                    return await asyncio.shield(task)
                except asyncio.CancelledError:
                    stop.set()
                    await asyncio.wait([task])  # the engine is free when the lock is released
                    if not task.cancelled() and task.exception() is None:  # done just before
                        task.result().unlink(missing_ok=True)
                    raise
        finally:
            self._owners.discard(owner)

    def _join(self, owner: str) -> None:
        if owner in self._owners:
            raise PreviewRefused(
                "your previous preview is still waiting or rendering: wait for it, or stop it"
            )
        if len(self._owners) > self.max_waiting:
            raise PreviewRefused(
                f"{len(self._owners) - 1} previews are waiting, the most there may be: "
                "try again in a minute"
            )
        self._owners.add(owner)

    def _render(
        self,
        picture: np.ndarray,
        face_boxes: Sequence[Box],
        turns: Sequence[Turn],
        stop: threading.Event,
        progress: Callable[[int, int], None] | None,
    ) -> Path:
        rendered = render(
            self.engine(),
            picture,
            face_boxes,
            turns,
            max_seconds=self.max_seconds,
            stop=stop,
            progress=progress,
        )
        # another process's sweep may have taken the folder (a pid it could not see alive)
        self.folder.mkdir(exist_ok=True)
        self._prune()
        path = self.folder / f"preview-{uuid.uuid4().hex[:12]}.mp4"
        rendered.save(path)
        return path

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_PREVIEWS_S
        for old in self.folder.glob("preview-*.mp4"):
            if old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)


def sweep_previews(root: Path) -> list[Path]:
    """Remove the preview folders in `root` whose process is gone (killed before it could
    remove its own), and folders of older versions (no pid in the name) a day old; returns
    what it removed."""
    removed = []
    named = re.compile(re.escape(FOLDER_PREFIX) + r"(\d+)-")
    for folder in root.glob(f"{FOLDER_PREFIX}*"):
        try:
            info = folder.lstat()
        except FileNotFoundError:
            continue
        if folder.is_symlink() or not folder.is_dir() or info.st_uid != os.getuid():
            continue
        pid = named.match(folder.name)
        if pid is not None:
            gone = not _alive(int(pid.group(1)))
        else:
            gone = time.time() - info.st_mtime > LEGACY_FOLDER_AGE_S
        if gone:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's
    return True
