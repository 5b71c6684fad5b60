"""When the ingest counts as paused: no new instance for a few of its own gaps.

Renditions wait while instances keep arriving (the ingest comes first, issue 12) and the
queue drains once the ingest pauses. A fixed quiet window wastes its whole length at the end
of every ingest: 150 ms of idle cores after a 200-slice upload that lasts ~0.7 s. So the window
follows the ingest's own pace: ``gaps`` times the recent mean gap between two instances, never
shorter than ``shortest`` (a thread of Orthanc's may be descheduled that long on a busy machine)
nor longer than ``longest`` (``Htj2k.IngestQuietMilliseconds``). A modality sending an
instance every 40 ms is waited for 150 ms; a REST upload storing one every 3 ms, 25 ms.

>>> now = [0.0]
>>> pace = IngestPace(longest=0.150, clock=lambda: now[0])
>>> pace.busy()
False
>>> pace.arrived(); pace.window()  # one instance: no pace known yet
0.15
>>> for _ in range(20):
...     now[0] += 0.002; pace.arrived()
>>> round(pace.window(), 3)  # an instance every 2 ms: the floor
0.025
>>> now[0] += 0.020; pace.busy()
True
>>> now[0] += 0.010; pace.busy()
False
"""

from __future__ import annotations

import threading
from collections.abc import Callable

SHORTEST = 0.025  # seconds
GAPS = 8  # the window is this many of the ingest's mean gaps
_WEIGHT = 0.2  # of the newest gap in the running mean


class IngestPace:
    def __init__(self, longest: float, clock: Callable[[], float], *, shortest: float = SHORTEST,
                 gaps: int = GAPS) -> None:
        self._longest = longest
        self._shortest = min(shortest, longest)
        self._gaps = gaps
        self._now = clock
        self._lock = threading.Lock()
        self._last = float("-inf")
        self._mean_gap: float | None = None  # None: no gap of this burst seen yet

    def arrived(self) -> None:
        """An instance arrived (Orthanc's change thread: cheap, never blocks for long)."""
        now = self._now()
        with self._lock:
            gap = now - self._last
            if gap >= self._longest:  # a new burst: its pace is not known yet
                self._mean_gap = None
            elif self._mean_gap is None:
                self._mean_gap = gap
            else:
                self._mean_gap += _WEIGHT * (gap - self._mean_gap)
            self._last = now

    def window(self) -> float:
        """Seconds without an instance after which the ingest counts as paused."""
        with self._lock:
            return self._window()

    def quiet_in(self) -> float:
        """Seconds until the ingest counts as paused (0 or less: it has)."""
        with self._lock:  # the last arrival and the pace it set, read together
            paused_at = self._last + self._window()
        return paused_at - self._now()

    def _window(self) -> float:
        if self._mean_gap is None:
            return self._longest
        return min(self._longest, max(self._shortest, self._gaps * self._mean_gap))

    def busy(self) -> bool:
        return self.quiet_in() > 0
