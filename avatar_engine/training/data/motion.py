"""Motion driven by speech: the jaw and lips open with the speech envelope, the lips round with
its spectral shape, and the mouth's inside shows between them (mouth.py); blinks and a slight
head sway run all the time, so a listener moves too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from avatar_engine.framing import Portrait
from avatar_engine.training.data.mouth import MouthLook, draw_inside, lip_gap

JAW_DROP = 0.08  # at full opening the lips part by 1.6 × this of the face's height (13%)
LIP_BAND = 0.06  # of the face's height above the lip line, the upper lip that lifts
ROUNDING_SQUEEZE = 0.45  # a fully rounded mouth is drawn from this much wider around it
SWAY_PX = 0.35  # amplitude of the head sway, pixels
ENVELOPE_RANGE_DB = 15.0  # opening goes 0 -> 1 over this many dB below the utterance's peak: a
# narrow range closes the mouth between syllables, as speech does (30 dB held it half open)


@dataclass(frozen=True)
class MotionTrack:
    """One character's motion, per video frame."""

    opening: np.ndarray  # [T] jaw/lip opening in [0, 1]
    rounding: np.ndarray  # [T] 0 = wide lips, 1 = rounded (narrow)
    blink: np.ndarray  # [T] eyelid closure in [0, 1]
    sway: np.ndarray  # [T, 2] head offset (x, y) in pixels
    look: MouthLook  # what the open mouth shows

    @property
    def frames(self) -> int:
        return len(self.opening)


