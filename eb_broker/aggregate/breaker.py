"""A circuit breaker per downstream broker: stop asking one that keeps failing.

closed     every request asks the broker; ``threshold`` failures in a row open the circuit.
open       the broker is not asked (its absence is a WARN on every answer) until ``cooldown``
           seconds have passed.
half-open  the next request tries it once: success closes the circuit, failure opens it again
           for another ``cooldown``.

Only the broker's own faults count (no connection, timeouts, 5xx, unreadable answers); a 4xx
is an answer. Pure: the clock is passed in, so the states are tested without sleeping.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


@dataclass
class CircuitBreaker:
    """The state of one broker's circuit (see the module docstring)."""

    threshold: int = 3
    cooldown: float = 30.0
    failures: int = 0
    opened_at: float | None = None
    trial: bool = False
    last_error: str = ""

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError("the failure threshold must be at least 1")
        if self.cooldown < 0:
            raise ValueError("the cool-down must not be negative")

    def state(self, now: float) -> State:
        if self.opened_at is None:
            return State.CLOSED
        if now - self.opened_at >= self.cooldown:
            return State.HALF_OPEN
        return State.OPEN

    def allow(self, now: float) -> bool:
        """May the broker be asked now? In half-open state only one caller gets a yes."""
        state = self.state(now)
        if state == State.CLOSED:
            return True
        if state == State.HALF_OPEN and not self.trial:
            self.trial = True
            return True
        return False

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.trial = False
        self.last_error = ""

    def failure(self, now: float, error: str = "") -> None:
        self.failures += 1
        self.last_error = error
        if self.trial or self.failures >= self.threshold:
            self.opened_at = now
        self.trial = False

    def retry_in(self, now: float) -> float:
        """Seconds until the circuit half-opens (0 when it is not open)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.opened_at + self.cooldown - now)

    def status(self, now: float) -> dict[str, Any]:
        """For ``/health`` and ``/capabilities``."""
        out: dict[str, Any] = {"state": self.state(now).value, "failures": self.failures}
        if self.opened_at is not None:
            out["retry_in"] = round(self.retry_in(now), 1)
        if self.last_error:
            out["last_error"] = self.last_error
        return out
