"""The console's preview renderer on its own: previews take turns in the order they came, one
per page and a bounded queue; a cancelled one stops and writes nothing; the folder of previews
goes with the process, and the next start removes those a killed process left. The render
itself is a stand-in that holds until released (render() is tested in tests/app)."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import web.console.preview
from app.render import Rendered, RenderStopped, Turn
from web.console.preview import (
    PREVIEW_MAX_SECONDS,
    PreviewRefused,
    PreviewRenderer,
    sweep_previews,
)

REPO = Path(__file__).resolve().parents[2]
BOXES = [(0.2, 0.2, 0.8, 0.8)]
TURNS = [Turn(0, np.zeros(1600, dtype=np.float32), 16000)]


class StandIn:
    """render() as the renderer calls it: preview k (its picture filled with k) starts, holds
    until released or stopped, and gives a one-frame clip."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.stopped: list[int] = []
        self.max_seconds: list[float] = []
        self.release = threading.Event()

    def __call__(self, engine, picture, face_boxes, turns, *, max_seconds, stop, progress):
        k = int(picture[0, 0, 0])
        self.started.append(k)
        self.max_seconds.append(max_seconds)
        while not self.release.wait(0.01):
            if stop.is_set():
                self.stopped.append(k)
                raise RenderStopped("the render was stopped")
        frames = np.full((1, 16, 16, 3), k, dtype=np.uint8)
        return Rendered(frames=frames, audio=np.zeros(640, dtype=np.float32), rate=16000, fps=25)


@pytest.fixture
def stand_in(monkeypatch) -> StandIn:
    fake = StandIn()
    monkeypatch.setattr(web.console.preview, "render", fake)
    return fake


def picture(k: int) -> np.ndarray:
    return np.full((16, 16, 3), k, dtype=np.uint8)


async def until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await asyncio.sleep(0.01)


def test_previews_take_turns_one_per_page_and_the_queue_is_bounded(tmp_path, stand_in):
    """A probe's 5-minute preview held every other user's behind it; now each page has one
    preview at a time, they render in the order they came, and the queue has a bound."""
    renderer = PreviewRenderer(lambda: "engine", temp_dir=tmp_path, max_waiting=2)
    ahead: dict[int, int] = {}

    def render(page: str, k: int):
        return renderer.render(
            page, picture(k), BOXES, TURNS, waiting=lambda n: ahead.setdefault(k, n)
        )

    async def scenario() -> list[Path]:
        first = asyncio.create_task(render("a", 1))
        await until(lambda: stand_in.started == [1])
        second = asyncio.create_task(render("b", 2))
        third = asyncio.create_task(render("c", 3))
        await until(lambda: len(ahead) == 2)
        with pytest.raises(PreviewRefused, match="your previous preview is still waiting"):
            await render("a", 4)
        with pytest.raises(PreviewRefused, match="2 previews are waiting, the most there may"):
            await render("d", 5)
        stand_in.release.set()
        done = await asyncio.gather(first, second, third)
        done.append(await render("a", 6))  # its first is done: page a may ask again
        return done

    paths = asyncio.run(scenario())
    assert stand_in.started == [1, 2, 3, 6]  # in the order they came
    assert ahead == {2: 1, 3: 2}
    assert stand_in.max_seconds == [PREVIEW_MAX_SECONDS] * 4 == [30.0] * 4
    assert all(p.parent == renderer.folder and p.stat().st_size > 0 for p in paths)


def test_a_cancelled_preview_stops_and_writes_nothing(tmp_path, stand_in):
    """Cancelling (gradio cancels the event's task) stopped nothing: the render ran on and
    its mp4 was written. Now it stops before its next chunk, and the next preview starts."""
    renderer = PreviewRenderer(lambda: "engine", temp_dir=tmp_path)

    async def scenario() -> Path:
        running = asyncio.create_task(renderer.render("a", picture(1), BOXES, TURNS))
        waiting = asyncio.create_task(renderer.render("b", picture(2), BOXES, TURNS))
        await until(lambda: stand_in.started == [1])
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert stand_in.stopped == [1]  # stopped before the cancel returned
        await until(lambda: stand_in.started == [1, 2])
        stand_in.release.set()
        return await waiting

    written = asyncio.run(scenario())
    assert list(renderer.folder.iterdir()) == [written]  # the cancelled one wrote nothing


def test_the_folder_goes_with_the_renderer_and_a_dead_process_folder_at_the_next_start(
    tmp_path,
):
    """Every server start left an avatar-previews-* folder behind (25 were found)."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    killed = tmp_path / f"avatar-previews-{int(dead.stdout)}-x1y2z3"  # its process is gone
    killed.mkdir()
    (killed / "preview-1.mp4").write_bytes(b"mp4")
    running = tmp_path / f"avatar-previews-{os.getpid()}-a1b2c3"  # this process: alive
    running.mkdir()
    old, new = tmp_path / "avatar-previews-oldname", tmp_path / "avatar-previews-newname"
    old.mkdir(), new.mkdir()  # folders named before the pid was in the name
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    other = tmp_path / "unrelated"
    other.mkdir()

    renderer = PreviewRenderer(None, temp_dir=tmp_path)
    assert renderer.folder.name.startswith(f"avatar-previews-{os.getpid()}-")
    assert sorted(tmp_path.iterdir()) == sorted([renderer.folder, running, new, other])
    renderer.close()
    assert not renderer.folder.exists()
    assert sweep_previews(tmp_path) == []  # the living process's and the recent ones stay

    collected = PreviewRenderer(None, temp_dir=tmp_path)
    folder = collected.folder
    del collected
    gc.collect()
    assert not folder.exists()  # a console that goes away takes its previews along


def test_the_folder_is_removed_when_the_process_exits(tmp_path):
    """A renderer still held when the interpreter exits (a server stopping) removes its folder."""
    started = subprocess.run(
        [sys.executable, "-c",
         "import sys; from web.console.preview import PreviewRenderer; "
         "kept = PreviewRenderer(None, temp_dir=sys.argv[1]); print(kept.folder)", str(tmp_path)],
        capture_output=True, text=True, cwd=REPO, timeout=120, check=True,
    )  # fmt: skip
    assert Path(started.stdout.strip()).parent == tmp_path
    assert list(tmp_path.iterdir()) == []
