"""The independent face analyser (dlib) on real and synthetic faces: it finds them, follows the
mouth, and tells the person."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.judge import faces, metrics
from avatar_engine.training.judge.evaluate import reference
from avatar_engine.training.judge.pools import DEV, TEST

TINY = Preset.from_name("tiny")


def u8(picture: torch.Tensor) -> np.ndarray:
    return (picture * 255).round().to(torch.uint8).numpy()


def test_an_open_mouth_painted_on_a_photo_raises_the_opening():
    p = DEV.source("hopper").portrait(128)
    closed = u8(p.image)
    track = faces.describe(closed, p.face_box)
    lips = track.landmarks[0, 60:68]
    cx, cy = lips.mean(0)
    w, h = np.ptp(lips[:, 0]) / 2, 0.12 * metrics.eye_distance(track.landmarks[0])
    im = Image.fromarray(closed.copy())
    ImageDraw.Draw(im).ellipse((cx - w, cy - h, cx + w, cy + h), fill=(40, 10, 15))
    opened = faces.describe(np.asarray(im), p.face_box)
    assert track.found[0] and opened.found[0]
    before = metrics.lip_opening(track.landmarks)[0]
    assert metrics.lip_opening(opened.landmarks)[0] > before + 0.08


def test_the_training_datas_mouth_follows_its_speech_and_shifted_audio_does_not():
    g = FrameGeometry.of_preset(TINY)
    clip = make_clip(10_000, 2, geometry=g, size=128, latent_frames=21, held_out=True,
                     kind="speaking")  # fmt: skip
    track = faces.track_face(u8(clip.video), clip.face_boxes[0])
    opening = metrics.lip_opening(track.landmarks)
    env = metrics.envelope(clip.audio.numpy(), len(opening), g.samples_per_frame)
    frames = np.arange(len(opening)) >= g.chunk_start_frame(1)
    sync, lag = metrics.lagged_sync(opening, env, frames)
    shifted, _ = metrics.lagged_sync(opening, metrics.shifted(env, g.fps), frames)
    assert track.found.mean() > 0.9
    assert sync > 0.6 and abs(lag) <= 2 and shifted < sync - 0.3


@pytest.mark.parametrize("pool", [DEV, TEST], ids=["dev", "test"])
def test_every_pool_face_is_found_and_stays_itself_at_the_output_size(pool):
    for source in pool.portraits:
        ref = reference(source, TINY.stream.height)  # raises when the analyser finds no face
        assert ref.floor < faces.SAME_PERSON / 2, source.name
        assert ref.detail > 0


def test_another_person_is_far():
    rachel, ross = (reference(TEST.source(n), 128) for n in ("rachel", "ross"))
    assert np.linalg.norm(rachel.descriptor - ross.descriptor) > faces.SAME_PERSON


def test_the_test_pool_is_large_enough_and_held_out_of_training():
    from avatar_engine.training.data.portraits import HELD_OUT_PHOTO, TRAIN_PHOTOS
    from avatar_engine.training.data.speech import HELD_OUT_TEXTS, VOICES

    assert len(TEST.portraits) >= 8 and len(TEST.voices) >= 3
    photos = [s for s in TEST.portraits if hasattr(s, "package")]
    assert len(photos) >= 4
    # training reads scikit-image's photos and, held out for its own checks, matplotlib's
    assert all(s.package not in ("skimage", "matplotlib") for s in photos)
    assert HELD_OUT_PHOTO not in {s.name for s in TEST.portraits} | set(TRAIN_PHOTOS)
    assert all(v.synth == "flite" for v in TEST.voices)  # training speaks with espeak-ng only
    assert not set(TEST.texts) & set(HELD_OUT_TEXTS) and VOICES
    assert not {s.name for s in TEST.portraits} & {s.name for s in DEV.portraits}
