"""The canvas: the picture people see. A window of it around each face is what the DiT
animates (a scene's faces are its batch), and the model's frames are pasted back into it at
full resolution.

Every real-time talking head that runs on a CPU works this way (Wav2Lip, MuseTalk, LiteAvatar,
LivePortrait): the model draws a small frame around the face, and the rest of what people see
stays their own picture. Here, in each window pixel:
- where a frame still shows the picture, the picture comes back at the output's resolution:
  the detail that the small VAE and the model's size lose is measured once per stream, as the
  picture minus its still decode, and added back (the weight falls with the frame's change);
- where the frame has changed (an open mouth, a blink), the model's frame, upsampled;
- only the faces are the model's: around each face (the jaw's drop included) the model's
  frame fades into the picture over a soft edge, as MuseTalk and Wav2Lip paste back only the
  face, so hair, clothes and background stay the person's own picture whatever the model does
  there; and the window's edges inside the picture fade into it too.

With the output at the model's size the window is the whole frame and nothing is resampled:
only the detail is restored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from avatar_engine.chunks import LatentChunk, VideoChunk
from avatar_engine.vae.chunk_decoder import ChunkDecoder
from avatar_engine.vae.video import UINT8_MAX

Box = tuple[float, float, float, float]  # (x0, y0, x1, y1), fractions of a frame

# A face box's width and height as fractions of the window: how the training portraits frame
# a face (drawn and LFW faces are 50-72% of the frame wide, 55-80% high), so the model sees
# faces at the scale it learned them.
FACE_WIDTH_SHARE = 0.6
FACE_HEIGHT_SHARE = 0.66
FEATHER_SHARE = 0.08  # the window's edges fade into the picture over this share of its side
# Around a face box (x0, y0, x1, y1), the model's region: an ellipse this much wider and taller
# than the box, its centre this share of the box's height lower (the jaw drops while speaking),
# its edge fading over FACE_EDGE of its radius.
FACE_REGION_WIDTH = 1.3
FACE_REGION_HEIGHT = 1.4
FACE_REGION_DROP = 0.1
FACE_EDGE = 0.2
CHANGE_WINDOW = 7  # model pixels over which a frame's change is averaged (about a latent cell)
CHANGE_TOLERANCE = 32.0  # mean change (of 255) at which e^-1 of the detail is kept


@dataclass(frozen=True)
class Window:
    """A rectangle of the output frame, in pixels."""

    top: int
    left: int
    height: int
    width: int

    def of(self, frames: torch.Tensor) -> torch.Tensor:
        """The window's pixels of [..., H, W, C] frames (a view)."""
        return frames[..., self.top : self.top + self.height, self.left : self.left + self.width, :]

    def box_in(self, box: Box, size: tuple[int, int]) -> Box:
        """A box given as fractions of a frame of `size` (H, W), as fractions of the window
        (clipped to it)."""
        h, w = size
        x0, y0, x1, y1 = box
        xs = [min(max((x * w - self.left) / self.width, 0.0), 1.0) for x in (x0, x1)]
        ys = [min(max((y * h - self.top) / self.height, 0.0), 1.0) for y in (y0, y1)]
        return (xs[0], ys[0], xs[1], ys[1])


def face_window(size: tuple[int, int], model: tuple[int, int], boxes: Sequence[Box]) -> Window:
    """The window the model animates: around all the faces, framed as the training portraits
    frame one, inside the frame; the whole frame when the output is the model's size.

    Args:
        size: the output frame's (H, W).
        model: the model frame's (h, w); the window has its aspect ratio.
        boxes: the characters' face boxes, fractions of the output frame.
    """
    out_h, out_w = size
    h, w = model
    if (out_h, out_w) == (h, w) or not boxes:
        return Window(0, 0, out_h, out_w)
    aspect = w / h
    x0, y0 = min(b[0] for b in boxes) * out_w, min(b[1] for b in boxes) * out_h
    x1, y1 = max(b[2] for b in boxes) * out_w, max(b[3] for b in boxes) * out_h
    height = max((y1 - y0) / FACE_HEIGHT_SHARE, (x1 - x0) / FACE_WIDTH_SHARE / aspect, h)
    height = min(height, out_h, out_w / aspect)
    win_h, win_w = min(round(height), out_h), min(round(height * aspect), out_w)
    top = min(max(round((y0 + y1 - win_h) / 2), 0), out_h - win_h)
    left = min(max(round((x0 + x1 - win_w) / 2), 0), out_w - win_w)
    return Window(top, left, win_h, win_w)


