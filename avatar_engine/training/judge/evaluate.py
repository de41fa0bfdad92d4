"""The evaluation: every program (the model and the baselines) renders the same clips of a pool,
and an independent face analyser measures what a viewer sees: is the face there, does the
mouth open with the speech (against two controls), is it sharp, is it still the person, does
it hold still while listening, do two characters take turns, does it drift."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from avatar_engine.training.data.portraits import as_uint8
from avatar_engine.training.judge import faces, metrics
from avatar_engine.training.judge.pools import Drawn, Photo, Pool
from avatar_engine.training.judge.programs import EVAL_SEED, Program, Rendered

REFERENCE_SIZE = 512  # the pictures the descriptors are taken from (the photo, not the output)
LEAD_S, TAIL_S = 0.5, 1.0  # silence before the words (inside the turn) and after the turn


@dataclass(frozen=True)
class Reference:
    """A portrait as the analyser sees it: at the output size, and at full size."""

    name: str
    kind: str  # "photo" or "drawn"
    landmarks: np.ndarray  # [68, 2] at the output size
    detail: float  # lip_detail at the output size
    descriptor: np.ndarray  # [128] of the full-size picture
    floor: float  # descriptor distance of the full-size picture after a round trip


def reference(source: Photo | Drawn, size: int) -> Reference:
    small, full = source.portrait(size), source.portrait(REFERENCE_SIZE)
    u8, big = as_uint8(small.image).numpy(), as_uint8(full.image).numpy()
    seen, whole = faces.describe(u8, small.face_box), faces.describe(big, full.face_box)
    trip = faces.describe(faces.round_trip(big, size), full.face_box)
    if not (seen.found[0] and whole.found[0] and trip.found[0]):
        raise RuntimeError(f"the face analyser finds no face in the pool's {source.name}")
    eyes = float(metrics.eye_distance(seen.landmarks[0]))
    return Reference(
        source.name,
        "photo" if isinstance(source, Photo) else "drawn",
        seen.landmarks[0],
        metrics.lip_detail(u8, seen.landmarks[0], eyes),
        whole.descriptors[0],
        float(np.linalg.norm(trip.descriptors[0] - whole.descriptors[0])),
    )


@dataclass(frozen=True)
class Look:
    """One character's face through one rendered clip, shown and raw."""

    opening: np.ndarray  # [T] inner-lip opening over the eye distance (shown frames)
    found: np.ndarray  # [T] bool (shown frames)
    detail: np.ndarray  # [T] lip_detail / the reference's (shown frames)
    identity: np.ndarray  # [N] descriptor distances from the reference (shown frames)
    detail_raw: np.ndarray  # the same two on the raw decoded frames
    identity_raw: np.ndarray


def look(r: Rendered, ref: Reference, face_box, *, frames: np.ndarray | None = None) -> Look:
    """Analyse the clip's frames selected by `frames` ([T] bool; all by default)."""
    pick = np.ones(len(r.frames), bool) if frames is None else frames
    eyes = float(metrics.eye_distance(ref.landmarks))

    def one(video: torch.Tensor, like=None) -> tuple[faces.FaceTrack, np.ndarray, np.ndarray]:
        u8 = video[torch.from_numpy(pick)].numpy()
        track = faces.track_face(u8, face_box, every=faces.DESCRIPTOR_EVERY, like=like)
        detail = np.array([metrics.lip_detail(f, lm, eyes) for f, lm in
                           zip(u8, track.landmarks, strict=True)]) / ref.detail  # fmt: skip
        return track, detail, metrics.descriptor_distance(track.descriptors, ref.descriptor)

    track, detail, identity = one(r.frames)
    if r.raw is r.frames:
        detail_raw, identity_raw = detail, identity
    else:
        _, detail_raw, identity_raw = one(r.raw, like=track)  # the same face, where it was
    return Look(
        metrics.lip_opening(track.landmarks), track.found, detail, identity,
        detail_raw, identity_raw,
    )  # fmt: skip


@dataclass
class Figures:
    """One program's figures on a pool: per clip, and what the targets are checked on."""

    program: str
    clips: list[dict] = field(default_factory=list)  # one per (portrait, voice) speaking clip
    portraits: dict[str, dict] = field(default_factory=dict)  # floor, silence per portrait
    pair: dict[str, float] = field(default_factory=dict)  # speaking / listening spread
    drift: dict[str, float] = field(default_factory=dict)


