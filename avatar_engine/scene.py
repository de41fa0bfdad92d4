"""Characters in a frame: face regions and the reference-image conditioning."""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import torch

from avatar_engine.canvas import Canvas, face_window
from avatar_engine.config import DiTConfig, StreamConfig
from avatar_engine.vae.detail import decode_still, encode_still
from avatar_engine.vae.model import WanVAE
from avatar_engine.vae.reference_decoder import ReferenceDecoder, StillPicture
from avatar_engine.vae.video import from_uint8_frames


@dataclass(frozen=True)
class SceneConditioning:
    """Everything constant about a stream's picture and characters."""

    reference_latent: torch.Tensor  # [B, z, h, w] VAE latent of the reference image
    face_masks: torch.Tensor  # [B, K, gh, gw] 1 inside character k's face region (token grid)
    context: torch.Tensor  # [B, Lt, text_dim] text encoder tokens
    image_tokens: torch.Tensor | None = None  # [B, Li, image_dim] CLIP tokens (I2V-14B)
    blank_latent: torch.Tensor | None = None  # [B, z, h, w] latent of the frames after the
    # first (the reference, or the picture held still: DiTConfig.still_reference); 0 if None
    canvas: Canvas | None = None  # how decoded frames become what people see (the output
    # picture, the window the model animates, the detail restored); None: frames as decoded
    picture: StillPicture | None = None  # the window the model animates, at its size, and its
    # latent held still: what a reference decoder draws its frames against

    @property
    def batch(self) -> int:
        return self.reference_latent.shape[0]

    @property
    def num_characters(self) -> int:
        return self.face_masks.shape[1]

    def validate(self, cfg: DiTConfig, stream: StreamConfig) -> None:
        """Raise a ValueError naming the first input whose shape does not fit the preset."""
        b = self.batch
        expected = {
            "reference_latent": (b, cfg.out_dim, stream.latent_h, stream.latent_w),
            "face_masks": (b, self.num_characters, stream.grid_h, stream.grid_w),
            "context": (b, self.context.shape[1], cfg.text_dim),
        }
        if self.blank_latent is not None:
            expected["blank_latent"] = expected["reference_latent"]
        if self.picture is not None:
            expected["picture.pixels"] = (b, stream.height, stream.width, 3)
            expected["picture.latent"] = expected["reference_latent"]
        if self.canvas is not None:
            expected["canvas.picture"] = (b, stream.output_height, stream.output_width, 3)
            if self.canvas.still is not None:
                expected["canvas.still"] = (b, 3, stream.height, stream.width)
        if self.image_tokens is not None:
            expected["image_tokens"] = (b, self.image_tokens.shape[1], cfg.image_dim)
        for name, shape in expected.items():
            got = tuple(attrgetter(name)(self).shape)
            if got != shape:
                raise ValueError(f"scene {name} has shape {got}; this preset needs {shape}")
        if not 1 <= self.num_characters <= cfg.max_characters:
            raise ValueError(
                f"a scene needs 1 to {cfg.max_characters} characters, got {self.num_characters}"
            )

    def reference_channels(self, stream: StreamConfig, temporal_stride: int, *, first: bool):
        """Wan I2V conditioning channels for one chunk (see reference_channels()).

        Returns:
            [B, temporal_stride + z, Fc, h, w]
        """
        return reference_channels(
            self.reference_latent,
            self.blank_latent,
            stream.chunk_latent_frames,
            temporal_stride,
            first=first,
        )


def blank_latent(
    cfg: DiTConfig, reference: torch.Tensor, still: torch.Tensor | None
) -> torch.Tensor | None:
    """The latent the frames after the first are conditioned on (DiTConfig.reference_every_frame):
    the picture held still (DiTConfig.still_reference) or the reference; None: zeros."""
    if not cfg.reference_every_frame:
        return None
    if not cfg.still_reference:
        return reference
    if still is None:
        raise ValueError("this preset conditions on the picture held still: encode_still() it")
    return still


def reference_channels(
    reference: torch.Tensor,
    blank: torch.Tensor | None,
    frames: int,
    temporal_stride: int,
    *,
    first: bool = True,
) -> torch.Tensor:
    """Wan I2V conditioning channels: [mask | latent] for `frames` latent frames, the stream's
    (a chunk at a time) and training's (a whole clip) alike.

    The first chunk carries the reference in its first latent frame (mask 1 on all
    temporal_stride mask channels there); every other latent frame carries the blank latent
    (zeros if None) and mask 0.

    Args:
        reference, blank: [B, z, h, w].

    Returns:
        [B, temporal_stride + z, frames, h, w]
    """
    rest = torch.zeros_like(reference) if blank is None else blank
    latents = [rest] * frames
    mask = torch.zeros(
        reference.shape[0],
        temporal_stride,
        frames,
        *reference.shape[2:],
        dtype=reference.dtype,
        device=reference.device,
    )  # [B, stride, frames, h, w]
    if first:
        latents[0] = reference
        mask[:, :, 0] = 1
    return torch.cat([mask, torch.stack(latents, dim=2)], dim=1)


