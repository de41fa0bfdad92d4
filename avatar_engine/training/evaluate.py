"""The embedded model's evaluation, on held-out voices, texts and portraits (including a real
photo never seen in training): lip-sync, identity, drift, silence and two-character figures."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.turns import Turn, plan_turns
from avatar_engine.config import Preset
from avatar_engine.model.dit import WanDiT
from avatar_engine.scene import scene_from_image
from avatar_engine.session import StreamSession
from avatar_engine.training.data.clips import compose_pair, make_clip
from avatar_engine.training.data.motion import mouth_region
from avatar_engine.training.data.portraits import (
    HELD_OUT_PHOTO,
    Portrait,
    draw_portrait,
    lfw_portrait,
    named_photo,
    photo_portrait,
)
from avatar_engine.training.data.speech import random_utterance
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.video import from_uint8_frames, to_uint8_frames

EVAL_SEED = 10_000  # never a training seed
LIPSYNC_SMOOTHING = 5  # video frames (200 ms at 25 fps)


@dataclass(frozen=True)
class Rendered:
    frames: torch.Tensor  # [T, H, W, 3] uint8
    audio: np.ndarray  # [S] 16 kHz, sample 0 = frame 0
    speaking: np.ndarray  # [K, T] bool per video frame


@dataclass
class Report:
    lipsync: dict[str, float] = field(default_factory=dict)  # per portrait source
    identity_psnr: dict[str, float] = field(default_factory=dict)
    silence_ratio: float = float("nan")
    pair_ratio: float = float("nan")
    drift: dict[str, float] = field(default_factory=dict)
    lipsync_bounds: dict[str, float] = field(default_factory=dict)  # see lipsync_bounds()


def held_out_portraits(size: int) -> list[Portrait]:
    """Two drawn characters, two LFW faces and the unseen real photo, none seen in training."""
    rng = np.random.default_rng(EVAL_SEED)
    image, face = named_photo(HELD_OUT_PHOTO)
    return [
        draw_portrait(rng, size),
        draw_portrait(rng, size),
        lfw_portrait(rng, size, 93),
        lfw_portrait(rng, size, 97),
        photo_portrait(image, face, size, zoom=0.5),
    ]


class Renderer:
    """Streams a picture through the student exactly as the app does: per-chunk speech
    features from SpeechFeatureStream, routed to the speaker, 2 steps per chunk, decode."""

    def __init__(self, dit: WanDiT, encoder: SpeechEncoder, vae: WanVAE, preset: Preset):
        self.dit, self.encoder, self.vae, self.preset = dit, encoder, vae, preset
        self.geometry = FrameGeometry.of_preset(preset)

    def render(
        self,
        portraits: list[Portrait],
        picture: torch.Tensor,
        speech: list[tuple[int, np.ndarray]],
        chunks: int,
        *,
        progress: bool = False,
    ) -> Rendered:
        """speech: (speaker, 16 kHz audio) turns, one after another with their own silences;
        the stream runs `chunks` chunks (silent after the speech)."""
        g, stream = self.geometry, self.preset.stream
        image = (picture * 255).round().to(torch.uint8)
        scene = scene_from_image(
            self.vae, self.preset.dit, stream, image, [p.face_box for p in portraits]
        )
        session = StreamSession(self.dit, stream, scene, seed=EVAL_SEED, vae=self.vae)
        plan = plan_turns(
            self.encoder, self.preset, [Turn(k, wave, g.sample_rate) for k, wave in speech]
        )
        frames, flags = [], []
        for index in tqdm(range(chunks), desc="render", disable=not progress, leave=False):
            routed, speaking = plan.inputs(index, len(portraits))
            chunk = session.next_frames(routed, speaking)
            frames.append(chunk.frames[0])
            flags.append(speaking[0, :, None].expand(-1, chunk.frames.shape[1]))
        video = torch.cat(frames)
        audio = plan.audio(g.sample_rate)
        audio = np.pad(audio, (0, max(0, len(video) * g.samples_per_frame - len(audio))))
        return Rendered(
            video, audio[: len(video) * g.samples_per_frame], torch.cat(flags, 1).numpy()
        )


def mouth_motion(frames: torch.Tensor, box: tuple[slice, slice]) -> np.ndarray:
    """[T] mean absolute change of the mouth region from the previous frame (0 for frame 0)."""
    region = frames[:, box[0], box[1]].float()
    motion = (region[1:] - region[:-1]).abs().mean(dim=(1, 2, 3))
    return np.concatenate([[0.0], motion.numpy()])


def envelope(audio: np.ndarray, frames: int, samples_per_frame: int) -> np.ndarray:
    """[T] RMS of the audio under each video frame."""
    per_frame = audio[: frames * samples_per_frame].reshape(frames, samples_per_frame)
    return np.sqrt((per_frame.astype(np.float64) ** 2).mean(1))


def smoothed(x: np.ndarray, frames: int = LIPSYNC_SMOOTHING) -> np.ndarray:
    return np.convolve(x, np.ones(frames) / frames, mode="same")


def lipsync(frames: torch.Tensor, audio: np.ndarray, box, spf: int) -> float:
    """Pearson correlation of the mouth's frame-to-frame motion with the speech envelope, both
    averaged over a syllable (200 ms): the motion of a frame is a change, the envelope a level,
    so frame by frame they correlate weakly even in the ground truth."""
    motion = mouth_motion(frames, box)
    env = envelope(audio, len(frames), spf)
    return float(np.corrcoef(smoothed(motion)[1:], smoothed(env)[1:])[0, 1])


def lipsync_bounds(vae: WanVAE, preset: Preset, *, clips: int = 6) -> dict[str, float]:
    """Lip-sync of held-out clips of the training data itself ("data") and after a round trip
    through the VAE ("vae"): what the model could reach at most, and what the VAE leaves of it
    (the DiT learns and renders through that VAE)."""
    g, size = FrameGeometry.of_preset(preset), preset.stream.height
    scores: dict[str, list[float]] = {"data": [], "vae": []}
    for index in range(clips):
        clip = make_clip(EVAL_SEED, index, geometry=g, size=size, latent_frames=21,
                         held_out=True, kind="speaking")  # fmt: skip
        video = (clip.video * 255).round().to(torch.uint8)
        with torch.no_grad():
            latents = vae.encode_video(from_uint8_frames(video).transpose(0, 1)[None])
            decoded = to_uint8_frames(vae.decode(latents)[0])[0]  # [T, H, W, 3]
        box, audio = mouth_region(clip.mouths[0], size), clip.audio.numpy()
        for name, frames in (("data", video), ("vae", decoded)):
            scores[name].append(lipsync(frames, audio, box, g.samples_per_frame))
    return {name: float(np.mean(v)) for name, v in scores.items()}


def identity_psnr(frames: torch.Tensor, reference: torch.Tensor, boxes) -> np.ndarray:
    """[T] PSNR (dB) of each frame against the reference picture outside the mouth regions."""
    keep = torch.ones(frames.shape[1:3], dtype=torch.bool)
    for box in boxes:
        keep[box] = False
    ref = (reference * 255).round()
    err = (frames.float() - ref)[:, keep].square().mean(dim=(1, 2))
    return (10 * torch.log10(255.0**2 / err.clamp(min=1e-6))).numpy()


def evaluate(
    renderer: Renderer, *, drift_minutes: float = 10.0, progress: bool = True
) -> tuple[Report, dict[str, Rendered]]:
    """All figures, and the rendered videos they came from (evidence)."""
    preset, g = renderer.preset, renderer.geometry
    size, spf = preset.stream.height, g.samples_per_frame
    rng = np.random.default_rng(EVAL_SEED)
    report, videos = Report(), {}
    chunk_s = preset.stream.chunk_duration_s
    scores: dict[str, list[tuple[float, float]]] = {}
    for i, p in enumerate(tqdm(held_out_portraits(size), desc="portraits", disable=not progress)):
        speech = random_utterance(rng, g.sample_rate, held_out=True)
        lead = np.zeros(int(0.5 * g.sample_rate), dtype=np.float32)
        wave = np.concatenate([lead, speech])
        chunks = int(np.ceil((len(wave) / g.sample_rate + 1.0) / chunk_s))
        r = renderer.render([p], p.image, [(0, wave)], chunks)
        videos[f"speaking_{i}_{p.source}"] = r
        box = mouth_region(p.mouth, size)
        psnr = float(identity_psnr(r.frames, p.image, [box]).mean())
        scores.setdefault(p.source, []).append((lipsync(r.frames, r.audio, box, spf), psnr))
        if i == 0:
            silent = renderer.render([p], p.image, [], chunks)
            videos["silence_0"] = silent
            speaking_motion = mouth_motion(r.frames, box)[r.speaking[0]].mean()
            report.silence_ratio = float(mouth_motion(silent.frames, box).mean() / speaking_motion)
    report.lipsync = {s: float(np.mean([a for a, _ in v])) for s, v in scores.items()}
    report.identity_psnr = {s: float(np.mean([b for _, b in v])) for s, v in scores.items()}
    picture, people = compose_pair(np.random.default_rng(EVAL_SEED + 1), size, held_out=True)
    speech = random_utterance(rng, g.sample_rate, held_out=True)
    chunks = int(np.ceil((len(speech) / g.sample_rate + 0.5) / chunk_s))
    pair = renderer.render(people, picture, [(0, speech)], chunks)
    videos["pair"] = pair
    talk, listen = (mouth_motion(pair.frames, mouth_region(q.mouth, size)).mean() for q in people)
    report.pair_ratio = float(talk / max(listen, 1e-6))
    report.lipsync_bounds = lipsync_bounds(renderer.vae, preset)
    if drift_minutes > 0:
        report.drift = drift(renderer, held_out_portraits(size)[4], drift_minutes, rng, progress)
    return report, videos


def drift(renderer: Renderer, p: Portrait, minutes: float, rng, progress: bool) -> dict[str, float]:
    """Identity PSNR of the first and the last minute of a long stream of talk and pauses."""
    g, stream = renderer.geometry, renderer.preset.stream
    chunks = int(np.ceil(minutes * 60 / stream.chunk_duration_s))
    turns = []
    total = 0.0
    while total < minutes * 60:
        wave = random_utterance(rng, g.sample_rate, held_out=True)
        pause = np.zeros(int(rng.uniform(0.5, 3.0) * g.sample_rate), dtype=np.float32)
        turns.append((0, np.concatenate([wave, pause])))
        total += (len(wave) + len(pause)) / g.sample_rate + stream.chunk_duration_s
    r = renderer.render([p], p.image, turns, chunks, progress=progress)
    per_frame = identity_psnr(r.frames, p.image, [mouth_region(p.mouth, stream.height)])
    minute = 60 * stream.fps
    first, last = float(per_frame[:minute].mean()), float(per_frame[-minute:].mean())
    return {"first_minute_psnr": first, "last_minute_psnr": last, "change_db": last - first}
