"""Where along the path the mouth's timing is lost: the figures of TRAINING.md's "Where the
mouth's timing is lost", on held-out training clips (the dev side; never the test pool).

    .venv/bin/python tools/mouth_timing.py decoded --student assets/models/tiny \
        --decoder assets/models/tiny runs/decoder2          # needs the eval extra (dlib)
    .venv/bin/python tools/mouth_timing.py latents --student runs/student15 runs/student12
    .venv/bin/python tools/mouth_timing.py ceiling
    .venv/bin/python tools/mouth_timing.py probe --student assets/models/tiny

- decoded: lip-sync, margin (over another clip's speech and the speech shifted) and the
  opening's spread, as `avatar eval` measures them, of the clips' frames, of their latents
  drawn by each decoder, and of the student's 2-step sample drawn by each decoder;
- latents: per student, how its sample's mouth cells change over time against the clip's
  (correlation, and its motion over the clip's), for its 2-step sample and its first step,
  and the correlation by the speaker's portrait (drawn, LFW, the held-out photo);
- ceiling: the same for a clip animated twice from the same speech and picture, the motion's
  own randomness drawn anew: how much of the mouth the speech and the picture determine;
- probe: whether the student's speech encoder hears the timing: a ridge fit from each latent
  frame's features to the opening of its four video frames, on training clips, judged on
  held-out ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.config import Preset
from avatar_engine.embedded import EMBEDDED_PRESET
from avatar_engine.framing import as_uint8
from avatar_engine.sampling import interpolate
from avatar_engine.training.batch import dit_inputs, encode_clip, mouth_cells
from avatar_engine.training.data.clips import clip_audio_frames, make_clip
from avatar_engine.training.data.motion import animate, speech_track
from avatar_engine.training.data.portraits import random_portrait
from avatar_engine.training.data.speech import random_utterance
from avatar_engine.training.distill import student_data
from avatar_engine.training.features import clip_windows
from avatar_engine.training.loop import load_trained
from avatar_engine.training.teacher import new_speaker
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from avatar_engine.vae.video import from_uint8_frames, to_uint8_frames
from avatar_engine.vae.weights import random_vae

PRESET = Preset.from_name(EMBEDDED_PRESET)
GEOMETRY = FrameGeometry.of_preset(PRESET)
LATENT_FRAMES = 21  # 81 video frames, 3.2 s
VIDEO_FRAMES = 1 + GEOMETRY.frames_per_latent * (LATENT_FRAMES - 1)
SIZE = PRESET.stream.height  # the model frame's side, as the clips are drawn
CLIP_SEED = 777  # the held-out clips' seed (make_clip's held_out draws from held-out sources)
SETTLE = GEOMETRY.chunk_start_frame(1)  # the first chunk's frames are left out, as in `avatar eval`


def _clips(n: int, held_out: bool = True, seed: int = CLIP_SEED, size: int = SIZE) -> list:
    return [
        make_clip(
            seed,
            i,
            geometry=GEOMETRY,
            size=size,
            latent_frames=LATENT_FRAMES,
            held_out=held_out,
            kind="speaking",
        )
        for i in range(n)
    ]


def _vae(model: Path):
    vae = random_vae(PRESET.vae, device="cpu", dtype=torch.float32)
    return load_trained(model, "vae", vae)


def _student(run: Path):
    return load_trained(run, "student", new_speaker(PRESET, seed=0))


@torch.no_grad()
def _sample(student, latent) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's 2-step sample of the clip from noise, and its first step's prediction."""
    inputs = dit_inputs([latent], student.encoder, GEOMETRY, PRESET)
    x, first, previous = torch.randn_like(inputs.x1), None, None
    for t in PRESET.stream.denoise_times:
        if previous is not None:
            x = interpolate(previous, torch.randn_like(x), t)
        previous = student_data(student.dit, inputs, x, t)
        first = previous if first is None else first
    return previous, first


def _following(sample: torch.Tensor, clip: torch.Tensor, cells: torch.Tensor) -> tuple:
    """(correlation, motion ratio) of [z, F, h, w] latents' change over time on `cells`."""
    a, b = (z[:, 1:, cells] for z in (sample, clip))
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return float((a * b).sum() / (a.norm() * b.norm())), float(a.norm() / b.norm())


def latents(args) -> None:
    vae, clips = _vae(args.vae), _clips(args.clips)
    encoded = [encode_clip(vae, c, PRESET) for c in clips]
    speakers = np.array([clip.sources[clip.speaker] for clip in clips])
    for run in args.student:
        student, rows = _student(run), []
        for i, (clip, latent) in enumerate(zip(clips, encoded, strict=True)):
            torch.manual_seed(i)
            sample, first = _sample(student, latent)
            cells = mouth_cells([clip.mouths[clip.speaker]], clip.video.shape[1],
                                latent.latents.shape[-2:]) > 0  # fmt: skip
            rows.append(_following(sample[0], latent.latents, cells)
                        + _following(first[0], latent.latents, cells))  # fmt: skip
        r = np.array(rows)
        print(f"{run}: correlation {r[:, 0].mean():.2f} ({r[:, 0].min():.2f}-{r[:, 0].max():.2f}),"
              f" motion {r[:, 1].mean():.2f}; first step {r[:, 2].mean():.2f},"
              f" motion {r[:, 3].mean():.2f}")  # fmt: skip
        print("  by portrait: " + ", ".join(
            f"{source} {r[speakers == source, 0].mean():.2f} ({(speakers == source).sum()})"
            for source in sorted(set(speakers))))  # fmt: skip


