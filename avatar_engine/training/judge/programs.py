"""What the evaluation judges: the model, streamed exactly as the app streams it, and three
model-free baselines that must fail (a frozen picture, the mouth tinted by loudness, noise in
the mouth while speaking). All lay the speech on the timeline the same way (plan_turns)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from avatar_engine.audio.encoder import SpeechEncoder
from avatar_engine.audio.geometry import FrameGeometry
from avatar_engine.audio.turns import Turn, TurnPlan, plan_turns
from avatar_engine.config import Preset
from avatar_engine.embedded import EmbeddedModel
from avatar_engine.framing import Portrait, as_uint8
from avatar_engine.model.dit import WanDiT
from avatar_engine.scene import scene_from_image
from avatar_engine.session import StreamSession
from avatar_engine.training.data.motion import mouth_region
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder

EVAL_SEED = 10_000  # never a training seed
BASELINES = ("frozen", "tinted", "noise")


@dataclass(frozen=True)
class Rendered:
    """A program's video of one clip."""

    frames: torch.Tensor  # [T, H, W, 3] uint8, as the product shows them
    raw: torch.Tensor  # [T, H, W, 3] uint8: the model's frames alone, without the picture's
    # detail restored (canvas.Canvas.present(detail=False))
    audio: np.ndarray  # [S] 16 kHz, sample 0 = the stream's frame 0
    speaking: np.ndarray  # [K, T] bool per character and kept frame
    index: np.ndarray  # [T] the stream's frame number of each kept frame


class Program(ABC):
    """Renders clips: `chunks` chunks of a scene speaking `turns` (one after another, then
    silence), keeping the frames whose stream number lies in `keep` (all by default)."""

    name: str

    def __init__(self, encoder: SpeechEncoder, preset: Preset):
        self.encoder, self.preset = encoder, preset
        self.geometry = FrameGeometry.of_preset(preset)

    def render(
        self,
        people: list[Portrait],
        picture: torch.Tensor,
        turns: list[tuple[int, np.ndarray]],
        chunks: int,
        *,
        keep: tuple[range, ...] | None = None,
        progress: bool = False,
    ) -> Rendered:
        """Args: people's landmarks in `picture` [H, W, 3] float in [0, 1]; turns: (speaker,
        16 kHz audio)."""
        g = self.geometry
        plan = plan_turns(self.encoder, self.preset, [Turn(k, w, g.sample_rate) for k, w in turns])
        audio = plan.audio(g.sample_rate)
        total = g.chunk_start_frame(chunks)
        audio = np.pad(audio, (0, max(0, total * g.samples_per_frame - len(audio))))
        frames, raws, flags, index = [], [], [], []
        undecoded = True  # every chunk's raw frames are its shown ones (the baselines)
        for c in tqdm(range(chunks), desc=self.name, disable=not progress, leave=False):
            first, count = (
                g.chunk_start_frame(c),
                g.chunk_start_frame(c + 1) - g.chunk_start_frame(c),
            )
            routed, speaking = plan.inputs(c, len(people))
            numbers = np.arange(first, first + count)
            wanted = np.ones(count, bool) if keep is None else np.isin(numbers, _kept(keep))
            shown, raw = self.chunk(c, plan, people, picture, routed, speaking, audio, numbers)
            frames.append(shown[wanted])
            raws.append(raw[wanted])
            undecoded = undecoded and raw is shown
            flags.append(speaking[0, :, None].expand(-1, int(wanted.sum())))
            index.append(numbers[wanted])
        shown_all = torch.cat(frames)
        return Rendered(
            shown_all,
            shown_all if undecoded else torch.cat(raws),
            audio[: total * g.samples_per_frame],
            torch.cat(flags, 1).numpy(),
            np.concatenate(index),
        )

    def turn_chunks(self, turns: list[tuple[int, np.ndarray]]) -> int:
        """How many chunks `turns` span on the timeline, up to the chunk the next turn after
        them would start in."""
        g = self.geometry
        plan = plan_turns(self.encoder, self.preset, [Turn(k, w, g.sample_rate) for k, w in turns])
        return max(plan.features) + 1

    @abstractmethod
    def chunk(self, c, plan, people, picture, routed, speaking, audio, numbers):
        """(shown, raw) [n, H, W, 3] uint8 frames of chunk c (frame numbers `numbers`)."""


