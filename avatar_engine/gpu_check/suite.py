"""The test suite's CUDA tests (marked `gpu`), run by pytest in a child process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from avatar_engine.gpu_check.runner import Skip
from avatar_engine.gpu_check.settings import CheckSettings

GPU_MARK = "pytest.mark.gpu"
JUNIT_NAME = "gpu-tests.xml"
OUTCOMES = ("failure", "error", "skipped")  # a testcase's child element; none = passed


def gpu_test_files(root: Path) -> list[Path]:
    """The test files that mark a test `gpu` (collecting only these keeps the app's imports out)."""
    tests = root / "tests"
    if not tests.is_dir():
        return []
    return sorted(p for p in tests.rglob("test_*.py") if GPU_MARK in p.read_text())


def _outcome(case: ET.Element) -> tuple[str, str | None]:
    for tag in OUTCOMES:
        found = case.find(tag)
        if found is not None:
            message = (found.get("message") or found.text or "").strip().splitlines()
            return {"failure": "failed", "error": "error", "skipped": "skipped"}[tag], (
                message[0] if message else None
            )
    return "passed", None


def gpu_tests(settings: CheckSettings, root: Path, timeout_s: float) -> dict[str, Any]:
    if importlib.util.find_spec("pytest") is None:
        raise Skip("pytest is not installed in this python")
    files = gpu_test_files(root)
    if not files:
        raise Skip(f"no test file under {root / 'tests'} marks a test gpu")
    junit = settings.out / JUNIT_NAME
    junit.unlink(missing_ok=True)
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider",
               f"--junitxml={junit}", *(str(f.relative_to(root)) for f in files)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=path)
    done = subprocess.run(command, cwd=root, env=env, timeout=timeout_s)  # output: the log
    if not junit.exists():
        raise RuntimeError(f"pytest exited with {done.returncode} and wrote no report; see the log")
    tests = []
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome, message = _outcome(case)
        tests.append(
            {
                "test": f"{case.get('classname')}::{case.get('name')}",
                "outcome": outcome,
                "time_s": float(case.get("time") or 0),
                "message": message,
            }
        )
    counts = {o: sum(t["outcome"] == o for t in tests) for o in ("passed", "failed", "error")}
    counts["skipped"] = sum(t["outcome"] == "skipped" for t in tests)
    return {
        "files": [str(f.relative_to(root)) for f in files],
        "pytest_exit_code": done.returncode,
        **counts,
        "tests": tests,
        "summary": ", ".join(f"{n} {o}" for o, n in counts.items()) + f" ({len(files)} files)",
    }