def ceiling(args) -> None:
    vae, rate, fps = _vae(args.vae), GEOMETRY.sample_rate, GEOMETRY.fps
    scores = []
    for s in range(args.clips):
        rng = np.random.default_rng([CLIP_SEED, s])
        person = random_portrait(rng, SIZE, held_out=True)
        audio = np.zeros(clip_audio_frames(GEOMETRY, LATENT_FRAMES) * GEOMETRY.samples_per_frame,
                         np.float32)  # fmt: skip
        start = rate // 8
        speech = random_utterance(rng, rate, held_out=True)[: len(audio) - start]
        audio[start : start + len(speech)] = speech
        twice = []
        for k in range(2):
            track = speech_track(audio, rate, fps, VIDEO_FRAMES, np.random.default_rng([5, s, k]))
            video = as_uint8(animate(person.image, [person], [track]))
            with torch.no_grad():
                twice.append(vae.encode_video(from_uint8_frames(video).transpose(0, 1)[None])[0])
        cells = mouth_cells([person.mouth], SIZE, twice[0].shape[-2:]) > 0
        scores.append(_following(twice[0], twice[1], cells)[0])
    print(f"the same speech and picture animated twice: correlation {np.mean(scores):.2f} "
          f"({np.min(scores):.2f}-{np.max(scores):.2f})")  # fmt: skip


def probe(args) -> None:
    encoder = _student(args.student[0]).encoder.eval()
    step = GEOMETRY.frames_per_latent

    def windows(clips) -> tuple[np.ndarray, np.ndarray]:
        x, y = [], []
        for c in clips:
            track = speech_track(c.audio.numpy(), GEOMETRY.sample_rate, GEOMETRY.fps,
                                 VIDEO_FRAMES, np.random.default_rng(0))  # fmt: skip
            with torch.no_grad():
                features = clip_windows(encoder, GEOMETRY, c.audio[None], LATENT_FRAMES)[0]
            for f in range(1, LATENT_FRAMES):  # latent frame f shows video frames 4f-3..4f
                x.append(features[f].flatten().numpy())
                y.append(track.opening[step * (f - 1) + 1 : step * f + 1])
        return np.array(x), np.array(y)

    x, y = windows(_clips(64, held_out=False, seed=31, size=64))
    xt, yt = windows(_clips(16, size=64))
    mu, sd = x.mean(0), x.std(0) + 1e-6
    a, b = (x - mu) / sd, (xt - mu) / sd
    w = np.linalg.solve(a.T @ a + 10.0 * np.eye(a.shape[1]), a.T @ (y - y.mean(0)))
    guess = b @ w + y.mean(0)
    within = [v - v.mean(1, keepdims=True) for v in (guess, yt)]
    print(f"probe: per frame {np.corrcoef(guess.ravel(), yt.ravel())[0, 1]:.2f}, within a latent "
          f"frame {np.corrcoef(within[0].ravel(), within[1].ravel())[0, 1]:.2f}")  # fmt: skip


def decoded(args) -> None:
    from avatar_engine.training.judge import faces, metrics

    vae, clips, student = _vae(args.vae), _clips(args.clips), _student(args.student[0])
    decoders = {d: load_trained(d, "decoder", ReferenceDecoder(PRESET.vae)).eval()
                for d in args.decoder}  # fmt: skip
    rows: dict[str, list] = {}
    spf = GEOMETRY.samples_per_frame
    for i, clip in enumerate(clips):
        t = clip.video.shape[0]
        env = metrics.envelope(clip.audio.numpy(), t, spf)
        other = metrics.envelope(clips[(i + 1) % len(clips)].audio.numpy(), t, spf)
        flags = clip.speaking_latents[clip.speaker].numpy()
        per_frame = np.repeat(flags, GEOMETRY.frames_per_latent)[GEOMETRY.frames_per_latent - 1 :]
        talking = per_frame[:t] & (np.arange(t) >= SETTLE)
        latent = encode_clip(vae, clip, PRESET)
        torch.manual_seed(i)
        sample, _ = _sample(student, latent)
        picture = as_uint8(clip.reference)
        videos = {"the clip's frames": as_uint8(clip.video)}
        for name, decoder in decoders.items():
            with torch.no_grad():
                state = decoder.start(StillPicture(picture[None], latent.still[None]))
                for what, z in (("its latents", latent.latents[None]), ("the student's", sample)):
                    out, _ = decoder.decode(z, state)
                    videos[f"{what}, {name}"] = to_uint8_frames(out)[0]
        for name, video in videos.items():
            track = faces.track_face(video.numpy(), clip.face_boxes[clip.speaker], every=10**9)
            opening = metrics.lip_opening(track.landmarks)
            sync, _ = metrics.lagged_sync(opening, env, talking)
            controls = [
                metrics.lagged_sync(opening, control, talking)[0]
                for control in (metrics.fitted(other, t), metrics.shifted(env, GEOMETRY.fps))
            ]
            rows.setdefault(name, []).append(
                (sync, sync - max(controls), metrics.spread(opening[talking]))
            )
    for name, r in rows.items():
        m = np.array(r).mean(0)
        print(f"{name:50s} lip-sync {m[0]:.2f}  margin {m[1]:.2f}  spread {m[2]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("decoded", "latents", "ceiling", "probe"))
    parser.add_argument("--student", type=Path, nargs="+", default=[Path("assets/models/tiny")])
    parser.add_argument("--decoder", type=Path, nargs="+", default=[Path("assets/models/tiny")])
    parser.add_argument("--vae", type=Path, default=Path("assets/models/tiny"))
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    {"decoded": decoded, "latents": latents, "ceiling": ceiling, "probe": probe}[args.what](args)


if __name__ == "__main__":
    main()
