"""Stage 3: distil the teacher into the sparse-causal 2-step student.

Two losses, mixed:
- regression on the teacher's ODE: at each student step time t_s the student, given the ODE's
  x_{t_s} (or, with a probability that grows over training, its own renoised previous
  prediction: the samples the student generates), predicts the ODE's endpoint;
- DMD: the student's 2-step sample is pushed along (fake score - real score), the real score
  being the teacher and the fake score a copy of it trained online on the student's samples.

Without a teacher (`teacher=None`), the regression's targets are the clips' own latents: at
each step time the student, given the clip noised to t_s (or its own renoised prediction),
predicts the clip. From pure noise that is the clip's mean given the picture and the speech,
which for a mouth driven by the speech is the mouth following it; the teacher's samples, whose
mouths follow the speech less than the data's do, then no longer bound the student's. A mean
is timid where the model is unsure (a photo's mouth opens less than in any one clip), so the
speech guidance has a form without a teacher too (data_target): the target moves from the
student's own all-listening prediction through the clip, by the guidance, as classifier-free
guidance moves a velocity.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F

from avatar_engine.config import Preset
from avatar_engine.model.audio import AudioConditioning
from avatar_engine.model.window import ClipWindow
from avatar_engine.sampling import interpolate
from avatar_engine.training.batch import DiTInputs, dit_inputs
from avatar_engine.training.data.clips import KIND_WEIGHTS
from avatar_engine.training.loop import TrainLoop, cosine_lr, set_lr
from avatar_engine.training.teacher import (
    TEACHER_CHUNKS,
    Speaker,
    flow_matching_loss,
    latent_pool,
    speech_weighted_mse,
    velocity,
)
from avatar_engine.vae.model import WanVAE

ODE_STEPS = 4  # Euler steps of the teacher's ODE (its grid contains the student's times)


def silenced(inputs: DiTInputs) -> DiTInputs:
    """The same clip with every character listening: no speech features, silence embeddings."""
    audio = AudioConditioning(
        features=torch.zeros_like(inputs.audio.features),
        speaking=torch.zeros_like(inputs.audio.speaking),
        face_masks=inputs.audio.face_masks,
    )
    return dataclasses.replace(inputs, audio=audio)


def guidance_scale(inputs: DiTInputs, guidance: float, *, mouths_only: bool):
    """The speech guidance per latent cell, [B, 1, 1, h, w] (or the scalar): with mouths_only,
    `guidance` on the mouths' cells and their neighbours (the jaw) and 1 elsewhere, so the
    amplified motion stays at the mouth and the rest of the picture follows the plain ODE."""
    if not mouths_only:
        return guidance
    mouths = (inputs.mouths > 0).float()[:, None]
    near = F.max_pool2d(mouths, kernel_size=3, stride=1, padding=1)
    return 1 + (guidance - 1) * near[:, :, None]


@torch.no_grad()
def teacher_ode(
    teacher,
    inputs: DiTInputs,
    x0: torch.Tensor,
    times: tuple[float, ...],
    *,
    guidance: float = 1.0,
    mouths_only: bool = False,
):
    """Euler-integrate the teacher from noise; returns (x at each student time, endpoint).

    guidance > 1 is classifier-free guidance on the speech: the velocity moves from the
    all-listening one towards the speaking one by that factor, so the student learns the
    speech-driven motion amplified, at no cost when it streams. mouths_only confines it to
    the mouths (guidance_scale): guidance everywhere also exaggerates the rest of the face.
    """
    grid = [i / ODE_STEPS for i in range(ODE_STEPS)]
    missing = [t for t in times if t not in grid]
    if missing:
        raise ValueError(f"student times {missing} are not on the {ODE_STEPS}-step ODE grid")
    quiet = silenced(inputs) if guidance != 1.0 else None
    scale = guidance_scale(inputs, guidance, mouths_only=mouths_only)
    x, at = x0, {}
    for t in grid:
        if t in times:
            at[t] = x
        tt = torch.full((x.shape[0],), t)
        v = velocity(teacher, inputs, x, tt, window=ClipWindow.BIDIRECTIONAL)
        if quiet is not None:
            base = velocity(teacher, quiet, x, tt, window=ClipWindow.BIDIRECTIONAL)
            v = base + scale * (v - base)
        x = x + (1 / ODE_STEPS) * v
    return [at[t] for t in times], x


def data_target(
    student, inputs: DiTInputs, x: torch.Tensor, t: float, scale: float | torch.Tensor
) -> torch.Tensor:
    """The clip's latents as the student's target at x_t, guided: listening + scale · (clip -
    listening), `listening` being the student's own prediction with every character listening.
    Its expectation is the guided mean (the mean given the speech, pushed away from the mean
    without it); scale 1 is the clip itself."""
    if isinstance(scale, float) and scale == 1.0:
        return inputs.x1
    with torch.no_grad():
        listening = student_data(student, silenced(inputs), x, t)
    return listening + scale * (inputs.x1 - listening)


def student_data(student, inputs: DiTInputs, x: torch.Tensor, t: float) -> torch.Tensor:
    """The student's data prediction at flow time t (sparse-causal, as it streams)."""
    tt = torch.full((x.shape[0],), t)
    return x + (1 - t) * velocity(student, inputs, x, tt, window=ClipWindow.SPARSE_CAUSAL)


