"""The chunk loop: one latent chunk per call, constant cost however long the stream runs."""

from __future__ import annotations

from dataclasses import replace

import torch

from avatar_engine.cache import StreamCache
from avatar_engine.canvas import Presenter
from avatar_engine.chunks import LatentChunk, VideoChunk, chunk_latent_shape
from avatar_engine.config import StreamConfig
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.model.dit import WanDiT
from avatar_engine.model.rope import RopeTable
from avatar_engine.model.window import ChunkRole, StreamingWindow, slot_tables
from avatar_engine.sampling import FewStepSampler
from avatar_engine.scene import SceneConditioning
from avatar_engine.vae.chunk_decoder import ChunkDecoder
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder


class StreamSession:
    """Streams latent chunks for one scene.

    Start-up is explicit and happens here once: validate the scene, embed the text/image
    context into every block's K/V, build the reference channels and the slot RoPE tables,
    and allocate the per-step K/V caches. After that, next_chunk() allocates nothing that
    grows with the stream and never syncs with the host. Given a VAE, next_frames() also
    makes each chunk's frames people see (decoded, with the reference decoder where one is
    given, and pasted into the scene's canvas).
    """

    def __init__(
        self,
        model: WanDiT,
        stream: StreamConfig,
        scene: SceneConditioning,
        *,
        seed: int = 0,
        vae: WanVAE | None = None,
        reference_decoder: ReferenceDecoder | None = None,
    ):
        cfg = model.cfg
        scene.validate(cfg, stream)
        param = model.patch_embedding.weight
        self.device = param.device
        if scene.cast is not None:  # route() indexes the chunk's inputs with it on the device
            scene = replace(scene, cast=scene.cast.to(self.device))
        self.model, self.stream, self.scene = model, stream, scene
        self.dit = model  # what runs the chunk forward (a parallel wrapper in subclasses)
        self.sampler = FewStepSampler(stream.denoise_times)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.chunk_index = 0
        with torch.inference_mode():
            self.context_kv = model.context_kv(
                scene.context.to(self.device),
                None if scene.image_tokens is None else scene.image_tokens.to(self.device),
            )
            self.cond_first, self.cond_rest = (
                scene.reference_channels(stream, cfg.temporal_stride, first=first).to(self.device)
                for first in (True, False)
            )
            self.slots = self.window_slots(
                slot_tables(
                    cfg, stream.chunk_latent_frames, stream.grid_h, stream.grid_w, self.device
                )
            )
            self.timesteps = self.sampler.step_timesteps(scene.batch, self.device)
            self.face_masks = scene.face_masks.to(self.device)
            self.cache = self.new_cache(batch=scene.batch, device=self.device, dtype=param.dtype)
        self.presenter = None
        if vae is not None:
            decoder = ChunkDecoder(
                vae, stream.fps, reference_decoder=reference_decoder, picture=scene.picture
            )
            self.presenter = Presenter(decoder, scene.canvas)
        self.latent_shape = chunk_latent_shape(cfg, stream, scene.batch)

    def window_slots(self, tables: tuple[RopeTable, ...]) -> tuple[RopeTable, ...]:
        """The slot RoPE tables as the windows use them (reordered by parallel sessions)."""
        return tables

    def new_cache(self, *, batch: int, device: torch.device, dtype: torch.dtype) -> StreamCache:
        """The stream's K/V caches (a head subset per rank in parallel sessions)."""
        return StreamCache(self.model.cfg, self.stream, batch=batch, device=device, dtype=dtype)

    def next_frames(self, features: torch.Tensor, speaking: torch.Tensor) -> VideoChunk:
        """next_chunk as people see it: its RGB frames with their presentation timestamps."""
        if self.presenter is None:
            raise ValueError("this session has no VAE: pass vae= to decode frames")
        return self.presenter.present(self.next_chunk(features, speaking))

    def next_chunk(self, features: torch.Tensor, speaking: torch.Tensor) -> LatentChunk:
        """Generate the next chunk.

        Args:
            features: [streams, K, Fc, W, Da] speech features of the chunk's latent frames,
                each with its ±window context (from the audio front-end).
            speaking: [streams, K] bool, True for the character that is speaking in this chunk.

        Returns:
            The chunk's latents and where its frames sit in the stream.
        """
        stream, index, cfg = self.stream, self.chunk_index, self.model.cfg
        frames = stream.chunk_latent_frames
        streams, characters = self.scene.streams, self.scene.num_characters
        expected = (streams, characters, frames, cfg.audio_window_frames, cfg.audio_feature_dim)
        if tuple(features.shape) != expected or tuple(speaking.shape) != expected[:2]:
            raise ValueError(
                f"features {tuple(features.shape)} / speaking {tuple(speaking.shape)} do not fit: "
                f"features need [streams, characters, latent frames, window, dim] = "
                f"{expected}, speaking [streams, characters] = {expected[:2]}"
            )
        role = ChunkRole.of(index)
        cond = self.cond_first if role is ChunkRole.SINK else self.cond_rest
        with torch.inference_mode():
            speaking = speaking.to(self.device, torch.bool)
            routed, talking = self.scene.route(features.to(self.device), speaking)
            audio = self.dit.audio_context(
                AudioConditioning(
                    features=routed,
                    speaking=talking[:, :, None].expand(-1, -1, frames),
                    face_masks=self.face_masks,
                )
            )

            def denoise(step: int, x: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
                window = StreamingWindow(role, self.slots, self.cache.steps[step])
                return self.dit.forward_chunk(
                    x, cond, timestep, context_kv=self.context_kv, audio=audio, window=window
                )

            latents = self.sampler.sample(
                denoise,
                self.latent_shape,
                generator=self.generator,
                device=self.device,
                timesteps=self.timesteps,
            )
        self.chunk_index += 1
        first_frames = stream.first_chunk_video_frames
        return LatentChunk(
            index=index,
            latents=latents,
            first_frame=0
            if index == 0
            else first_frames + (index - 1) * stream.video_frames_per_chunk,
            num_frames=first_frames if index == 0 else stream.video_frames_per_chunk,
            speaking=speaking,
        )
