"""bin/gpu-check: its CPU dry run writes a complete report with torch and safetensors alone,
and a section that fails, crashes, hangs or finds the budget spent costs only itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from avatar_engine.gpu_check import __main__ as gpu_check
from avatar_engine.gpu_check.runner import (
    KILL_GRACE_S,
    LOG_NAME,
    REPORT_NAME,
    STATUSES,
    Section,
    Skip,
    run_plan,
)
from avatar_engine.gpu_check.settings import CheckSettings

ROOT = Path(__file__).resolve().parents[2]
# What a GPU machine's python may lack: the app's layers and their packages, and numpy.
BLOCKED = (
    "app", "web", "llm_bridge", "livekit", "gradio", "aiortc", "openai", "fastapi",
    "transformers", "numpy", "PIL", "scipy", "skimage", "soundfile", "webrtcvad", "av", "tqdm",
    "einops",
)  # fmt: skip
# A None in sys.modules is how an absent package looks: import fails, find_spec returns None.
BLOCKER = f"import sys\nsys.modules.update(dict.fromkeys({BLOCKED!r}))\n"
DRY_RUN_SECTIONS = [
    "environment",
    "ceiling",
    "dit:tiny",
    "vae:tiny",
    "attention:tiny",
    "cuda-graph:tiny",
    "gpu-tests",
    "compile:tiny",
]


def test_dry_run_on_cpu_writes_a_complete_report(tmp_path):
    """The whole check on the CPU, with the app's packages and numpy made unimportable."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)  # every process of the run loads it
    out = tmp_path / "out"
    # One thread: two threads' OpenMP barriers crawl when other jobs share the two cores.
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(site), OMP_NUM_THREADS="1")
    start = time.perf_counter()
    done = subprocess.run(
        [ROOT / "bin" / "gpu-check", out, "--device", "cpu", "--preset", "tiny"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    wall = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / REPORT_NAME).read_text())
    sections = {s["name"]: s for s in report["sections"]}
    assert list(sections) == DRY_RUN_SECTIONS
    assert report["finished_utc"] and report["wall_s"] <= wall
    assert report["settings"]["device"] == "cpu" and report["settings"]["presets"] == ["tiny"]
    for name, s in sections.items():
        assert s["status"] in STATUSES, name
        if s["status"] == "ok":
            assert s["figures"]["summary"], name
        else:
            assert s["reason"] and "figures" not in s, name
    statuses = {name: s["status"] for name, s in sections.items()}
    assert statuses == dict.fromkeys(DRY_RUN_SECTIONS, "ok") | {
        "cuda-graph:tiny": "skipped",
        "compile:tiny": "skipped",
    }
    assert "CUDA" in sections["cuda-graph:tiny"]["reason"]

    env_figures = sections["environment"]["figures"]
    assert env_figures["app_modules_loaded"] == []
    dit = sections["dit:tiny"]["figures"]
    assert dit["chunk_time_s"] > 0 and dit["flops_per_chunk"] > 0
    assert dit["achieved_tflops"] > 0 and dit["ceiling_tflops"] > 0
    share = dit["achieved_tflops"] / dit["ceiling_tflops"]  # both rounded to 4 digits
    assert abs(dit["share_of_ceiling"] - share) <= 1e-3 * share
    assert dit["late_chunk"] == 21 and dit["early_chunk"] == 10 and dit["late_vs_early"] > 0
    assert dit["realtime_ratio"] == round(dit["chunk_time_s"] / dit["chunk_duration_s"], 4)
    assert dit["peak_rss_bytes"] > 0
    vae = sections["vae:tiny"]["figures"]
    assert vae["resolution"] == [128, 128] and vae["video_frames_per_chunk"] == 12
    assert vae["steady_decode_s"] > 0 and vae["flops_per_steady_chunk"] > 0
    backends = sections["attention:tiny"]["figures"]["backends"]
    assert backends["engine-auto"]["relative_error_vs_fp32"] < 1e-5  # fp32 dry run
    assert all(("time_s" in b) != ("error" in b) for b in backends.values())
    tests = sections["gpu-tests"]["figures"]
    assert "tests/avatar_engine/test_session.py" in tests["files"]
    assert "tests/avatar_engine/test_bf16_streaming.py" in tests["files"]
    assert tests["skipped"] == len(tests["tests"]) >= 2 and tests["failed"] == 0
    assert all(t["message"] == "needs a CUDA GPU" for t in tests["tests"])

    log = (out / LOG_NAME).read_text()
    for name in DRY_RUN_SECTIONS:
        assert f"section {name}: " in log
    assert "deselected" in log  # pytest's own output lands in the log too


