"""The `avatar` command line."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from commands.cli import main


def test_info_prints_every_preset_with_costs(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines()[2:]}
    assert set(rows) == {"tiny", "wan2.1-1.3b", "talkingmachines-14b"}
    big = rows["talkingmachines-14b"]
    assert big[2] == "16.39B" and big[3] == "2.11B" and big[4] == "1.24B"  # trunk, image, audio
    assert big[6] == "3072"  # tokens per chunk at 512x512
    assert float(big[9]) > 200  # TFLOP per chunk (2 steps)


def test_bench_engine_reports_the_figures(capsys):
    assert main(["bench", "engine", "--late-chunk", "34"]) == 0
    out = capsys.readouterr().out
    for label in (
        "DiT time per chunk",
        "time / duration",
        "matmul ceiling",
        "KV cache",
        "chunk 34 vs chunk 10",
    ):
        assert label in out
    ratio = float(re.search(r"time / duration:\s+([\d.]+)", out).group(1))
    assert 0 < ratio < 5


def test_bad_arguments_exit_with_a_message():
    result = subprocess.run(
        [sys.executable, "-m", "commands.cli", "bench", "engine", "--late-chunk", "3"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "late_chunk must be at least 21" in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "commands.cli",
            "bench",
            "engine",
            "--preset",
            "nope",
            "--late-chunk",
            "40",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "unknown preset 'nope'" in result.stderr


def test_bench_runtime_compares_both_runtimes(capsys):
    """On a pair: both faces' windows go through each runtime (the decoder rank included)."""
    assert main(["bench", "runtime", "--chunks", "5", "--rounds", "1", "--characters", "2"]) == 0
    out = capsys.readouterr().out
    assert "512x512 output, 2 face(s)" in out
    rows = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"  (single process|disaggregated) +[\d.]+ms +([\d.]+)", out)
    }
    assert set(rows) == {"single process", "disaggregated"}
    assert all(0 < ratio < 5 for ratio in rows.values())  # TTBC / chunk duration
    assert "disaggregated / single process TTBC" in out
    assert re.search(r"in-process stages, 1 thread\(s\): speech features [\d.]+ ms, DiT", out)


