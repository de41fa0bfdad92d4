"""How long a local call may hold its slot, and how many slots one caller's address may hold.

Every call slot streams an engine, so a slot is the scarce thing: an answered offer keeps it
only for a short connect window, a connected call for at most `max_call_s`, and less when
nobody speaks or the peer vanishes. `avatar serve` sets these from its flags (docs/WEB.md,
"Exposure").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallLimits:
    """Per-call time limits and per-address admission limits."""

    connect_window_s: float = 5.0  # an answered offer holds its slot this long unless it connects
    max_call_s: float = 3600.0  # a connected call ends after this long
    idle_s: float = 300.0  # ... or once neither the caller nor a character has spoken this long
    peer_timeout_s: float = 5.0  # ... or once the caller's side has sent no packet this long
    calls_per_client: int = 1  # calls (connecting or running) one address may hold at once
    abandoned_wait_s: float = 30.0  # an address whose answered offer never connected waits this

    def __post_init__(self) -> None:
        for name in ("connect_window_s", "max_call_s", "idle_s", "peer_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.calls_per_client < 1:
            raise ValueError(f"calls_per_client must be 1 or more, not {self.calls_per_client}")
        if self.abandoned_wait_s < 0:
            raise ValueError(f"abandoned_wait_s must be 0 or more, not {self.abandoned_wait_s}")

    @property
    def check_every_s(self) -> float:
        """How often a running call looks at its clocks: often enough to notice a vanished
        peer within a quarter of `peer_timeout_s` of it going quiet."""
        return min(1.0, self.peer_timeout_s / 4)
