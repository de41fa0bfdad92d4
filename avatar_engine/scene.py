"""Characters in a frame: face regions and the reference-image conditioning."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from avatar_engine.canvas import Canvas, Composite, face_windows
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
    canvas: Canvas | Composite | None = None  # how decoded frames become what people see
    # (the output picture, the windows the model animates, the detail restored); None: frames
    # as decoded
    picture: StillPicture | None = None  # the windows the model animates, at its size, and
    # their latents held still: what a reference decoder draws its frames against
    cast: torch.Tensor | None = None  # [B, k] long: the scene's characters whose faces batch
    # element b holds, when the batch is one picture's windows (one per face: [[0], [1], ...]);
    # None: each batch element is a stream of its own, with all the scene's characters

    @property
    def batch(self) -> int:
        """The batch the model draws: streams, or one picture's windows."""
        return self.reference_latent.shape[0]

    @property
    def streams(self) -> int:
        """The pictures people see: the batch of the speech and speaking flags callers give."""
        return self.batch if self.cast is None else 1

    @property
    def num_characters(self) -> int:
        """The characters callers give speech and speaking flags for."""
        return self.face_masks.shape[1] if self.cast is None else self.cast.numel()

    def route(
        self, features: torch.Tensor, speaking: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A stream's speech and speaking flags as the model's batch takes them: to each
        window, its characters' (unchanged where the batch is streams).

        Args:
            features: [streams, K, Fc, W, Da]; speaking: [streams, K]; both on the cast's
                device (a session moves the cast there once).

        Returns:
            [B, k, Fc, W, Da] and [B, k].
        """
        if self.cast is None:
            return features, speaking
        return features[0, self.cast], speaking[0, self.cast]

    def validate(self, cfg: DiTConfig, stream: StreamConfig) -> None:
        """Raise a ValueError naming the first input whose shape does not fit the preset."""
        b, k = self.batch, self.face_masks.shape[1]
        latent = (b, cfg.out_dim, stream.latent_h, stream.latent_w)
        expected = {
            "reference_latent": (self.reference_latent, latent),
            "face_masks": (self.face_masks, (b, k, stream.grid_h, stream.grid_w)),
            "context": (self.context, (b, self.context.shape[1], cfg.text_dim)),
        }
        if self.cast is not None:
            expected["cast"] = (self.cast, (b, k))
        if self.blank_latent is not None:
            expected["blank_latent"] = (self.blank_latent, latent)
        if self.picture is not None:
            expected["picture.pixels"] = (self.picture.pixels, (b, stream.height, stream.width, 3))
            expected["picture.latent"] = (self.picture.latent, latent)
        if self.canvas is not None:
            out = (self.streams, stream.output_height, stream.output_width, 3)
            expected["canvas.picture"] = (self.canvas.picture, out)
            for w, canvas in enumerate(self.canvas.canvases):
                if canvas.still is not None:
                    model = (self.streams, 3, stream.height, stream.width)
                    expected[f"window {w}'s canvas.still"] = (canvas.still, model)
        if self.image_tokens is not None:
            tokens = (b, self.image_tokens.shape[1], cfg.image_dim)
            expected["image_tokens"] = (self.image_tokens, tokens)
        for name, (tensor, shape) in expected.items():
            if tuple(tensor.shape) != shape:
                raise ValueError(
                    f"scene {name} has shape {tuple(tensor.shape)}; this preset needs {shape}"
                )
        if not 1 <= k <= cfg.max_characters:
            raise ValueError(f"a scene needs 1 to {cfg.max_characters} characters, got {k}")
        if self.cast is not None:
            if sorted(self.cast.flatten().tolist()) != list(range(self.cast.numel())):
                raise ValueError(f"a scene's cast names each character once, got {self.cast}")
            if self.canvas is None or len(self.canvas.canvases) != b:
                raise ValueError(f"a scene of {b} windows needs a canvas with as many")

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

    Where the output is larger than the model's frame, the model animates a window of the
    picture around each face, framed as the training portraits frame one (canvas.py): the
    windows are cut out and resized to the model's frame, drawn as a batch, and pasted back
    in turn, so each face is drawn at the size the model learned however many share the
    picture. At the model's size the one window is the whole picture, with every face in it.

    Args:
        image: [output_height, output_width, 3] uint8 RGB (see fit_image).
        face_boxes: per character, (x0, y0, x1, y1) as fractions of the picture.
        reference_decoder: the one the stream will decode with, if any: the detail the canvas
            restores is measured against its frames.
    """
    size, model = (stream.output_height, stream.output_width), (stream.height, stream.width)
    if tuple(image.shape) != (*size, 3):
        raise ValueError(
            f"the picture is {tuple(image.shape)}; this stream needs {(*size, 3)}: "
            "fit_image() it first"
        )
    framed = face_windows(size, model, face_boxes)
    per_face = size != model  # a window per face, as face_windows frames them
    pictures = torch.stack([fit_image(w.of(image).contiguous(), model) for w, _ in framed])
    param = vae.conv1.weight
    pixels = from_uint8_frames(pictures).to(param.device, param.dtype)  # [B, 3, h, w]
    with torch.inference_mode():
        reference = vae.encode_image(pixels).float()  # [B, z, h, w]
    still, held = None, None
    if cfg.still_reference or stream.restore_detail or reference_decoder is not None:
        still = encode_still(vae, pictures)
        held = StillPicture(pictures.to(reference.device), still[:, :, -1].float())
    blank = blank_latent(cfg, reference, None if held is None else held.latent)
    decoded = None
    if stream.restore_detail:
        decoded = decode_still(vae, still, reference_decoder=reference_decoder, picture=held)
    canvases = []
    if per_face or stream.restore_detail:
        for b, (window, boxes) in enumerate(framed):
            still_b = None if decoded is None else decoded[b : b + 1]
            canvases.append(Canvas.of(image[None].cpu(), window, model, still_b, boxes))
    canvas = Composite(tuple(canvases)) if per_face else (canvases[0] if canvases else None)
    masks = torch.stack(
        [
            torch.stack([face_mask_from_box(stream, window.box_in(box, size)) for box in boxes])
            for window, boxes in framed
        ]
    )  # [B, k, gh, gw]
    return SceneConditioning(
        reference_latent=reference,
        face_masks=masks.to(reference.device),
        context=torch.zeros(len(framed), cfg.text_len, cfg.text_dim, device=reference.device),
        blank_latent=blank,
        canvas=canvas,
        picture=held,
        cast=torch.arange(len(face_boxes))[:, None] if per_face else None,
    )
