"""Synthetic data: deterministic, aligned with the stream, and moving with the speech."""

from __future__ import annotations

import torch

from avatar_engine.audio.encoder import build_encoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.stream import extract_features
from avatar_engine.training.data.clips import make_clip
from avatar_engine.training.data.portraits import HELD_OUT_PHOTO, named_photo
from avatar_engine.training.evaluate import lipsync, mouth_motion
from avatar_engine.training.features import clip_windows
from tests.avatar_engine.training.conftest import MICRO_TRAIN

GEOMETRY = FrameGeometry.of_preset(MICRO_TRAIN)


def clip(index: int, kind: str | None = None, size: int = 64):
    return make_clip(3, index, geometry=GEOMETRY, size=size, latent_frames=9, kind=kind)


def test_clip_features_equal_the_streams():
    encoder = build_encoder(MICRO_TRAIN.audio, GEOMETRY)
    wave = torch.randn(16000 * 2, generator=torch.Generator().manual_seed(1)) * 0.1
    streamed = torch.cat([c.features for c in extract_features(encoder, GEOMETRY, wave, 16000)])
    with torch.no_grad():
        whole = clip_windows(encoder, GEOMETRY, wave[None], streamed.shape[0])[0]
    assert (whole - streamed).abs().max() < 1e-5


def test_clips_are_deterministic_and_varied():
    a, b, c = clip(0), clip(0), clip(1)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.video, c.video)
    frames = 1 + 4 * 8
    assert a.video.shape == (frames, 64, 64, 3) and a.video.min() >= 0 and a.video.max() <= 1


def test_speaking_flags_follow_chunks_and_pairs_have_one_speaker():
    pair = clip(2, "pair")
    assert pair.speaking_latents.shape == (2, 9)
    listener = 1 - pair.speaker
    assert not pair.speaking_latents[listener].any() and pair.speaking_latents[pair.speaker].any()
    flags = pair.speaking_latents[pair.speaker].view(3, 3)  # chunks of 3 latent frames
    assert (flags == flags[:, :1]).all()  # decided per chunk, as in streaming
    silent = clip(3, "silence")
    assert silent.speaker is None and not silent.speaking_latents.any()
    assert silent.audio.abs().max() == 0


def test_the_mouth_moves_with_speech_and_rests_in_silence():
    talk = clip(4, "speaking", size=128)
    quiet = clip(4, "silence", size=128)
    mx, my, mw = talk.mouths[0]
    box = (slice(int((my - mw) * 128), int((my + 2 * mw) * 128)),
           slice(int((mx - 1.5 * mw) * 128), int((mx + 1.5 * mw) * 128)))  # fmt: skip
    frames = (talk.video * 255).round().to(torch.uint8)
    assert lipsync(frames, talk.audio.numpy(), box, GEOMETRY.samples_per_frame) > 0.6
    motion = mouth_motion(frames, box)
    mx, my, mw = quiet.mouths[0]
    still = mouth_motion((quiet.video * 255).round().to(torch.uint8), box).mean()
    assert still < 0.2 * motion.mean()


def test_the_held_out_photo_has_a_detected_face():
    image, (row, col, side) = named_photo(HELD_OUT_PHOTO)
    assert image.ndim == 3 and side > 100 and 0 < row < image.shape[0] - side
