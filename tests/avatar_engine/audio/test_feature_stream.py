"""SpeechFeatureStream: streaming equals offline, frames line up with video, bad input is
refused without harm, reset forgets, and the look-ahead is exactly 2 latent frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_engine.audio.feature_stream import extract_features
from tests.avatar_engine.audio.conftest import GEOMETRY, mel_stream, push_in_pieces


def speech_like(seconds: float, rate: int, seed: int = 0, channels: int = 1) -> np.ndarray:
    """Noise shaped by a syllable-rate envelope, float32 [N] or [N, C]."""
    gen = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    audio = (0.3 * envelope[:, None] * gen.standard_normal((len(t), channels))).astype(np.float32)
    return audio[:, 0] if channels == 1 else audio


def features_of(chunks) -> torch.Tensor:
    return torch.stack([c.features for c in chunks])


def test_streaming_equals_offline_for_random_push_sizes(mel_encoder):
    audio = (speech_like(3.3, 44100, channels=2) * 32767).astype(np.int16)  # stereo PCM16
    offline = extract_features(mel_encoder, GEOMETRY, audio, 44100)
    for seed in range(3):
        streamed = push_in_pieces(mel_stream(mel_encoder), audio, 44100, seed)
        assert [c.index for c in streamed] == [c.index for c in offline]
        assert float((features_of(streamed) - features_of(offline)).abs().max()) <= 1e-6


def test_click_lands_in_its_video_frame_and_latent_frame(mel_encoder):
    rate, seconds = 16000, 2.0
    silence = np.zeros(int(seconds * rate), dtype=np.float32)
    quiet = features_of(extract_features(mel_encoder, GEOMETRY, silence, rate))
    for t in (0.0013, 0.41, 0.5, 0.77, 1.2345):
        audio = silence.copy()
        audio[int(t * rate)] = 0.9
        chunks = extract_features(mel_encoder, GEOMETRY, audio, rate)
        changed = (features_of(chunks) - quiet).abs().amax(-1) > 1e-5  # [N, Fc, W]
        frame = GEOMETRY.frame_of_time(t)
        latent = GEOMETRY.latent_of_frame(frame)
        chunk, local = divmod(latent, GEOMETRY.chunk_latent_frames)
        # The window of latent frame l starts 2 latent frames (8 video frames) before l's span.
        offset = frame - GEOMETRY.latent_start_frame(latent) + GEOMETRY.lookahead_frames
        first = changed[chunk, local].nonzero()[0].item()
        assert first == offset, f"click at {t}s shows at window slot {first}, not {offset}"
        # and nothing earlier in the stream moved: every earlier video frame is unchanged
        for c in range(len(chunks)):
            for f in range(GEOMETRY.chunk_latent_frames):
                start = GEOMETRY.latent_start_frame(c * 3 + f) - GEOMETRY.lookahead_frames
                moved = changed[c, f].nonzero()
                if len(moved):
                    assert start + moved[0].item() >= frame


def test_one_second_yields_the_latent_frames_of_the_vae_rule(mel_encoder):
    chunks = extract_features(mel_encoder, GEOMETRY, speech_like(1.0, 16000), 16000)
    video_frames = 25  # 1 s at 25 fps
    latents = GEOMETRY.latent_frames_for(video_frames)
    assert latents == 7 and 1 + 4 * (latents - 1) == video_frames
    assert sum(c.speech_latent_frames for c in chunks) == latents
    assert [c.index for c in chunks] == [0, 1, 2]  # 7 latent frames in chunks of 3
    assert [c.speech_latent_frames for c in chunks] == [3, 3, 1]
    assert all(c.features.shape == (3, GEOMETRY.window_frames, 64) for c in chunks)


@pytest.mark.parametrize("rate", (8000, 16000, 22050, 24000, 44100, 48000))
@pytest.mark.parametrize("channels", (1, 2))
@pytest.mark.parametrize("dtype", ("int16", "float32"))
def test_rates_layouts_and_sample_types_are_accepted(mel_encoder, rate, channels, dtype):
    audio = speech_like(1.0, rate, channels=channels)
    if dtype == "int16":
        audio = (audio * 32767).astype(np.int16)
    chunks = push_in_pieces(mel_stream(mel_encoder), audio, rate, seed=rate)
    assert [c.speech_latent_frames for c in chunks] == [3, 3, 1]
    reference = extract_features(mel_encoder, GEOMETRY, speech_like(1.0, 16000), 16000)
    assert all(torch.isfinite(c.features).all() for c in chunks)
    assert len(chunks) == len(reference)


def test_interleaved_pcm16_bytes(mel_encoder):
    audio = (speech_like(1.0, 24000, channels=2) * 32767).astype(np.int16)
    as_array = extract_features(mel_encoder, GEOMETRY, audio, 24000)
    stream = mel_stream(mel_encoder)
    as_bytes = stream.push(audio.tobytes(), 24000, channels=2) + stream.end_of_turn()
    assert torch.equal(features_of(as_bytes), features_of(as_array))


def test_bad_pushes_are_refused_and_change_nothing(mel_encoder):
    audio = speech_like(2.0, 16000)
    clean = extract_features(mel_encoder, GEOMETRY, audio, 16000)
    stream = mel_stream(mel_encoder)
    out = stream.push(audio[:12345], 16000)
    assert stream.push(np.zeros(0, dtype=np.float32), 16000) == []  # empty: nothing happens
    bad = audio[:500].copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        stream.push(bad, 16000)
    with pytest.raises(ValueError, match="at most 60 s"):
        stream.push(np.zeros(16000 * 61, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match="channels"):
        stream.push(np.zeros((2, 16000), dtype=np.float32), 16000)  # [C, N] by mistake
    with pytest.raises(ValueError, match="int16 PCM or float"):
        stream.push(np.zeros(100, dtype=np.int32), 16000)
    with pytest.raises(ValueError, match="even length"):
        stream.push(b"\x00\x01\x02", 16000)
    with pytest.raises(ValueError, match="outside"):
        stream.push(audio[:10], 100)
    with pytest.raises(ValueError, match="Call end_of_turn"):
        stream.push(audio[:10], 44100)  # a new rate in the middle of a turn
    out += stream.push(audio[12345:], 16000) + stream.end_of_turn()
    assert torch.equal(features_of(out), features_of(clean))


def test_reset_drops_pending_audio(mel_encoder):
    first, stale, fresh = (
        speech_like(1.5, 16000, 1),
        speech_like(0.3, 16000, 2),
        speech_like(1.0, 16000, 3),
    )
    stream = mel_stream(mel_encoder)
    emitted = stream.push(first, 16000) + stream.push(stale, 16000)
    stream.reset()
    after = stream.push(fresh, 16000) + stream.end_of_turn()
    assert after[0].index == emitted[-1].index + 1
    # A stream that never heard the stale audio (nor the past) gives the same chunks.
    clean = mel_stream(mel_encoder, start_chunk=after[0].index)
    expected = clean.push(fresh, 16000) + clean.end_of_turn()
    assert torch.equal(features_of(after), features_of(expected))
    # Without the reset the stale audio would have shown.
    leaky = mel_stream(mel_encoder)
    leaky.push(first, 16000)
    leaky.push(stale, 16000)
    not_reset = leaky.push(fresh, 16000)
    assert not torch.equal(not_reset[0].features, after[0].features)


def test_lookahead_is_exactly_two_latent_frames(mel_encoder):
    stream = mel_stream(mel_encoder)
    assert stream.lookahead_s == pytest.approx(2 * 4 / 25)  # 2 latent frames of 4 video frames
    rate, spf, pushed = 16000, GEOMETRY.samples_per_frame, 0
    for chunk in range(3):
        chunk_end = GEOMETRY.chunk_start_sample(chunk + 1)
        needed = chunk_end + 2 * GEOMETRY.frames_per_latent * spf
        assert GEOMETRY.needed_samples(chunk) == needed
        # one sample short of the look-ahead: the chunk waits
        assert stream.push(np.zeros(needed - 1 - pushed, dtype=np.float32), rate) == []
        assert [c.index for c in stream.push(np.zeros(1, dtype=np.float32), rate)] == [chunk]
        pushed = needed


def test_turns_continue_the_chunk_count(mel_encoder):
    stream = mel_stream(mel_encoder)
    turn1 = stream.push(speech_like(0.5, 16000), 16000) + stream.end_of_turn()
    assert stream.end_of_turn() == []  # nothing pending: no chunk
    turn2 = stream.push(speech_like(0.5, 16000, 4), 16000) + stream.end_of_turn()
    assert [c.index for c in turn1 + turn2] == list(range(len(turn1) + len(turn2)))
    assert turn2[0].speech_latent_frames == 3