def dmd_loss(teacher, fake, inputs: DiTInputs, sample: torch.Tensor) -> torch.Tensor:
    """Distribution matching: move the sample along the difference of the two scores."""
    with torch.no_grad():
        t = torch.rand(sample.shape[0]) * 0.96 + 0.02
        noise = torch.randn_like(sample)
        xt = interpolate(sample, noise, t.view(-1, 1, 1, 1, 1))
        scale = (1 - t).view(-1, 1, 1, 1, 1)
        real = xt + scale * velocity(teacher, inputs, xt, t, window=ClipWindow.BIDIRECTIONAL)
        fake_data = xt + scale * velocity(fake, inputs, xt, t, window=ClipWindow.BIDIRECTIONAL)
        weight = (sample - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1e-3)
        target = sample - (fake_data - real) / weight
    return 0.5 * (sample - target).square().mean()


def train_student(
    preset: Preset,
    vae: WanVAE,
    teacher: Speaker | None,
    run_dir: Path | str,
    *,
    steps: int,
    dmd_weight: float = 0.0,
    batch: int = 1,
    lr: float = 2e-4,
    fake_lr: float = 2e-4,
    max_self_mix: float = 0.5,
    seed: int = 0,
    pool_size: int = 200,
    chunks: int = TEACHER_CHUNKS,
    init: Speaker | None = None,
    guidance: float = 1.0,
    mouths_only: bool = False,
    kind_weights: tuple[float, float, float] = KIND_WEIGHTS,
    even_mouths: bool = False,
) -> Speaker:
    """Distil (or resume). dmd_weight 0 is pure ODE regression; init starts the student from
    an earlier student (e.g. a regression-distilled one, before adding DMD) instead of the
    teacher; guidance and mouths_only shape the teacher's ODE (see teacher_ode). With no
    teacher the targets are the clips themselves (the module's docstring), guided the same way
    (data_target), and init is needed. kind_weights are the clips' kinds' odds (more pairs:
    clips.kind_weights); even_mouths weighs a small mouth's cells more in the regression
    (speech_weighted_mse)."""
    if teacher is None and (init is None or dmd_weight > 0):
        raise ValueError("training a student on the clips needs --init, and takes no DMD "
                         "(its real score is a teacher)")  # fmt: skip
    torch.manual_seed(seed)
    student = copy.deepcopy(init or teacher).train().requires_grad_(True)
    if teacher is not None:  # the student hears the speech as the teacher it imitates does
        student.encoder = copy.deepcopy(teacher.encoder)
    student.encoder.requires_grad_(False)  # the speech encoder is kept as is
    opt = torch.optim.AdamW(student.dit.parameters(), lr=lr, weight_decay=0.01)
    modules: dict[str, torch.nn.Module] = {"student": student}
    optimizers = {"student": opt}
    if teacher is not None:
        teacher = teacher.eval().requires_grad_(False)
        fake = copy.deepcopy(teacher.dit).train().requires_grad_(True)
        fake_opt = torch.optim.AdamW(fake.parameters(), lr=fake_lr, weight_decay=0.01)
        modules["fake"], optimizers["fake"] = fake, fake_opt
    loop = TrainLoop(run_dir, modules=modules, optimizers=optimizers, total=steps, desc="student")
    pool, geometry = latent_pool(
        vae.eval(), preset, seed + 7, chunks, pool_size, kind_weights=kind_weights
    )
    times = tuple(preset.stream.denoise_times)

    def step(i: int) -> dict[str, float]:
        set_lr(opt, cosine_lr(i, steps, peak=lr))
        with torch.no_grad():
            inputs = dit_inputs(pool.sample(batch), student.encoder, geometry, preset)
        x0 = torch.randn_like(inputs.x1)
        endpoint: torch.Tensor | None = None  # the teacher's; without one, the clip's (guided)
        if teacher is None:
            starts = [interpolate(inputs.x1, x0, t) for t in times]
            scale = guidance_scale(inputs, guidance, mouths_only=mouths_only)
        else:
            starts, endpoint = teacher_ode(
                teacher.dit, inputs, x0, times, guidance=guidance, mouths_only=mouths_only
            )
        self_mix = max_self_mix * min(1.0, i / max(1, steps // 2))
        regression = torch.zeros(())
        previous = None
        for s, t in enumerate(times):
            x = starts[s]
            if previous is not None and torch.rand(()) < self_mix:
                x = interpolate(previous.detach(), torch.randn_like(x), t)  # its own sample
            target = (
                endpoint if endpoint is not None else data_target(student.dit, inputs, x, t, scale)
            )
            previous = student_data(student.dit, inputs, x, t)
            error = speech_weighted_mse(previous, target, inputs, even_mouths=even_mouths)
            regression = regression + error / len(times)
        losses = {"regression": regression}
        loss = regression
        if teacher is not None and dmd_weight > 0:
            losses["dmd"] = dmd_loss(teacher.dit, fake, inputs, previous)
            loss = loss + dmd_weight * losses["dmd"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.dit.parameters(), 1.0)
        opt.step()
        if teacher is not None and dmd_weight > 0:  # the fake score follows the student
            fake_inputs = dataclasses.replace(inputs, x1=previous.detach())
            fake_loss = flow_matching_loss(fake, fake_inputs, window=ClipWindow.BIDIRECTIONAL)
            fake_opt.zero_grad(set_to_none=True)
            fake_loss.backward()
            fake_opt.step()
            losses["fake_score"] = fake_loss
        out = {k: float(v.detach()) for k, v in losses.items()}
        out["student_vs_data"] = float((previous.detach() - inputs.x1).square().mean())
        if endpoint is not None:
            out["teacher_vs_data"] = float((endpoint - inputs.x1).square().mean())
        return out

    loop.run(step)
    return student.eval()
