"""`python -m avatar_engine.gpu_check OUT` (what bin/gpu-check runs): the plan and its budget."""

from __future__ import annotations

import argparse
import logging
import platform
import subprocess
import sys
from functools import partial
from pathlib import Path

from avatar_engine.config import PRESETS
from avatar_engine.costs import chunk_flops

# Imported before the sections fork, so no child imports torch again.
from avatar_engine.gpu_check import graphs, measure, suite
from avatar_engine.gpu_check.runner import Report, Section, run_plan, setup_logging
from avatar_engine.gpu_check.settings import DTYPES, HEADLINE_PRESETS, CheckSettings

log = logging.getLogger("gpu_check")
ROOT = Path(__file__).resolve().parents[2]
BUDGET_S = 450.0  # 7.5 minutes: the whole command stays under 8
PROBLEMS = ("error", "timeout", "crashed")

# (cap_s, min_s) per kind of section: how long it may run, and the least budget it starts with.
# Sized for one H200 (the 14B preset streams ~50 chunks at ~0.5 s); the CPU dry run needs far
# less of each.
LIMITS = {
    "environment": (60, 5),
    "ceiling": (60, 10),
    "dit": (200, 40),
    "vae": (120, 20),
    "attention": (90, 15),
    "cuda-graph": (150, 30),
    "gpu-tests": (150, 20),
    "compile": (240, 60),
}


def _section(kind: str, name: str, run) -> Section:
    cap, least = LIMITS[kind]
    return Section(name=f"{kind}:{name}" if name else kind, run=run, cap_s=cap, min_s=least)


def build_plan(settings: CheckSettings) -> list[Section]:
    """Most wanted first, so a short budget drops the least: headline DiT, its VAE, ..."""
    head, *rest = settings.presets
    vaes = list(settings.vae_presets().items())
    by_cost = sorted(settings.presets, key=lambda n: chunk_flops(PRESETS[n].dit, PRESETS[n].stream))
    tests_cap = LIMITS["gpu-tests"][0]
    return [
        _section("environment", "", partial(measure.environment, settings)),
        _section("ceiling", "", partial(measure.ceiling, settings)),
        _section("dit", head, partial(measure.dit, settings, head)),
        _section("vae", vaes[0][0], partial(measure.vae, settings, *vaes[0])),
        *(_section("dit", n, partial(measure.dit, settings, n)) for n in rest),
        *(_section("vae", v, partial(measure.vae, settings, v, p)) for v, p in vaes[1:]),
        _section("attention", head, partial(measure.attention, settings, head)),
        *(_section("cuda-graph", n, partial(graphs.cuda_graph, settings, n)) for n in by_cost),
        _section("gpu-tests", "", partial(suite.gpu_tests, settings, ROOT, tests_cap - 10)),
        *(_section("compile", n, partial(graphs.compiled, settings, n)) for n in by_cost),
    ]


def select(plan: list[Section], only: list[str] | None) -> list[Section]:
    if not only:
        return plan
    chosen = [s for s in plan if any(s.name == o or s.name.startswith(o + ":") for o in only)]
    if not chosen:
        raise ValueError(f"--only {only} matches no section of {[s.name for s in plan]}")
    return chosen


def _git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bin/gpu-check",
        description="Measure the engine on one GPU in one short run: the large presets with "
        "random weights, the VAE decoders, attention backends, CUDA graphs, torch.compile and "
        "the gpu-marked tests, each against a matmul ceiling of the same run. Writes "
        "OUT/gpu-check.json and OUT/gpu-check.log. `--device cpu` is a dry run of seconds.",
    )
    parser.add_argument("out", type=Path, help="folder for the report and the log")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", choices=DTYPES, help="default: bf16 on CUDA, fp32 on a CPU")
    parser.add_argument(
        "--preset",
        action="append",
        choices=sorted(PRESETS),
        help=f"DiT preset to measure, repeatable, the headline first (default on CUDA: "
        f"{' '.join(HEADLINE_PRESETS)}; on a CPU: tiny)",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=BUDGET_S,
        help="no section starts once less than its minimum is left",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="SECTION",
        help="run only these sections (a kind such as dit, or kind:name)",
    )
    parser.add_argument("--late-chunk", type=int, help="compared with chunk 10 (at least 21)")
    parser.add_argument("--repeats", type=int, help="timed repetitions per figure")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = CheckSettings.for_device(
        args.out,
        args.device,
        dtype=args.dtype,
        presets=tuple(args.preset) if args.preset else None,
        late_chunk=args.late_chunk,
        repeats=args.repeats,
    )
    plan = select(build_plan(settings), args.only)
    setup_logging(args.out)
    log.info("gpu-check: %d sections, %.0f s budget", len(plan), args.budget_s)
    header = {
        "report": "gpu-check",
        "command": [sys.argv[0], *(sys.argv[1:] if argv is None else argv)],
        "host": platform.node(),
        "git_commit": _git_commit(),
        "settings": settings.as_json(),
    }
    report: Report = run_plan(plan, out=args.out, budget_s=args.budget_s, header=header)
    problems = [o.name for o in report.outcomes if o.status in PROBLEMS]
    verdict = f"problems in {problems}" if problems else "no section failed"
    log.info("gpu-check: done in %.0f s, %s: %s", report.header["wall_s"], verdict, report.path)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