def face_mask_from_box(
    stream: StreamConfig, box: tuple[float, float, float, float]
) -> torch.Tensor:
    """Token-grid mask of a face box given as (x0, y0, x1, y1) fractions of the frame.

    A token belongs to the face when its centre lies inside the box. A face smaller than a
    token (a far face in a group photo) gets the one token under the box's centre.

    Returns:
        [gh, gw] float, 1 inside.
    """
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"face box {box} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
    ys = (torch.arange(stream.grid_h) + 0.5) / stream.grid_h
    xs = (torch.arange(stream.grid_w) + 0.5) / stream.grid_w
    inside_y = (ys >= y0) & (ys < y1)
    inside_x = (xs >= x0) & (xs < x1)
    mask = (inside_y[:, None] & inside_x[None, :]).float()
    if not mask.any():
        row = min(int((y0 + y1) / 2 * stream.grid_h), stream.grid_h - 1)
        col = min(int((x0 + x1) / 2 * stream.grid_w), stream.grid_w - 1)
        mask[row, col] = 1
    return mask


def fit_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre-crop an image to the aspect ratio of `size` (H, W) and resize it to that size.

    Args:
        image: [H, W, 3] uint8 RGB, any size.

    Returns:
        [size[0], size[1], 3] uint8.
    """
    if image.dim() != 3 or image.shape[2] != 3 or image.dtype != torch.uint8:
        raise ValueError(f"an image is [H, W, 3] uint8 RGB, got {tuple(image.shape)} {image.dtype}")
    h, w = image.shape[:2]
    target = size[1] / size[0]
    crop_h, crop_w = (h, round(h * target)) if w / h > target else (round(w / target), w)
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    x = image[top : top + crop_h, left : left + crop_w].permute(2, 0, 1)[None].float()
    if tuple(x.shape[2:]) != tuple(size):
        x = torch.nn.functional.interpolate(
            x, size=size, mode="bicubic", antialias=True, align_corners=False
        )  # [1, 3, H', W']
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


def scene_from_image(
    vae: WanVAE,
    cfg: DiTConfig,
    stream: StreamConfig,
    image: torch.Tensor,
    face_boxes: list[tuple[float, float, float, float]],
    *,
    reference_decoder: ReferenceDecoder | None = None,
) -> SceneConditioning:
    """The scene of one picture with a character per face box (the app and the evaluation).

    The model animates a window of the picture around the faces (avatar_engine/canvas.py):
    the window is cut out and resized to the model's frame, and the face boxes moved into it.

    Args:
        image: [output_height, output_width, 3] uint8 RGB (see fit_image).
        face_boxes: per character, (x0, y0, x1, y1) as fractions of the picture.
        reference_decoder: the one the stream will decode with, if any: the detail the canvas
            restores is measured against its frames.
    """
    size = (stream.output_height, stream.output_width)
    if tuple(image.shape) != (*size, 3):
        raise ValueError(
            f"the picture is {tuple(image.shape)}; this stream needs {(*size, 3)}: "
            "fit_image() it first"
        )
    window = face_window(size, (stream.height, stream.width), face_boxes)
    picture = fit_image(window.of(image).contiguous(), (stream.height, stream.width))
    boxes = [window.box_in(box, size) for box in face_boxes]
    param = vae.conv1.weight
    pixels = from_uint8_frames(picture)[None].to(param.device, param.dtype)
    with torch.inference_mode():
        reference = vae.encode_image(pixels).float()  # [1, z, h, w]
    still, held = None, None
    if cfg.still_reference or stream.restore_detail or reference_decoder is not None:
        still = encode_still(vae, picture[None])
        held = StillPicture(picture[None].to(reference.device), still[:, :, -1].float())
    blank = blank_latent(cfg, reference, None if held is None else held.latent)
    canvas = None
    if stream.restore_detail or size != (stream.height, stream.width):
        decoded = None
        if stream.restore_detail:
            decoded = decode_still(vae, still, reference_decoder=reference_decoder, picture=held)
        model = (stream.height, stream.width)
        canvas = Canvas.of(image[None].cpu(), window, model, decoded, face_boxes)
    masks = torch.stack([face_mask_from_box(stream, box) for box in boxes])
    return SceneConditioning(
        reference_latent=reference,
        face_masks=masks[None].to(reference.device),  # [1, K, gh, gw]
        context=torch.zeros(1, cfg.text_len, cfg.text_dim, device=reference.device),
        blank_latent=blank,
        canvas=canvas,
        picture=held,
    )
