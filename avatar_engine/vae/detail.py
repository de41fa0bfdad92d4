"""The reference picture's detail that a small VAE loses, put back into each decoded frame
wherever the frame still shows the picture.

A VAE as small as the embedded one reconstructs a picture blurred: fur, hair, print and
glasses come back as smudges, in every frame. The loss is the same in every frame that shows
the picture unchanged, so it is measured once per stream, on the picture itself, and added
back to each frame. Where the frame has moved away from the picture (an open mouth, a
blink, a turned head) the picture's detail would be misplaced, so it fades out with the
size of the change.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from avatar_engine.chunks import VideoChunk
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.video import UINT8_MAX, from_uint8_frames, to_uint8_frames

STILL_LATENT_FRAMES = 5  # a still this long decodes within about a level of its steady state
CHANGE_WINDOW = 7  # pixels over which a frame's change is averaged (about a latent cell)
CHANGE_TOLERANCE = 32.0  # mean change (of 255) at which e^-1 of the detail is kept


def encode_still(vae: WanVAE, picture: torch.Tensor) -> torch.Tensor:
    """[B, z, STILL_LATENT_FRAMES, h, w]: the latents of the picture held still. The last is
    close to what every later latent frame of a still picture encodes to (on the shipped VAE,
    a tenth as far from it as the image latent is).

    Args:
        picture: [B, H, W, 3] uint8 RGB.
    """
    param = vae.conv1.weight
    frames = 1 + vae.cfg.stride[0] * (STILL_LATENT_FRAMES - 1)
    pixels = from_uint8_frames(picture).to(param.device, param.dtype)
    still = pixels[:, :, None].expand(-1, -1, frames, -1, -1)  # [B, 3, T, H, W]
    with torch.inference_mode():
        return vae.encode_video(still)


@dataclass(frozen=True)
class ReferenceDetail:
    """One stream's picture as its decoder shows it, and what that loses."""

    decoded: torch.Tensor  # [B, H, W, 3] float, 0..255: the still picture through the VAE
    residual: torch.Tensor  # [B, H, W, 3] float: the picture minus `decoded`

    @classmethod
    def of(
        cls, vae: WanVAE, picture: torch.Tensor, still: torch.Tensor | None = None
    ) -> ReferenceDetail:
        """Measure it by decoding the picture held still.

        Args:
            picture: [B, H, W, 3] uint8 RGB.
            still: encode_still(vae, picture), when the caller already has it.
        """
        if still is None:
            still = encode_still(vae, picture)
        with torch.inference_mode():
            video, _ = vae.decode(still)
        decoded = to_uint8_frames(video)[:, -1].float().cpu()  # [B, H, W, 3]
        return cls(decoded=decoded, residual=picture.float() - decoded)

    def restore(self, chunk: VideoChunk) -> VideoChunk:
        """The chunk with the picture's detail added where its frames still show the picture."""
        pixels = chunk.frames.float()  # [B, T, H, W, 3]
        change = (pixels - self.decoded[:, None]).abs().mean(dim=-1)  # [B, T, H, W]
        change = F.avg_pool2d(
            change.flatten(0, 1)[:, None],
            CHANGE_WINDOW,
            stride=1,
            padding=CHANGE_WINDOW // 2,
            count_include_pad=False,
        ).view_as(change)
        keep = torch.exp(-((change / CHANGE_TOLERANCE) ** 2))[..., None]
        restored = pixels + keep * self.residual[:, None]
        return replace(chunk, frames=restored.round_().clamp_(0, UINT8_MAX).to(torch.uint8))
