"""Runs the check's sections one process each, within a time budget, into one JSON report.

Each section runs in a child forked from this process (torch already imported, CUDA not yet
touched), so a section that fails, runs out of memory, crashes or hangs loses only its own
figures: its error is recorded and the next one starts. The parent never touches the GPU.
The report is rewritten after every section, so whatever finished survives a killed run.

The parent must run no torch operation: a child forked after the parent started CUDA cannot
use it, and one forked after the parent's OpenMP threads started can hang in its first
parallel operation.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("gpu_check")

REPORT_NAME = "gpu-check.json"
LOG_NAME = "gpu-check.log"
STATUSES = ("ok", "skipped", "error", "timeout", "crashed")
KILL_GRACE_S = 10.0  # after a section's time is up, how long its child may take to die


class Skip(Exception):
    """Raised by a section that does not apply on this machine; the message says why."""


@dataclass(frozen=True)
class Section:
    name: str  # e.g. "dit:talkingmachines-14b"; unique in a plan
    run: Callable[[], dict[str, Any]]  # returns the figures (JSON-ready); raises Skip
    cap_s: float  # the most time it may take before it is stopped
    min_s: float  # not started with less than this left of the budget


@dataclass(frozen=True)
class Outcome:
    name: str
    status: str  # one of STATUSES
    wall_s: float
    figures: dict[str, Any] | None = None  # status "ok" only
    reason: str | None = None  # every other status: what happened, for a person
    traceback: str | None = None  # status "error"

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "status": self.status, "wall_s": self.wall_s}
        if self.figures is not None:
            out["figures"] = self.figures
        if self.reason is not None:
            out["reason"] = self.reason
        if self.traceback is not None:
            out["traceback"] = self.traceback
        return out


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def setup_logging(out: Path) -> None:
    """The parent logs to the console and to the log; children to the log alone."""
    out.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(processName)s %(levelname)s %(message)s")
    for handler in (logging.StreamHandler(sys.stderr), logging.FileHandler(out / LOG_NAME)):
        handler.setFormatter(fmt)
        log.addHandler(handler)


def _child(section: Section, log_path: Path, conn) -> None:
    """In the forked child: send the outcome fields down the pipe; output goes to the log."""
    os.setpgid(0, 0)  # its own process group, so whatever it starts is stopped with it
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.dup2(fd, 1)  # C-level output too (CUDA, compilers, pytest's subprocess)
    os.dup2(fd, 2)
    os.close(fd)
    # Python's own streams may have been replaced (pytest does); point them at the log too.
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    for handler in list(log.handlers):
        log.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(processName)s %(message)s"))
    log.addHandler(handler)
    try:
        figures = section.run()
        if not figures:
            raise RuntimeError("the section returned no figures")
        json.dumps(figures)  # fail here, named, rather than in the parent
        result: dict[str, Any] = {"status": "ok", "figures": figures}
    except Skip as skip:
        result = {"status": "skipped", "reason": str(skip)}
    except Exception as err:
        log.exception("section %s failed", section.name)
        result = {
            "status": "error",
            "reason": f"{type(err).__name__}: {err}",
            "traceback": traceback.format_exc(),
        }
    sys.stdout.flush()
    sys.stderr.flush()
    conn.send(result)
    conn.close()


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:  # nothing left of it
        pass


def run_isolated(section: Section, timeout_s: float, log_path: Path) -> Outcome:
    """Run one section in a forked child, stopped after timeout_s."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    # Not a daemon: torch.compile's workers are processes of their own.
    child = ctx.Process(target=_child, args=(section, log_path, send), name=section.name)
    start = time.perf_counter()
    child.start()
    send.close()
    result = None
    if receive.poll(timeout_s):
        try:
            result = receive.recv()
        except EOFError:  # the child died without a word
            result = None
        child.join(KILL_GRACE_S)
    wall = round(time.perf_counter() - start, 2)
    alive = child.is_alive()
    _kill_group(child.pid)  # the child, if stuck, and anything it left running (pytest, compilers)
    child.join(KILL_GRACE_S)
    if alive and result is None:
        return Outcome(section.name, "timeout", wall, reason=f"stopped after {timeout_s:.0f} s")
    receive.close()
    if result is None:
        return Outcome(
            section.name,
            "crashed",
            wall,
            reason=f"the section's process ended with exit code {child.exitcode} and no result "
            "(killed for memory, or a crash in native code); see the log",
        )
    return Outcome(section.name, wall_s=wall, **result)


@dataclass
class Report:
    """What goes into the JSON report, rewritten after each section."""

    path: Path
    header: dict[str, Any]
    outcomes: list[Outcome]

    def write(self, finished: bool) -> None:
        body = dict(self.header)
        body["finished_utc"] = utc_now() if finished else None
        body["sections"] = [o.as_json() for o in self.outcomes]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2) + "\n")
        tmp.replace(self.path)


def run_plan(
    sections: list[Section], *, out: Path, budget_s: float, header: dict[str, Any]
) -> Report:
    """Run the sections in order; one is started only while the budget leaves it min_s."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise RuntimeError("CUDA was started before the sections fork; they could not use it")
    report = Report(out / REPORT_NAME, dict(header, budget_s=budget_s), [])
    report.header["started_utc"] = utc_now()
    start = time.perf_counter()
    for section in sections:
        left = budget_s - (time.perf_counter() - start)
        if left < section.min_s:
            outcome = Outcome(
                section.name,
                "skipped",
                0.0,
                reason=f"time budget: {left:.0f} s of {budget_s:.0f} s left, the section "
                f"needs at least {section.min_s:.0f} s",
            )
        else:
            log.info("section %s: starting (stopped after %.0f s)", section.name, section.cap_s)
            outcome = run_isolated(section, min(section.cap_s, left), out / LOG_NAME)
        summary = (outcome.figures or {}).get("summary") or outcome.reason or ""
        log.info("section %s: %s in %.1f s. %s", section.name, outcome.status, outcome.wall_s,
                 summary)  # fmt: skip
        report.outcomes.append(outcome)
        report.header["wall_s"] = round(time.perf_counter() - start, 2)
        report.write(finished=False)
    report.write(finished=True)
    return report