def face_windows(
    size: tuple[int, int], model: tuple[int, int], boxes: Sequence[Box]
) -> list[tuple[Window, list[Box]]]:
    """The windows the model animates and the face boxes in each: where the output is larger
    than the model's frame, one per face, framed as a lone face (a Composite of canvases, one
    batch element each); at the model's size, the whole frame with every face.

    Args:
        size: the output frame's (H, W); model: the model frame's (h, w).
        boxes: the characters' face boxes, fractions of the output frame.
    """
    if tuple(size) == tuple(model):
        return [(face_window(size, model, boxes), list(boxes))]
    return [(face_window(size, model, [box]), [box]) for box in boxes]


def feather(window: Window, size: tuple[int, int]) -> torch.Tensor:
    """[h, w] blend weight of the window: 1 inside, falling smoothly to 0 at each edge that
    lies inside the frame of `size` (an edge on the frame's border has nothing to fade into)."""
    ramp = max(round(FEATHER_SHARE * min(window.height, window.width)), 1)

    def along(n: int, start_inside: bool, end_inside: bool) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32) + 0.5
        weight = torch.ones(n)
        if start_inside:
            weight = torch.minimum(weight, pos / ramp)
        if end_inside:
            weight = torch.minimum(weight, (n - pos) / ramp)
        return weight * weight * (3 - 2 * weight)  # smoothstep

    rows = along(window.height, window.top > 0, window.top + window.height < size[0])
    cols = along(window.width, window.left > 0, window.left + window.width < size[1])
    return rows[:, None] * cols[None, :]


def face_region(window: Window, size: tuple[int, int], boxes: Sequence[Box]) -> torch.Tensor:
    """[h, w] weight of the model's frame in the window: 1 over the faces (each box grown to
    an ellipse that takes the jaw's drop in), 0 away from them, smooth between.

    Args:
        size: the output frame's (H, W); boxes are fractions of it.
    """
    rows = torch.arange(window.height, dtype=torch.float32) + 0.5 + window.top
    cols = torch.arange(window.width, dtype=torch.float32) + 0.5 + window.left
    y, x = rows[:, None] / size[0], cols[None, :] / size[1]  # output fractions
    weight = torch.zeros(window.height, window.width)
    for x0, y0, x1, y1 in boxes:
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 + FACE_REGION_DROP * (y1 - y0)
        rx, ry = FACE_REGION_WIDTH * (x1 - x0) / 2, FACE_REGION_HEIGHT * (y1 - y0) / 2
        d = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)  # 1 on the ellipse
        inside = ((1 - d) / FACE_EDGE).clamp(0, 1)
        weight = torch.maximum(weight, inside * inside * (3 - 2 * inside))  # smoothstep
    return weight


