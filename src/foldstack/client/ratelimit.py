"""Client-side rate limiting: never more than `rate` control-plane calls per `period`.

A token bucket whose capacity equals its refill per period lets `2 x rate` calls through
in an unlucky one-second window (a full bucket, then a period's refill). Step Functions
and Batch count calls per second, so this limiter keeps the stronger guarantee the issue
asks for: in *every* window of `period` seconds at most `rate` permits are granted. It
is a bucket of `rate` tokens where each token comes back exactly `period` after it was
spent (a sliding-window log), so short bursts (an interactive `submit`: 4-5 calls) go out
at once and long campaigns run at the limit.

Time is injectable (`clock`, `sleep`), so a test with a fake clock can prove the
guarantee over thousands of calls without waiting.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class FakeClock:
    """A deterministic clock for tests and benchmarks: `sleep` advances `now`."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


class RateLimiter:
    """Thread-safe. `acquire()` blocks until a permit is free and records when it was granted."""

    def __init__(
        self,
        rate: int = 40,
        period: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        record: bool = False,
    ) -> None:
        if rate < 1 or period <= 0:
            raise ValueError("rate must be >= 1 and period > 0")
        self.rate, self.period = int(rate), float(period)
        self.period_ns = int(round(period * 1e9))  # bookkeeping in integer ns: no float ties
        self._clock, self._sleep = clock, sleep
        self._granted: deque[int] = deque()
        self._lock = threading.Lock()
        self.history: list[int] | None = [] if record else None  # grant times in ns (tests, bench)
        self.waited = 0.0

    def _now_ns(self) -> int:
        return int(round(self._clock() * 1e9))

    def acquire(self) -> float:
        """Wait for a permit; return the time (clock seconds) it was granted."""
        while True:
            with self._lock:
                now = self._now_ns()
                while self._granted and now - self._granted[0] >= self.period_ns:
                    self._granted.popleft()
                if len(self._granted) < self.rate:
                    self._granted.append(now)
                    if self.history is not None:
                        self.history.append(now)
                    return now / 1e9
                delay = max(self._granted[0] + self.period_ns - now, 1) / 1e9
            self.waited += delay
            self._sleep(delay)

    def __enter__(self) -> float:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        return None


def max_in_window(times: list[int] | list[float], period: float = 1_000_000_000) -> int:
    """Most events in any half-open window [t, t + period) (default: 1 s in ns, as
    `RateLimiter.history` records them)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best
