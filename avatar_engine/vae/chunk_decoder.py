"""One stream's decoding: latent chunks in, RGB frames with presentation timestamps out."""

from __future__ import annotations

import torch

from avatar_engine.chunks import LatentChunk, VideoChunk
from avatar_engine.vae.model import DecoderState, WanVAE
from avatar_engine.vae.video import to_uint8_frames


class ChunkDecoder:
    """Decodes one stream's latent chunks in order, carrying the VAE decoder's state."""

    def __init__(self, vae: WanVAE, fps: int):
        self.vae, self.fps = vae, fps
        param = vae.conv2.weight
        self.device, self.dtype = param.device, param.dtype
        self.state: DecoderState | None = None
        self.next_index = 0

    def decode(self, chunk: LatentChunk) -> VideoChunk:
        if chunk.index != self.next_index:
            raise ValueError(
                f"chunk {chunk.index} arrived where chunk {self.next_index} was expected; a "
                "stream's chunks must be decoded in order (start a new ChunkDecoder per stream)"
            )
        with torch.inference_mode():
            video, self.state = self.vae.decode(
                chunk.latents.to(self.device, self.dtype), self.state
            )  # [B, 3, T, H, W]
            frames = to_uint8_frames(video).cpu()  # [B, T, H, W, 3]
        if frames.shape[1] != chunk.num_frames:
            raise RuntimeError(
                f"chunk {chunk.index} decoded to {frames.shape[1]} frames, not {chunk.num_frames}"
            )
        self.next_index += 1
        frame_index = torch.arange(chunk.first_frame, chunk.first_frame + chunk.num_frames)
        return VideoChunk(
            index=chunk.index,
            first_frame=chunk.first_frame,
            frames=frames,
            pts=frame_index.double() / self.fps,
            speaking=chunk.speaking.cpu(),
        )