@dataclass(frozen=True)
class Canvas:
    """One stream's output picture, its window, and the detail the model's frames lose. All
    per-chunk work is over `paste`, the part of the picture the model's frames reach."""

    picture: torch.Tensor  # [B, H, W, 3] uint8: the output frame's picture
    window: Window  # what the model animates, in the output frame's pixels
    paste: Window  # the part of the window where `blend` > 0, in the output frame's pixels
    blend: torch.Tensor  # [ph, pw] weight of the model's frame against the picture over
    # `paste`: the faces' regions, faded at the window's inner edges
    grid: torch.Tensor | None  # [1, ph, pw, 2] where each `paste` pixel samples the model's
    # frame (grid_sample's coordinates); None where the window is the model's size
    base: torch.Tensor  # [B, 3, ph, pw] float: the picture over `paste`
    still: torch.Tensor | None  # [B, 3, h, w] float 0..255: the window's picture held still
    # through the VAE, at the model's size; None: no detail restored
    residual: torch.Tensor | None  # [B, 3, ph, pw] float: `base` minus `still` resampled

    @classmethod
    def of(
        cls,
        picture: torch.Tensor,
        window: Window,
        model: tuple[int, int],
        still: torch.Tensor | None,
        faces: Sequence[Box] | None = None,
    ) -> Canvas:
        """Args:
        picture: [B, H, W, 3] uint8 at the output size.
        model: the model frame's (h, w), which spans the window.
        still: [B, h, w, 3] float, the picture's window held still and decoded; None: no
            detail restored.
        faces: the characters' face boxes (fractions of the picture), the model's regions;
            None or none: the whole window is the model's.
        """
        out = tuple(picture.shape[1:3])
        blend = feather(window, out)
        if faces:
            blend = blend * face_region(window, out, faces)
        rows, cols = (torch.nonzero(blend.amax(dim=d)).flatten() for d in (1, 0))
        top, left = int(rows[0]), int(cols[0])
        paste = Window(
            window.top + top, window.left + left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1
        )
        blend = blend[top : top + paste.height, left : left + paste.width]
        base = paste.of(picture).permute(0, 3, 1, 2).float()  # [B, 3, ph, pw]
        grid = None if tuple(model) == (window.height, window.width) else _grid(window, paste)
        canvas = cls(picture, window, paste, blend, grid, base, None, None)
        if still is None:
            return canvas
        still = still.permute(0, 3, 1, 2).float().contiguous()  # [B, 3, h, w]
        residual = base - canvas.sample(still[:, None])[:, 0]
        return replace(canvas, still=still, residual=residual)

    @property
    def size(self) -> tuple[int, int]:
        """The output frame's (H, W)."""
        return tuple(self.picture.shape[1:3])

    @property
    def canvases(self) -> tuple[Canvas, ...]:
        """Its windows' canvases, as a Composite has them: itself."""
        return (self,)

    def sample(self, frames: torch.Tensor) -> torch.Tensor:
        """Model-size frames [B, T, C, h, w] resampled (bilinear) over `paste`:
        [B, T, C, ph, pw]."""
        b, t, c, h, w = frames.shape
        if self.grid is None:
            top, left = self.paste.top - self.window.top, self.paste.left - self.window.left
            return frames[..., top : top + self.paste.height, left : left + self.paste.width]
        sampled = F.grid_sample(
            frames.reshape(b * t, c, h, w),
            self.grid.expand(b * t, -1, -1, -1),
            mode="bilinear",
            padding_mode="border",
            align_corners=False,
        )  # [B*T, C, ph, pw]
        return sampled.view(b, t, c, self.paste.height, self.paste.width)

    def detail_weight(self, change: torch.Tensor) -> torch.Tensor:
        """[B, T, 1, h, w]: how much of the picture's detail each model pixel keeps, from 1
        where the frame shows the still picture to 0 where it has changed.

        Args:
            change: [B, T, 3, h, w] the frames minus `still`.
        """
        b, t, _, h, w = change.shape
        mean = change.abs().mean(dim=2).view(b * t, 1, h, w)  # [B*T, 1, h, w]
        mean = F.avg_pool2d(
            mean, CHANGE_WINDOW, stride=1, padding=CHANGE_WINDOW // 2, count_include_pad=False
        )
        return torch.exp(-((mean / CHANGE_TOLERANCE) ** 2)).view(b, t, 1, h, w)

    def present(
        self, chunk: VideoChunk, *, detail: bool = True, onto: torch.Tensor | None = None
    ) -> VideoChunk:
        """The chunk as people see it: [B, T, H, W, 3] uint8 output frames.

        Args:
            chunk: frames [B, T, h, w, 3] uint8 as decoded, at the model's size.
            detail: restore the picture's detail (False: the model's frames alone, upsampled,
                as the evaluation's raw view).
            onto: [B, T, H, W, 3] uint8 output frames to paint the chunk's into (another
                window's faces already in them), in place; None: a copy of the picture.
        """
        frames = chunk.frames.permute(0, 1, 4, 2, 3).float().contiguous()  # [B, T, 3, h, w]
        if detail and self.residual is not None:
            # shown = up(frame) + up(keep) * residual, and base = up(still) + residual, so
            # shown - base = up(frame - still) - up(1 - keep) * residual: one resampling of
            # four low-resolution channels, then two full-resolution products.
            change = frames - self.still[:, None]
            lost = 1 - self.detail_weight(change)
            sampled = self.sample(torch.cat([change, lost], dim=2))  # [B, T, 4, ph, pw]
            delta = sampled[:, :, :3] - sampled[:, :, 3:] * self.residual[:, None]
        else:
            delta = self.sample(frames) - self.base[:, None]  # [B, T, 3, ph, pw]
        if onto is None:
            out = self.picture[:, None].repeat(1, frames.shape[1], 1, 1, 1)  # [B, T, H, W, 3]
            shown = delta.mul_(self.blend).add_(self.base[:, None])
        else:  # blend against what is there: a neighbour's face may reach into `paste`
            out = onto
            there = self.paste.of(out).permute(0, 1, 4, 2, 3).float()  # [B, T, 3, ph, pw]
            shown = delta.add_(self.base[:, None]).sub_(there).mul_(self.blend).add_(there)
        self.paste.of(out).copy_(shown.round_().clamp_(0, UINT8_MAX).permute(0, 1, 3, 4, 2))
        return replace(chunk, frames=out)


