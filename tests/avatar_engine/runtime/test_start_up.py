"""Start-up takes the ranks' "ready" in whatever order they come, and a rank that says anything
else ends it with what the rank said.

The runtime's ranks run this module, which is rank_main with the ranks' messages rearranged:
DiT rank 1 says "ready" well before DiT rank 0 (what sequence parallelism does when rank 0 is
the slower one), and with UNEXPECTED set it says something else first.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from avatar_engine.runtime import disaggregated, rank_main, ranks
from avatar_engine.runtime.disaggregated import DisaggregatedRuntime
from avatar_engine.runtime.protocol import Message, Ready, send
from tests.avatar_engine.runtime.test_runtime import SPEC

ROOT = Path(__file__).resolve().parents[3]
MODULE = ".".join(Path(__file__).resolve().relative_to(ROOT).with_suffix("").parts)
MARKER_ENV = "TEST_START_UP_MARKER"  # a file DiT rank 1 creates once it has said "ready"
UNEXPECTED_ENV = "TEST_START_UP_UNEXPECTED"  # what DiT rank 1 says before "ready", if set
LATE_S = 0.5  # rank 0 says "ready" this long after rank 1: many of the runtime's polls
START_TIMEOUT_S = 60.0  # start-up takes seconds (15 on 2 busy cores); a lost "ready" all of it


@dataclass(frozen=True)
class Unexpected:
    """A message no rank sends; its kind comes from UNEXPECTED_ENV."""

    kind: str
    rank: int


def _send_out_of_order(conn, message: Message) -> None:
    """The ranks' send: DiT rank 0 says "ready" LATE_S after rank 1 has."""
    marker = Path(os.environ[MARKER_ENV])
    if message == Ready(0):
        while not marker.exists():
            time.sleep(0.01)
        time.sleep(LATE_S)
    if message == Ready(1) and UNEXPECTED_ENV in os.environ:
        # by the module's own name, not __main__, so the runtime's process can unpickle it
        from tests.avatar_engine.runtime.test_start_up import Unexpected

        send(conn, Unexpected(os.environ[UNEXPECTED_ENV], 1))
    send(conn, message)
    if message == Ready(1):
        marker.touch()


@pytest.fixture
def ranks_out_of_order(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)  # the ranks run `python -m MODULE` from here
    monkeypatch.setattr(disaggregated, "RANK_MODULE", MODULE)
    monkeypatch.setenv(MARKER_ENV, str(tmp_path / "rank 1 is ready"))
    return monkeypatch


def start() -> DisaggregatedRuntime:
    return DisaggregatedRuntime(
        SPEC,
        dit_ranks=2,
        dit_threads=1,
        decoder_threads=1,
        warmup=False,
        start_timeout_s=START_TIMEOUT_S,
    )


def test_a_later_rank_ready_first_is_not_lost(ranks_out_of_order):
    runtime = start()
    try:
        assert all(proc.poll() is None for proc in runtime.procs)
    finally:
        runtime.close()
    assert all(proc.poll() is not None for proc in runtime.procs)


def test_a_rank_saying_something_else_first_stops_the_start(ranks_out_of_order):
    ranks_out_of_order.setenv(UNEXPECTED_ENV, "warming up")
    with pytest.raises(
        RuntimeError, match="DiT rank 1 sent 'warming up' where 'ready' was expected"
    ):
        start()


if __name__ == "__main__":
    ranks.send = _send_out_of_order
    rank_main.rank_main(sys.argv[1], int(sys.argv[2]))