def _smooth(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    out, level = np.empty_like(x), 0.0
    for i, v in enumerate(x):
        level += (attack if v > level else release) * (v - level)
        out[i] = level
    return out


def _ambient(frames: int, fps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Blinks every 2-5 s and a slow sway."""
    blink = np.zeros(frames)
    t = rng.uniform(0.3, 3.0)
    while t * fps < frames:
        start = int(t * fps)
        shape = np.array([0.5, 1.0, 1.0, 0.6, 0.25])
        blink[start : start + len(shape)] = shape[: frames - start]
        t += rng.uniform(2.0, 5.0)
    noise = rng.normal(size=(frames + 2 * fps, 2))
    kernel = np.hanning(fps)[:, None]
    sway = np.stack([np.convolve(noise[:, i], kernel[:, 0], mode="same") for i in range(2)], 1)
    sway = sway[fps : fps + frames]
    sway = SWAY_PX * sway / (np.abs(sway).max() + 1e-6)
    return blink, sway


def speech_track(
    wave: np.ndarray, sample_rate: int, fps: int, frames: int, rng: np.random.Generator
) -> MotionTrack:
    """Motion of a speaking character: video frame v's opening follows the audio under it."""
    hop = sample_rate // fps
    padded = np.pad(wave, (0, max(0, frames * hop - len(wave))))[: frames * hop]
    per_frame = padded.reshape(frames, hop)
    rms_db = 10 * np.log10(np.mean(per_frame**2, axis=1) + 1e-10)
    peak = rms_db.max()
    opening = np.clip((rms_db - (peak - ENVELOPE_RANGE_DB)) / ENVELOPE_RANGE_DB, 0, 1) ** 1.5
    spectrum = np.abs(np.fft.rfft(per_frame * np.hanning(hop), axis=1))
    freqs = np.fft.rfftfreq(hop, 1 / sample_rate)
    centroid = (spectrum * freqs).sum(1) / (spectrum.sum(1) + 1e-9)
    rounding = np.clip(1.0 - (centroid - 500.0) / 2500.0, 0, 1) * (opening > 0.05)
    blink, sway = _ambient(frames, fps, rng)
    return MotionTrack(
        _smooth(opening, 0.8, 0.5),
        _smooth(rounding, 0.5, 0.5),
        blink,
        sway,
        MouthLook.random(rng),
    )


def listening_track(frames: int, fps: int, rng: np.random.Generator) -> MotionTrack:
    """A listener: mouth closed, blinking and swaying."""
    blink, sway = _ambient(frames, fps, rng)
    return MotionTrack(np.zeros(frames), np.zeros(frames), blink, sway, MouthLook.random(rng))


def mouth_region(mouth: tuple[float, float, float], size: int) -> tuple[slice, slice]:
    """(rows, columns) of a size x size frame that a mouth (centre x, y, half width) and its
    jaw's drop cover: where the speech shows."""
    mx, my, mw = mouth
    x0, x1 = int((mx - 1.4 * mw) * size), int(np.ceil((mx + 1.4 * mw) * size))
    y0, y1 = int((my - 0.7 * mw) * size), int(np.ceil((my + 1.8 * mw) * size))
    return slice(max(0, y0), y1), slice(max(0, x0), x1)


def mouth_mask(mouths, frame: int, origin: tuple[int, int], shape) -> torch.Tensor:
    """[h, w] 1 where a crop at origin (top, left) of a frame x frame picture covers a mouth."""
    mask = torch.zeros(shape)
    for mouth in mouths:
        rows, cols = mouth_region(mouth, frame)
        mask[
            max(rows.start - origin[0], 0) : max(rows.stop - origin[0], 0),
            max(cols.start - origin[1], 0) : max(cols.stop - origin[1], 0),
        ] = 1
    return mask


def _window(y, x, box, feather: float) -> torch.Tensor:
    x0, y0, x1, y1 = box
    wx = ((x - x0) / feather).clamp(0, 1) * ((x1 - x) / feather).clamp(0, 1)
    wy = ((y - y0) / feather).clamp(0, 1) * ((y1 - y) / feather).clamp(0, 1)
    return wx * wy


def _full_gap(who: Portrait) -> float:
    """How far the lips part at full opening, as a fraction of the frame."""
    x0, y0, x1, y1 = who.face_box
    return JAW_DROP * (y1 - y0) * 1.6


def animate(
    image: torch.Tensor, characters: list[Portrait], tracks: list[MotionTrack]
) -> torch.Tensor:
    """Warp a picture into a video, each character moving by its track.

    Args:
        image: [H, W, 3] float in [0, 1], the picture all characters are in.
        characters: their landmarks in that picture.
        tracks: per character, all with T frames.

    Returns:
        [T, H, W, 3] float in [0, 1].
    """
    size_h, size_w = image.shape[:2]
    frames = tracks[0].frames
    ys = (torch.arange(size_h, dtype=torch.float32) + 0.5) / size_h
    xs = (torch.arange(size_w, dtype=torch.float32) + 0.5) / size_w
    y, x = ys[:, None].expand(size_h, size_w), xs[None, :].expand(size_h, size_w)  # [H, W]
    shift = torch.zeros(frames, size_h, size_w, 2)  # source offset (x, y) in frame fractions
    for who, track in zip(characters, tracks, strict=True):
        x0, y0, x1, y1 = who.face_box
        head = _window(y, x, (x0 - 0.05, y0 - 0.1, x1 + 0.05, y1 + 0.05), 0.08)  # [H, W]
        mx, my, mw = who.mouth
        chin = y1 + 0.04
        across = ((mw * 2.2 - (x - mx).abs()) / (mw * 1.2)).clamp(0, 1)  # [H, W]
        below = ((y - my) / 0.02).clamp(0, 1) * ((chin + 0.08 - y) / 0.08).clamp(0, 1)
        band = LIP_BAND * (y1 - y0)
        above = (1 - (my - y) / band).clamp(0, 1) * (y < my)  # the upper lip, fading upwards
        lift, drop = (
            torch.tensor(v, dtype=torch.float32)[:, None, None]
            for v in np.array([lip_gap(o, _full_gap(who)) for o in track.opening]).T
        )  # [T, 1, 1] each
        shift[..., 1] += lift * above * across - drop * below * across
        # Rounding draws the lips' corners in; the pull fades within the mouth's width, so the
        # face's outline stays where it is.
        lips = ((band * 1.5 - (y - my).abs()) / band).clamp(0, 1)  # [H, W]
        pull = torch.exp(-(((x - mx) / (1.3 * mw)) ** 2)) * lips
        rounding = torch.tensor(track.rounding, dtype=torch.float32)[:, None, None]
        shift[..., 0] += ROUNDING_SQUEEZE * rounding * (x - mx) * pull
        for ex, ey, ew in who.eyes:
            eh = 0.75 * ew
            inside = _window(y, x, (ex - ew, ey - eh, ex + ew, ey + eh), 0.3 * ew)
            blink = torch.tensor(track.blink, dtype=torch.float32)[:, None, None]
            shift[..., 1] -= blink * (y - (ey - eh)).clamp(min=0) * inside
        sway = torch.tensor(track.sway, dtype=torch.float32)  # [T, 2] pixels
        scale = torch.tensor([1 / size_w, 1 / size_h])
        shift -= (sway * scale)[:, None, None, :] * head[None, ..., None]
    base = torch.stack([x, y], dim=-1)  # [H, W, 2]
    grid = (base[None] + shift) * 2 - 1  # [T, H, W, 2] in grid_sample's [-1, 1]
    src = image.permute(2, 0, 1)[None].expand(frames, -1, -1, -1)  # [T, 3, H, W]
    video = F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)
    video = video.permute(0, 2, 3, 1).contiguous()  # [T, H, W, 3]
    pixel = 1 / max(size_h, size_w)
    for who, track in zip(characters, tracks, strict=True):
        for t in range(frames):
            gap = lip_gap(float(track.opening[t]), _full_gap(who))
            rounding = float(track.rounding[t])
            draw_inside(video[t], y, x, who.mouth, gap, rounding, track.look, pixel)
    return video.clamp(0, 1)