def test_bench_vae_reports_decode_time(capsys):
    assert main(["bench", "vae", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    decode = float(re.search(r"decode a 3-latent-frame chunk ([\d.]+) ms", out).group(1))
    assert 0 < decode < 5000


def test_train_vae_passes_every_option_on(monkeypatch, tmp_path):
    import avatar_engine.training.vae as vae_stage

    seen = {}
    monkeypatch.setattr(
        vae_stage, "train_vae", lambda preset, run, **kw: seen.update(kw, run=run) or "vae"
    )
    monkeypatch.setattr(vae_stage, "latent_statistics", lambda vae, preset: ([0.5], [2.0]))
    argv = ["train", "vae", "--run", str(tmp_path), "--steps", "7", "--window", "9"]
    argv += ["--long-window", "41", "--lr", "0.001", "--batch", "3", "--decoder-only"]
    assert main(argv) == 0
    assert seen["steps"] == 7 and seen["window_frames"] == 9 and seen["long_window"] == 41
    assert seen["lr"] == 0.001 and seen["batch"] == 3 and seen["decoder_only"] is True
    stats = json.loads((tmp_path / "latent_stats.json").read_text())
    assert stats == {"mean": [0.5], "std": [2.0]}


def test_train_student_passes_every_option_on(monkeypatch, tmp_path):
    import avatar_engine.training.distill as distill
    import commands.train as cli

    seen = {}
    monkeypatch.setattr(cli, "_vae", lambda run: f"vae from {run}")
    monkeypatch.setattr(cli, "_speaker", lambda run, name: f"{name} from {run}")
    monkeypatch.setattr(
        distill,
        "train_student",
        lambda preset, vae, teacher, run, **kw: seen.update(kw, vae=vae, teacher=teacher),
    )
    argv = ["train", "student", "--run", str(tmp_path), "--steps", "5", "--dmd-weight", "0.25"]
    argv += ["--init", "runs/reg", "--teacher", "runs/t", "--vae", "runs/v", "--lr", "0.0002"]
    assert main(argv) == 0
    assert seen["init"] == "student from runs/reg" and seen["teacher"] == "teacher from runs/t"
    assert seen["vae"] == "vae from runs/v" and seen["dmd_weight"] == 0.25
    assert seen["lr"] == 0.0002 and seen["steps"] == 5


def test_train_teacher_starts_from_init(monkeypatch, tmp_path):
    import avatar_engine.training.teacher as teacher
    import commands.train as cli

    seen = {}
    monkeypatch.setattr(cli, "_vae", lambda run: f"vae from {run}")
    monkeypatch.setattr(cli, "_speaker", lambda run, name: f"{name} from {run}")
    monkeypatch.setattr(
        teacher, "train_teacher", lambda preset, vae, run, **kw: seen.update(kw, vae=vae)
    )
    argv = ["train", "teacher", "--run", str(tmp_path), "--steps", "3", "--init", "runs/old"]
    assert main(argv) == 0
    assert seen["init"] == "teacher from runs/old" and seen["steps"] == 3


def test_eval_teacher_prints_the_figures_per_guidance(monkeypatch, capsys):
    import avatar_engine.training.teacher_check as check
    import commands.train as cli

    class Model:
        def __init__(self, name):
            self.name = name

        def eval(self):
            return self.name

    seen = {}
    monkeypatch.setattr(cli, "_vae", lambda run: Model(f"vae from {run}"))
    monkeypatch.setattr(cli, "_speaker", lambda run, name: Model(f"{name} from {run}"))

    def figures(teacher, vae, preset, guidances, *, clips, mouths_only):
        seen.update(teacher=teacher, vae=vae, clips=clips, mouths_only=mouths_only)
        return {g: {"lipsync": 0.5, "silence_ratio": 0.1 * g} for g in guidances}

    monkeypatch.setattr(check, "teacher_speech", figures)
    argv = ["eval-teacher", "--teacher", "runs/t", "--vae", "runs/v", "--guidance", "1", "2.5"]
    assert main([*argv, "--clips", "2", "--guide-mouths"]) == 0
    assert seen == {
        "teacher": "teacher from runs/t",
        "vae": "vae from runs/v",
        "clips": 2,
        "mouths_only": True,
    }
    printed = json.loads(capsys.readouterr().out)
    assert printed["guidance 2.5"] == {"lipsync": 0.5, "silence_ratio": 0.25}
    assert list(printed) == ["guidance 1", "guidance 2.5"]


def test_eval_prints_the_table_and_writes_every_figure(monkeypatch, tmp_path, capsys):
    import avatar_engine.training.judge.evaluate as evaluate
    from avatar_engine.training.judge.pools import DEV

    class Evaluation:
        def __init__(self, pool, size, fps, samples_per_frame):
            self.pool, self.labels = pool, ["flite:kal16"]
            assert (size, fps, samples_per_frame) == (512, 25, 640)  # the output size

        def run(self, program, *, drift_minutes):
            good = program.name == "model"
            clip = dict(face_found=1.0, lipsync=0.7 if good else 0.0, control_other=0.1,
                        control_shifted=0.2, margin=0.5 if good else -0.2, lag=1,
                        sharpness=0.9, sharpness_raw=0.5, identity=0.3, identity_raw=0.4,
                        identity_floor=0.25)  # fmt: skip
            figures = evaluate.Figures(program.name, clips=[clip])
            figures.portraits = {"x": {"silence": 0.1}}
            figures.pair = {"left": 4.0, "right": 5.0}
            figures.drift = {"identity_change": 0.01, "sharpness_change": -0.02}
            assert drift_minutes == 0.5
            return figures, {}

    monkeypatch.setattr(evaluate, "Evaluation", Evaluation)
    report = tmp_path / "figures.json"
    argv = ["eval", "--out", str(tmp_path), "--json", str(report), "--minutes", "0.5"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "model misses: nothing" in out and "| lip-sync" in out
    assert "baseline frozen misses: lipsync, margin" in out
    written = json.loads(report.read_text())
    assert written["pool"] == "dev" and written["portraits"] == [s.name for s in DEV.portraits]
    assert list(written["summary"]) == ["model", "frozen", "tinted", "noise"]
    assert written["summary"]["model"]["lipsync"]["passes"] is True
    assert written["figures"]["noise"]["clips"][0]["lipsync"] == 0.0