@dataclass(frozen=True)
class Composite:
    """A picture whose faces each have a window of their own, framed as the training portraits
    frame one face: the model animates the windows as a batch (element b is window b), and
    each window's frames are pasted into the picture in turn.

    This is how a scene of several characters keeps each face at the size the model learned:
    one window around all of them would draw each face at a fraction of that size.
    """

    canvases: tuple[Canvas, ...]  # per window; each one's picture is the same [1, H, W, 3]

    @property
    def picture(self) -> torch.Tensor:
        """[1, H, W, 3] uint8: the output frame's picture."""
        return self.canvases[0].picture

    @property
    def size(self) -> tuple[int, int]:
        return self.canvases[0].size

    def present(self, chunk: VideoChunk, *, detail: bool = True) -> VideoChunk:
        """The chunk as people see it: [1, T, H, W, 3] uint8 output frames.

        Args:
            chunk: frames [windows, T, h, w, 3] uint8 as decoded, at the model's size.
            detail: as Canvas.present.
        """
        if chunk.frames.shape[0] != len(self.canvases):
            raise ValueError(
                f"{chunk.frames.shape[0]} decoded windows for a picture of {len(self.canvases)}"
            )
        out = None
        for b, canvas in enumerate(self.canvases):
            part = replace(chunk, frames=chunk.frames[b : b + 1])
            out = canvas.present(part, detail=detail, onto=out).frames
        return replace(chunk, frames=out)


class Presenter:
    """A stream's latent chunks as the frames people see: decoded in order, then, where the
    scene has a canvas, pasted into it. The one place every runtime makes its frames (in the
    process that decodes them)."""

    def __init__(self, decoder: ChunkDecoder, canvas: Canvas | Composite | None):
        self.decoder, self.canvas = decoder, canvas

    def present(self, chunk: LatentChunk) -> VideoChunk:
        video = self.decoder.decode(chunk)
        return video if self.canvas is None else self.canvas.present(video)


def _grid(window: Window, paste: Window) -> torch.Tensor:
    """[1, ph, pw, 2] grid_sample coordinates (x, y) of `paste`'s pixel centres in the model's
    frame, which spans `window` (align_corners=False: -1 and 1 are the frame's outer edges,
    as F.interpolate resizes)."""
    rows = torch.arange(paste.height, dtype=torch.float32) + 0.5 + (paste.top - window.top)
    cols = torch.arange(paste.width, dtype=torch.float32) + 0.5 + (paste.left - window.left)
    y = (rows / window.height * 2 - 1)[:, None].expand(-1, paste.width)
    x = (cols / window.width * 2 - 1)[None, :].expand(paste.height, -1)
    return torch.stack([x, y], dim=-1)[None]