def _fails():
    raise RuntimeError("out of luck")


def _crashes():
    os.kill(os.getpid(), signal.SIGKILL)


def _hangs():
    time.sleep(60)


def _skips():
    raise Skip("not on this machine")


def test_a_failing_section_costs_only_itself(tmp_path):
    ok = {"summary": "fine", "value": 1}
    plan = [
        Section("fails", _fails, cap_s=30, min_s=0),
        Section("crashes", _crashes, cap_s=30, min_s=0),
        Section("hangs", _hangs, cap_s=1, min_s=0),
        Section("skips", _skips, cap_s=30, min_s=0),
        Section("empty", dict, cap_s=30, min_s=0),
        Section("runs", lambda: ok, cap_s=30, min_s=0),
        Section("too-long", lambda: ok, cap_s=30, min_s=600),
    ]
    start = time.perf_counter()
    report = run_plan(plan, out=tmp_path, budget_s=60, header={"report": "test"})
    assert time.perf_counter() - start < 1 + 2 * KILL_GRACE_S
    written = json.loads((tmp_path / REPORT_NAME).read_text())
    assert written["sections"] == [o.as_json() for o in report.outcomes]
    got = {s["name"]: s for s in written["sections"]}
    assert {n: s["status"] for n, s in got.items()} == {
        "fails": "error",
        "crashes": "crashed",
        "hangs": "timeout",
        "skips": "skipped",
        "empty": "error",
        "runs": "ok",
        "too-long": "skipped",
    }
    assert got["fails"]["reason"] == "RuntimeError: out of luck"
    assert "_fails" in got["fails"]["traceback"]
    assert "exit code -9" in got["crashes"]["reason"]
    assert got["hangs"]["reason"] == "stopped after 1 s"
    assert got["skips"]["reason"] == "not on this machine"
    assert got["empty"]["reason"] == "RuntimeError: the section returned no figures"
    assert got["runs"]["figures"] == ok
    assert got["too-long"]["reason"].startswith("time budget:")
    assert "needs at least 600 s" in got["too-long"]["reason"]
    assert "section fails failed" in (tmp_path / LOG_NAME).read_text()  # with its traceback


def test_gpu_plan_puts_the_headline_first_and_fits_eight_minutes(tmp_path):
    settings = CheckSettings.for_device(tmp_path, "cuda")
    assert settings.dtype == "bf16" and settings.ceiling_size == 8192
    names = [s.name for s in gpu_check.build_plan(settings)]
    assert names == [
        "environment",
        "ceiling",
        "dit:talkingmachines-14b",
        "vae:wan2.1",
        "dit:wan2.1-1.3b",
        "vae:tiny",
        "attention:talkingmachines-14b",
        "cuda-graph:wan2.1-1.3b",
        "cuda-graph:talkingmachines-14b",
        "gpu-tests",
        "compile:wan2.1-1.3b",
        "compile:talkingmachines-14b",
    ]
    # No section starts past the budget and the last one is stopped at it.
    assert gpu_check.BUDGET_S + KILL_GRACE_S < 8 * 60 - 15
    chosen = gpu_check.select(gpu_check.build_plan(settings), ["dit", "vae:tiny"])
    assert [s.name for s in chosen] == ["dit:talkingmachines-14b", "dit:wan2.1-1.3b", "vae:tiny"]
