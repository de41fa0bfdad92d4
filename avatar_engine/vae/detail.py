"""The picture held still through the VAE: what the DiT is conditioned on after the first
frame, and what the frames people see restore the picture's detail against.

A VAE as small as the embedded one reconstructs a picture blurred: fur, hair, print and
glasses come back as smudges, in every frame. The loss is the same in every frame that shows
the picture unchanged, so it is measured once per stream, on the picture held still, and
added back to each frame where it still shows the picture (avatar_engine/canvas.py).
"""

from __future__ import annotations

import torch

from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from avatar_engine.vae.video import from_uint8_frames, to_uint8_frames

STILL_LATENT_FRAMES = 5  # a still this long decodes within about a level of its steady state


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


def decode_still(
    vae: WanVAE,
    still: torch.Tensor,
    *,
    reference_decoder: ReferenceDecoder | None = None,
    picture: StillPicture | None = None,
) -> torch.Tensor:
    """[B, H, W, 3] float 0..255: the picture as the stream's decoder shows it held still (the
    last frame of encode_still's latents, decoded), what canvas.Canvas measures the lost detail
    against.

    Args:
        still: [B, z, STILL_LATENT_FRAMES, h, w], from encode_still.
        reference_decoder: the stream's, if it has one, and then `picture`, the picture it
            draws against.
    """
    with torch.inference_mode():
        if reference_decoder is None:
            video, _ = vae.decode(still)
        else:
            if picture is None:
                raise ValueError("the reference decoder draws against the picture: pass it")
            video, _ = reference_decoder.decode(still, reference_decoder.start(picture))
    return to_uint8_frames(video)[:, -1].float().cpu()
