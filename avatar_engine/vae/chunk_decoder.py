"""One stream's decoding: latent chunks in, RGB frames with presentation timestamps out."""

from __future__ import annotations

import torch

from avatar_engine.chunks import LatentChunk, VideoChunk
from avatar_engine.vae.model import DecoderState, WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder, ReferenceState, StillPicture
from avatar_engine.vae.video import to_uint8_frames


class ChunkDecoder:
    """Decodes one stream's latent chunks in order, carrying the decoder's state: the VAE's
    own decoder, or, where the model ships one, the reference decoder, which draws each frame
    against the stream's picture (vae/reference_decoder.py)."""

    def __init__(
        self,
        vae: WanVAE,
        fps: int,
        *,
        reference_decoder: ReferenceDecoder | None = None,
        picture: StillPicture | None = None,
    ):
        """picture: the scene's (SceneConditioning.picture); the reference decoder needs it."""
        self.vae, self.fps, self.reference_decoder = vae, fps, reference_decoder
        param = vae.conv2.weight
        self.device, self.dtype = param.device, param.dtype
        self.state: DecoderState | ReferenceState | None = None
        if reference_decoder is not None:
            if picture is None:
                raise ValueError("the reference decoder draws against the scene's picture: pass it")
            with torch.inference_mode():
                self.state = reference_decoder.start(picture)
        self.next_index = 0

    def decode(self, chunk: LatentChunk) -> VideoChunk:
        if chunk.index != self.next_index:
            raise ValueError(
                f"chunk {chunk.index} arrived where chunk {self.next_index} was expected; a "
                "stream's chunks must be decoded in order (start a new ChunkDecoder per stream)"
            )
        latents = chunk.latents.to(self.device, self.dtype)
        with torch.inference_mode():
            if isinstance(self.state, ReferenceState):
                video, self.state = self.reference_decoder.decode(latents, self.state)
            else:
                video, self.state = self.vae.decode(latents, self.state)  # [B, 3, T, H, W]
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
