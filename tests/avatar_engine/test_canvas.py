"""The frames people see: the model animates a window of the picture around the faces, and
its frames come back inside the full-resolution picture. Where a frame still shows the
picture, the picture's own detail is back; a changed region stays changed; outside the window
the picture is untouched, and the window's edge leaves no seam."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from avatar_engine.canvas import (
    FACE_WIDTH_SHARE,
    Canvas,
    Composite,
    Window,
    face_window,
    feather,
)
from avatar_engine.chunks import VideoChunk
from avatar_engine.config import Preset, StreamConfig
from avatar_engine.embedded import EmbeddedModel
from avatar_engine.scene import fit_image, scene_from_image
from avatar_engine.training.data.portraits import draw_portrait
from avatar_engine.vae.detail import decode_still, encode_still
from avatar_engine.vae.video import to_uint8_frames

TINY = Preset.from_name("tiny")
OUT = (TINY.stream.output_height, TINY.stream.output_width)
MODEL = (TINY.stream.height, TINY.stream.width)
FACE = (0.35, 0.35, 0.65, 0.6)  # a face smaller than the portraits frame it: the window zooms


@pytest.fixture(scope="module")
def vae():
    return EmbeddedModel().check().spec().build_vae("cpu")


@pytest.fixture(scope="module")
def picture() -> torch.Tensor:
    portrait = draw_portrait(np.random.default_rng(3), OUT[0])
    return (portrait.image * 255).round().to(torch.uint8)[None]  # [1, H, W, 3]


@pytest.fixture(scope="module")
def framed(vae, picture):
    """(canvas, the window's picture at the model's size) of FACE in `picture`."""
    window = face_window(OUT, MODEL, [FACE])
    small = fit_image(window.of(picture[0]).contiguous(), MODEL)[None]  # [1, h, w, 3]
    return Canvas.of(picture, window, MODEL, decode_still(vae, encode_still(vae, small))), small


def chunk_of(frames: torch.Tensor) -> VideoChunk:
    t = frames.shape[1]
    return VideoChunk(0, 0, frames, torch.arange(t).double() / 25, torch.zeros(1, 1).bool())


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    err = (a.float() - b.float()).square().mean()
    return float(10 * torch.log10(255.0**2 / err))


def test_the_window_frames_the_faces_as_the_training_portraits_do():
    window = face_window(OUT, MODEL, [FACE])
    assert window.height == window.width  # the model's aspect ratio
    assert window.width == round((FACE[2] - FACE[0]) * OUT[1] / FACE_WIDTH_SHARE)
    x0, y0, x1, y1 = window.box_in(FACE, OUT)
    assert (x1 - x0) == pytest.approx(FACE_WIDTH_SHARE, abs=0.01)
    assert (x0 + x1) / 2 == pytest.approx(0.5, abs=0.01) and 0 < y0 < y1 < 1
    # A face filling the picture gets the whole picture; one at its edge a window inside it.
    assert face_window(OUT, MODEL, [(0.1, 0.1, 0.9, 0.95)]) == Window(0, 0, *OUT)
    edge = face_window(OUT, MODEL, [(0.0, 0.7, 0.2, 0.95)])
    assert edge.left == 0 and edge.top + edge.height == OUT[0]
    assert edge.height >= MODEL[0]  # never a window smaller than the model's frame
    # At the model's own size nothing is cut out.
    assert face_window(MODEL, MODEL, [FACE]) == Window(0, 0, *MODEL)


def test_the_window_fades_only_into_the_picture():
    inner = feather(Window(100, 100, 200, 200), OUT)
    assert inner[100, 100] == 1 and inner[0, 100] < 0.05 and inner[100, -1] < 0.05
    corner = feather(Window(0, 0, 200, 200), OUT)
    assert corner[0, 0] == 1 and corner[100, -1] < 0.05  # the frame's own edges do not fade
    assert torch.equal(feather(Window(0, 0, *OUT), OUT), torch.ones(OUT))


def test_a_held_still_picture_comes_back_as_the_picture_at_full_resolution(vae, framed):
    canvas, small = framed
    still = small.permute(0, 3, 1, 2)[:, :, None].expand(-1, -1, 33, -1, -1) / 127.5 - 1
    with torch.inference_mode():
        frames = to_uint8_frames(vae.decode(vae.encode_video(still))[0])  # 9 latent frames
    steady = slice(16, None)  # past the STILL_LATENT_FRAMES the detail was measured at
    shown = canvas.present(chunk_of(frames[:, steady])).frames
    raw = canvas.present(chunk_of(frames[:, steady]), detail=False).frames
    assert shown.shape[2:4] == OUT
    window = canvas.window
    assert psnr(window.of(raw[0]), window.of(canvas.picture)) < 30  # the model's size blurs
    assert psnr(window.of(shown[0]), window.of(canvas.picture)) > 40
    outside = (
        shown[0, :, : window.top],
        canvas.picture[:, : window.top].expand_as(shown[0, :, : window.top]),
    )
    assert torch.equal(*outside)  # above the window: the picture itself


def test_where_a_frame_changed_its_change_is_kept(framed):
    canvas, _ = framed
    frame = canvas.still.permute(0, 2, 3, 1).round().to(torch.uint8)[:, None].clone()
    frame[:, :, 70:100, 40:90] = 20  # a dark open mouth
    shown = canvas.present(chunk_of(frame)).frames
    win = canvas.window
    scale = win.height / MODEL[0]
    rows = slice(win.top + round(75 * scale), win.top + round(95 * scale))
    cols = slice(win.left + round(45 * scale), win.left + round(85 * scale))
    assert (shown[:, :, rows, cols].float() - 20).abs().mean() < 2.0  # no picture painted over
    above = slice(win.top + round(10 * scale), win.top + round(50 * scale))
    assert psnr(shown[0, :, above, cols], canvas.picture[:, above, cols]) > 40


def test_the_tiny_preset_shows_a_larger_picture_with_its_detail(vae, picture):
    scene = scene_from_image(vae, TINY.dit, TINY.stream, picture[0], [FACE])
    assert scene.canvas is not None and scene.canvas.size == OUT == (512, 512)
    (canvas,) = scene.canvas.canvases
    assert canvas.still is not None
    scene.validate(TINY.dit, TINY.stream)
    x0, y0, x1, y1 = canvas.window.box_in(FACE, OUT)
    mask = scene.face_masks[0, 0]  # the face, moved into the window, fills its share of it
    assert float(mask.mean()) == pytest.approx((x1 - x0) * (y1 - y0), abs=0.1)
    assert canvas.window == face_window(OUT, MODEL, [FACE])
    assert not Preset.from_name("wan2.1-1.3b").stream.restore_detail
    with pytest.raises(ValueError, match="same aspect ratio"):
        StreamConfig(height=128, width=128, output_height=512, output_width=256)


def test_the_tiny_scene_conditions_later_frames_on_the_picture_held_still(vae, picture):
    """The causal VAE encodes frame 0 alone and later frames in groups: a still picture's later
    latents differ from its image latent by about a latent's size, and the scene gives the DiT
    one within a tenth of that of where they settle."""
    scene = scene_from_image(vae, TINY.dit, TINY.stream, picture[0], [(0.2, 0.2, 0.8, 0.8)])
    small = fit_image(picture[0], MODEL)[None]  # that face's window is the whole picture
    assert TINY.dit.still_reference and scene.blank_latent is not None
    still = scene.blank_latent
    assert torch.equal(still, encode_still(vae, small)[:, :, -1].float())
    frames = small.permute(0, 3, 1, 2)[:, :, None].expand(-1, -1, 37, -1, -1) / 127.5 - 1
    with torch.inference_mode():
        settled = vae.encode_video(frames)[:, :, -1]  # 10 latent frames in

    def rms(x: torch.Tensor) -> float:
        return float(x.square().mean().sqrt())

    image_error = rms(scene.reference_latent - settled)
    assert image_error > 0.3 * rms(settled)
    assert rms(still - settled) < 0.1 * image_error


def test_only_the_faces_are_the_models(framed):
    """Whatever the model draws away from the faces, people see their own picture there."""
    whole, _ = framed
    still = whole.still.permute(0, 2, 3, 1)  # [1, h, w, 3]
    canvas = Canvas.of(whole.picture, whole.window, MODEL, still, [FACE])
    dark = torch.zeros(1, 1, *MODEL, 3, dtype=torch.uint8)  # a frame unlike the picture
    shown = canvas.present(chunk_of(dark)).frames[0, 0]  # [H, W, 3]
    x0, y0, x1, y1 = FACE
    cy, cx = round((y0 + y1) / 2 * OUT[0]), round((x0 + x1) / 2 * OUT[1])
    assert shown[cy, cx].float().mean() < 10  # on the face: the model's frame
    win = canvas.window
    corner = shown[win.top : win.top + 8, win.left : win.left + 8]
    assert torch.equal(corner, whole.picture[0, win.top : win.top + 8, win.left : win.left + 8])
    assert 0 < canvas.blend.sum() < whole.blend.sum()
    assert canvas.paste.height < whole.paste.height  # the work is over the faces alone


def test_each_face_of_a_pair_gets_a_window_of_its_own(vae, picture):
    """Two faces side by side: each is framed as a lone face is (one window around both would
    draw each at about half that size), drawn as one batch, and both come back in one picture."""
    left, right = (0.08, 0.3, 0.38, 0.6), (0.52, 0.32, 0.82, 0.62)
    scene = scene_from_image(vae, TINY.dit, TINY.stream, picture[0], [left, right])
    scene.validate(TINY.dit, TINY.stream)
    assert (scene.batch, scene.streams, scene.num_characters) == (2, 1, 2)
    assert scene.cast.tolist() == [[0], [1]] and scene.face_masks.shape[:2] == (2, 1)
    for canvas, box in zip(scene.canvas.canvases, (left, right), strict=True):
        assert canvas.window == face_window(OUT, MODEL, [box])
        x0, _, x1, _ = canvas.window.box_in(box, OUT)
        assert x1 - x0 == pytest.approx(FACE_WIDTH_SHARE, abs=0.01)
    # Character 1 speaks: its window hears it, character 0's hears character 0 (silent).
    features = torch.arange(2.0)[None, :, None, None, None].expand(1, 2, 3, 5, 4)
    routed, talking = scene.route(features, torch.tensor([[False, True]]))
    assert routed.shape == (2, 1, 3, 5, 4) and routed[1].eq(1).all() and routed[0].eq(0).all()
    assert talking.tolist() == [[False], [True]]
    # Dark frames in both windows: both faces dark, the picture between them untouched.
    dark = torch.zeros(2, 1, *MODEL, 3, dtype=torch.uint8)
    shown = scene.canvas.present(chunk_of(dark)).frames
    assert shown.shape == (1, 1, *OUT, 3)
    for x0, y0, x1, y1 in (left, right):
        cy, cx = round((y0 + y1) / 2 * OUT[0]), round((x0 + x1) / 2 * OUT[1])
        assert shown[0, 0, cy, cx].float().mean() < 10
    gap = (slice(round(0.1 * OUT[0]), round(0.2 * OUT[0])), round(0.45 * OUT[1]))
    assert torch.equal(shown[0, 0][gap], picture[0][gap])
    with pytest.raises(ValueError, match="1 decoded windows for a picture of 2"):
        scene.canvas.present(chunk_of(dark[:1]))
    with pytest.raises(ValueError, match="cast names each character once"):
        replace(scene, cast=torch.tensor([[0], [0]])).validate(TINY.dit, TINY.stream)
    lone = replace(scene, canvas=Composite(scene.canvas.canvases[:1]))
    with pytest.raises(ValueError, match="a scene of 2 windows needs a canvas with as many"):
        lone.validate(TINY.dit, TINY.stream)


def test_a_window_pasted_later_keeps_its_neighbours_face(framed):
    """Where a face's paste rectangle reaches over its neighbour's face, the second paste
    blends into the first's face, not into the picture under it."""
    canvas, _ = framed
    x0, y0, x1, y1 = FACE
    nearby = (x0 + 0.25, y0 - 0.1, x1 + 0.25, y1 - 0.1)  # up and to the right
    still = canvas.still.permute(0, 2, 3, 1)
    first = Canvas.of(canvas.picture, canvas.window, MODEL, still, [FACE])
    second = Canvas.of(canvas.picture, face_window(OUT, MODEL, [nearby]), MODEL, still, [nearby])
    frames = torch.zeros(2, 1, *MODEL, 3, dtype=torch.uint8)  # the first window draws dark
    frames[1] = still.round().to(torch.uint8)  # the second the picture, as it was
    shown = Composite((first, second)).present(chunk_of(frames)).frames[0, 0]
    # The first face's pixels inside the second's paste where the second leaves the picture.
    rows, cols = torch.nonzero(second.blend == 0).T
    rows, cols = (
        rows + second.paste.top - first.paste.top,
        cols + second.paste.left - first.paste.left,
    )
    inside = (rows >= 0) & (rows < first.paste.height) & (cols >= 0) & (cols < first.paste.width)
    rows, cols = rows[inside], cols[inside]
    face = first.blend[rows, cols] == 1
    assert face.sum() > 100
    dark = shown[rows[face] + first.paste.top, cols[face] + first.paste.left]
    assert dark.float().mean() < 2
