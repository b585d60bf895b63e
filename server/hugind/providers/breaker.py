"""A per-provider circuit breaker: a provider whose attempts all fail in a row rests a while.

States: ``closed`` (requests flow; failed attempts in a row are counted, any answer resets the
count), ``open`` (``threshold`` failures in a row tripped it: requests skip the provider at
once for ``open_s``), ``half_open`` (the rest is over: one trial request, with one attempt, goes
through; its answer closes the breaker, its failure opens it again).

Threading: one event loop, not locked (like :class:`~hugind.providers.keys.KeyPool`).
"""

from __future__ import annotations

import time
from typing import Literal

from hugind.providers.keys import Clock

BreakerState = Literal["closed", "open", "half_open"]
Admission = Literal["normal", "trial"]


class CircuitBreaker:
    """Counts failed attempts in a row and trips after ``threshold`` of them.

    Args:
        threshold: failed attempts in a row (across requests) that trip the breaker.
        open_s: how long a tripped provider is skipped; 0 disables the breaker.
        clock: a monotonic clock.
    """

    def __init__(self, threshold: int, open_s: float, clock: Clock = time.monotonic) -> None:
        self.threshold = max(1, threshold)
        self.open_s = open_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._trial_in_flight = False
        self.trips = 0

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._clock() >= self._open_until:
            return "half_open"
        return self._state

    def admit(self) -> Admission | None:
        """Whether a request may go to the provider now.

        Returns:
            ``"normal"`` when closed; ``"trial"`` for the one request let through half-open
            (the caller makes one attempt and must call :meth:`end_trial`); ``None`` when the
            provider is resting or a trial is already in flight.
        """
        state = self.state
        if state == "closed":
            return "normal"
        if state == "open" or self._trial_in_flight:
            return None
        self._state = "half_open"
        self._trial_in_flight = True
        return "trial"

    def end_trial(self) -> None:
        """The trial request is over, whatever happened to it (another may be let through)."""
        self._trial_in_flight = False

    def retry_in_s(self) -> float:
        """Seconds until a request may be admitted again (0 when one would be now)."""
        state = self.state
        if state == "open":
            return max(0.0, self._open_until - self._clock())
        if state == "half_open" and self._trial_in_flight:
            return 1.0
        return 0.0

    def record_success(self) -> bool:
        """An answer came back; returns ``True`` if that closed a tripped breaker."""
        recovered = self._state != "closed"
        self._state = "closed"
        self._failures = 0
        return recovered

    def record_failure(self) -> bool:
        """An attempt failed; returns ``True`` if that tripped the breaker."""
        self._failures += 1
        if self.open_s <= 0:
            return False
        if self._state == "half_open" or (
            self._state == "closed" and self._failures >= self.threshold
        ):
            self._state = "open"
            self._open_until = self._clock() + self.open_s
            self._failures = 0
            self.trips += 1
            return True
        return False

    def describe(self) -> dict[str, object]:
        """State for the admin endpoint."""
        return {
            "state": self.state,
            "failures_in_a_row": self._failures,
            "retry_in_s": round(self.retry_in_s(), 3),
            "trips": self.trips,
        }