def _kept(keep: tuple[range, ...]) -> np.ndarray:
    return np.concatenate([np.arange(r.start, r.stop) for r in keep])


class ModelProgram(Program):
    """The student streamed as the app streams it: per-chunk speech features routed to the
    speaker, two steps per chunk, decoded and framed at the output size; the shown frames with
    the picture's detail restored where the preset restores it, the raw ones without."""

    name = "model"

    def __init__(
        self,
        dit: WanDiT,
        encoder: SpeechEncoder,
        vae: WanVAE,
        preset: Preset,
        reference_decoder: ReferenceDecoder | None = None,
    ):
        super().__init__(encoder, preset)
        self.dit, self.vae, self.reference_decoder = dit, vae, reference_decoder
        self._session: StreamSession | None = None

    @classmethod
    def of_model(cls, model: EmbeddedModel, device: str = "cpu") -> ModelProgram:
        """An exported model (its DiT, speech encoder, VAE and reference decoder) as the
        program the evaluation judges."""
        spec = model.spec()
        return cls(spec.build_dit(device), model.encoder(), spec.build_vae(device), spec.preset,
                   spec.build_reference_decoder(device))  # fmt: skip

    def render(self, people, picture, turns, chunks, **kwargs) -> Rendered:
        scene = scene_from_image(
            self.vae, self.preset.dit, self.preset.stream, as_uint8(picture),
            [p.face_box for p in people], reference_decoder=self.reference_decoder,
        )  # fmt: skip
        self._session = StreamSession(
            self.dit,
            self.preset.stream,
            scene,
            seed=EVAL_SEED,
            vae=self.vae,
            reference_decoder=self.reference_decoder,
        )
        return super().render(people, picture, turns, chunks, **kwargs)

    def chunk(self, c, plan, people, picture, routed, speaking, audio, numbers):
        session = self._session
        presenter = session.presenter
        decoded = presenter.decoder.decode(session.next_chunk(routed, speaking))
        canvas = presenter.canvas
        if canvas is None:
            return decoded.frames[0], decoded.frames[0]
        shown, raw = canvas.present(decoded), canvas.present(decoded, detail=False)
        return shown.frames[0], raw.frames[0]


class Baseline(Program):
    """A model-free program: the reference picture, frozen ("frozen"), with each mouth's box
    tinted red in proportion to the speech's loudness ("tinted"), or filled with uniform noise
    ("noise"), in the speaker's mouth box while it speaks."""

    def __init__(self, kind: str, encoder: SpeechEncoder, preset: Preset):
        if kind not in BASELINES:
            raise ValueError(f"unknown baseline {kind!r}; known: {', '.join(BASELINES)}")
        super().__init__(encoder, preset)
        self.name = kind
        self.rng = np.random.default_rng(EVAL_SEED)

    def chunk(self, c, plan: TurnPlan, people, picture, routed, speaking, audio, numbers):
        g, size = self.geometry, picture.shape[0]
        frames = as_uint8(picture)[None].repeat(len(numbers), 1, 1, 1)
        spf = g.samples_per_frame
        for k, person in enumerate(people):
            rows, cols = mouth_region(person.mouth, size)
            region = frames[:, rows, cols].float()
            if not bool(speaking[0, k]):
                continue
            if self.name == "tinted":
                loud = np.array([np.sqrt(np.mean(audio[n * spf : (n + 1) * spf] ** 2))
                                 for n in numbers])  # fmt: skip
                alpha = torch.tensor(np.clip(loud / 0.1, 0, 1) * 0.7, dtype=torch.float32)
                red = torch.tensor([200.0, 20.0, 30.0])
                region = (
                    region * (1 - alpha[:, None, None, None]) + red * alpha[:, None, None, None]
                )
            elif self.name == "noise":
                region = torch.tensor(self.rng.uniform(0, 255, region.shape), dtype=torch.float32)
            frames[:, rows, cols] = region.round().clamp(0, 255).to(torch.uint8)
        return frames, frames