class Evaluation:
    """Renders and measures one pool for any number of programs, with the same clips."""

    def __init__(self, pool: Pool, size: int, fps: int, samples_per_frame: int):
        self.pool, self.size, self.fps, self.spf = pool, size, fps, samples_per_frame
        self.rate = fps * samples_per_frame
        self.references = {s.name: reference(s, size) for s in pool.portraits}
        lead = np.zeros(int(LEAD_S * self.rate), np.float32)
        # Voice i says text i: as many utterances as voices, each in its own voice.
        self.speech = [
            np.concatenate([lead, voice.speak(pool.texts[i % len(pool.texts)], self.rate)])
            for i, voice in enumerate(pool.voices)
        ]
        self.labels = [v.label for v in pool.voices]

    def chunks_for(self, program: Program, seconds: float) -> int:
        chunk_s = program.preset.stream.chunk_duration_s
        return int(np.ceil((seconds + TAIL_S) / chunk_s))

    def speaking_clips(self, program: Program, figures: Figures, progress: bool) -> dict:
        """Every portrait with every voice; returns the renders kept as evidence."""
        evidence = {}
        settle = program.geometry.chunk_start_frame(1)
        todo = [(s, v) for s in self.pool.portraits for v in range(len(self.speech))]
        for source, v in tqdm(todo, desc=f"{program.name}: speaking", disable=not progress):
            p, ref = source.portrait(self.size), self.references[source.name]
            r = program.render([p], p.image, [(0, self.speech[v])], self.clip_chunks(program, v))
            # The other-audio control hears the next utterance, as its own clip lays it out.
            o = (v + 1) % len(self.speech)
            other = metrics.envelope(
                self.speech[o], program.geometry.chunk_start_frame(self.clip_chunks(program, o)),
                self.spf,
            )  # fmt: skip
            talking = r.speaking[0] & (r.index >= settle)
            figures.clips.append(
                dict(portrait=source.name, kind=ref.kind, voice=self.labels[v],
                     **self._clip(look(r, ref, p.face_box), r, other, talking, ref))
            )  # fmt: skip
            if v == 0:
                evidence[f"{source.name}"] = r
        return evidence

    def clip_chunks(self, program: Program, v: int) -> int:
        """Chunks of utterance v's speaking clip: the utterance, then TAIL_S of silence."""
        return self.chunks_for(program, len(self.speech[v]) / self.rate)

    def _clip(self, seen: Look, r: Rendered, other_env, talking, ref: Reference) -> dict:
        env = metrics.envelope(r.audio, len(r.frames), self.spf)
        sync, lag = metrics.lagged_sync(seen.opening, env, talking)
        shifted, _ = metrics.lagged_sync(seen.opening, metrics.shifted(env, self.fps), talking)
        other, _ = metrics.lagged_sync(
            seen.opening, metrics.fitted(other_env, len(seen.opening)), talking
        )
        return dict(
            face_found=float(seen.found.mean()),
            lipsync=sync,
            lag=lag,
            control_shifted=shifted,
            sharpness=metrics.mean(seen.detail[talking]),
            sharpness_raw=metrics.mean(seen.detail_raw[talking]),
            identity=metrics.mean(seen.identity),
            identity_raw=metrics.mean(seen.identity_raw),
            identity_floor=ref.floor,
            speaking_spread=metrics.spread(seen.opening[talking]),
            control_other=other,
            margin=sync - max(other, shifted),
        )

    def silence(self, program: Program, figures: Figures, progress: bool) -> dict:
        """Each portrait listening for as long as its longest speaking clip."""
        seconds = max(len(w) for w in self.speech) / self.rate
        settle = program.geometry.chunk_start_frame(1)
        evidence = {}
        for source in tqdm(self.pool.portraits, desc=f"{program.name}: silent",
                           disable=not progress):  # fmt: skip
            p, ref = source.portrait(self.size), self.references[source.name]
            r = program.render([p], p.image, [], self.chunks_for(program, seconds))
            seen = look(r, ref, p.face_box, frames=r.index >= settle)
            speaking = [c["speaking_spread"] for c in figures.clips if c["portrait"] == source.name]
            figures.portraits[source.name] = dict(
                identity_floor=ref.floor,
                listening_spread=metrics.spread(seen.opening),
                silence=metrics.ratio(metrics.spread(seen.opening), float(np.mean(speaking))),
            )
            if not evidence:
                evidence[f"silent_{source.name}"] = r
        return evidence

    def pair(self, program: Program, figures: Figures) -> dict:
        """The pool's pair: the left speaks, then the right; each one's opening spread while
        it speaks over while the other speaks."""
        picture, people = self.pool.pair_scene(self.size)
        waves = self.speech[0], self.speech[1 % len(self.speech)]
        seconds = sum(len(w) for w in waves) / self.rate + program.preset.stream.chunk_duration_s
        r = program.render(people, picture, [(0, waves[0]), (1, waves[1])],
                           self.chunks_for(program, seconds))  # fmt: skip
        settle = r.index >= program.geometry.chunk_start_frame(1)
        for k, (side, person) in enumerate(zip(("left", "right"), people, strict=True)):
            opening = metrics.lip_opening(
                faces.track_face(r.frames.numpy(), person.face_box).landmarks
            )
            talks, listens = r.speaking[k] & settle, r.speaking[1 - k] & settle
            figures.pair[side] = metrics.ratio(
                metrics.spread(opening[talks]), metrics.spread(opening[listens])
            )
        return {"pair": r}

    def drift(self, program: Program, figures: Figures, minutes: float, progress: bool) -> None:
        """A long stream of talk and pauses: identity and sharpness of its second and last
        block. The stream repeats one block of turns (about a minute; shorter in a short
        stream), so those blocks hear the same speech at the same place in their chunks: what
        differs between them is drift, not what was said. (The first block does not line up:
        the stream's first chunk is shorter than the others.)"""
        source = self.pool.portraits[0]
        p, ref = source.portrait(self.size), self.references[source.name]
        rng = np.random.default_rng(EVAL_SEED)
        chunk_s = program.preset.stream.chunk_duration_s
        block, seconds = [], 0.0
        while seconds < min(60.0, minutes * 30):
            wave = self.speech[int(rng.integers(len(self.speech)))]
            pause = np.zeros(int(rng.uniform(0.5, 3.0) * self.rate), np.float32)
            block.append((0, np.concatenate([wave, pause])))
            seconds += (len(wave) + len(pause)) / self.rate
        period = program.turn_chunks(block)  # chunks one block spans
        repeats = max(3, round(minutes * 60 / (period * chunk_s)))
        g = program.geometry

        def frames_of(n: int) -> range:  # block n's video frames
            return range(g.chunk_start_frame(n * period), g.chunk_start_frame((n + 1) * period))

        first, last = frames_of(1), frames_of(repeats - 1)
        r = program.render([p], p.image, block * repeats, repeats * period, progress=progress,
                           keep=(first, last))  # fmt: skip
        for name, window in (("early", first), ("late", last)):
            part = np.isin(r.index, np.arange(window.start, window.stop))
            seen = look(r, ref, p.face_box, frames=part)
            talking = r.speaking[0][part]
            figures.drift[f"{name}_block_identity"] = metrics.mean(seen.identity)
            figures.drift[f"{name}_block_sharpness"] = metrics.mean(seen.detail[talking])
        for what in ("identity", "sharpness"):
            start, end = (figures.drift[f"{m}_block_{what}"] for m in ("early", "late"))
            # A picture shown as it is keeps identity distance 0 from start to end: no change.
            change = 0.0 if end == start else metrics.ratio(end, start) - 1
            figures.drift[f"{what}_change"] = change
        figures.drift["minutes"] = repeats * period * chunk_s / 60

    def run(
        self, program: Program, *, drift_minutes: float, progress: bool = True
    ) -> tuple[Figures, dict[str, Rendered]]:
        figures = Figures(program.name)
        evidence = self.speaking_clips(program, figures, progress)
        evidence |= self.silence(program, figures, progress)
        evidence |= self.pair(program, figures)
        if drift_minutes > 0:
            self.drift(program, figures, drift_minutes, progress)
        return figures, evidence
