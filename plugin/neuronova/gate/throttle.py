"""Password throttling: per-address and per-user failure counts with temporary lock-out, and
a bound on how many password hashes are computed at once.

Every password check costs a 32 MiB, ~50 ms scrypt (passwords.py). Without a bound, a flood
of wrong passwords would use every HTTP thread's worth of memory and both cores. So:

- after ``max_failures_per_address`` failures from one address (or ``max_failures_per_user``
  for one user name) within ``window_seconds``, that key is locked out for
  ``lockout_seconds``; every further lock-out of the same key doubles it, up to
  ``max_lockout_seconds``. A locked key is refused before any hash is computed.
- at most ``concurrent_checks`` hashes run at once; a check that cannot start within
  ``check_wait_seconds`` is refused as "busy" (not counted as a failure).
- the tables keep at most ``max_entries`` keys each (least recently seen evicted), so a flood
  of addresses or user names costs bounded memory.

>>> t = Throttle(ThrottleSettings(max_failures_per_address=2, max_failures_per_user=5), clock=lambda: 0.0)
>>> t.failure("10.0.0.1", "admin"), t.failure("10.0.0.1", "admin")
(0.0, 60.0)
>>> t.retry_after("10.0.0.1", "root"), t.retry_after("10.0.0.2", "admin")
(60.0, 0.0)
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..config import option
from ..errors import ConfigError

__all__ = ["DEFAULT_THROTTLE", "Busy", "Throttle", "ThrottleSettings", "parse"]


@dataclass(frozen=True)
class ThrottleSettings:
    """``Gate.Throttle``."""

    max_failures_per_address: int = 10
    max_failures_per_user: int = 5
    window_seconds: float = 900.0
    lockout_seconds: float = 60.0
    max_lockout_seconds: float = 900.0
    concurrent_checks: int = 1
    check_wait_seconds: float = 0.25  # short: a waiting check holds one of Orthanc's HTTP threads
    max_entries: int = 10000


DEFAULT_THROTTLE = ThrottleSettings()


def parse(raw: Mapping[str, Any]) -> ThrottleSettings:
    d = DEFAULT_THROTTLE
    settings = ThrottleSettings(
        max_failures_per_address=option(raw, "MaxFailuresPerAddress", int, d.max_failures_per_address),
        max_failures_per_user=option(raw, "MaxFailuresPerUser", int, d.max_failures_per_user),
        window_seconds=option(raw, "WindowSeconds", float, d.window_seconds),
        lockout_seconds=option(raw, "LockoutSeconds", float, d.lockout_seconds),
        max_lockout_seconds=option(raw, "MaxLockoutSeconds", float, d.max_lockout_seconds),
        concurrent_checks=option(raw, "ConcurrentChecks", int, d.concurrent_checks),
        check_wait_seconds=option(raw, "CheckWaitSeconds", float, d.check_wait_seconds),
        max_entries=option(raw, "MaxEntries", int, d.max_entries),
    )
    if min(settings.max_failures_per_address, settings.max_failures_per_user, settings.concurrent_checks,
           settings.max_entries) < 1:
        raise ConfigError("Gate.Throttle: MaxFailures*, ConcurrentChecks and MaxEntries must be positive")
    if not 0 < settings.lockout_seconds <= settings.max_lockout_seconds or settings.window_seconds <= 0:
        raise ConfigError("Gate.Throttle: need 0 < LockoutSeconds <= MaxLockoutSeconds and WindowSeconds > 0")
    if not 0 <= settings.check_wait_seconds <= 30:
        raise ConfigError("Gate.Throttle.CheckWaitSeconds must be between 0 and 30")
    return settings


class Busy(Exception):
    """Too many password checks are running: refused without computing a hash."""


@dataclass
class _Entry:
    failures: int = 0
    window_start: float = 0.0
    locked_until: float = 0.0
    lockouts: int = 0  # consecutive lock-outs: each doubles the next


class _Table:
    def __init__(self, limit: int, max_entries: int, settings: ThrottleSettings) -> None:
        self._limit, self._max_entries, self._s = limit, max_entries, settings
        self._data: OrderedDict[str, _Entry] = OrderedDict()

    def retry_after(self, key: str, now: float) -> float:
        entry = self._data.get(key)
        return max(0.0, entry.locked_until - now) if entry is not None else 0.0

    def failure(self, key: str, now: float) -> float:
        """Count a failure; the lock-out it starts (seconds), or 0."""
        entry = self._data.pop(key, None) or _Entry(window_start=now)
        self._data[key] = entry  # most recently seen last
        while len(self._data) > self._max_entries:
            self._data.popitem(last=False)
        if now - entry.window_start > self._s.window_seconds:
            entry.failures, entry.window_start = 0, now
            if entry.locked_until + self._s.window_seconds < now:
                entry.lockouts = 0  # a quiet window forgives earlier lock-outs
        entry.failures += 1
        if entry.failures < self._limit:
            return 0.0
        seconds = min(self._s.max_lockout_seconds, self._s.lockout_seconds * 2.0 ** min(entry.lockouts, 30))
        entry.lockouts += 1
        entry.failures, entry.window_start, entry.locked_until = 0, now, now + seconds
        return seconds

    def success(self, key: str) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)


class Throttle:
    def __init__(self, settings: ThrottleSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._lock = threading.Lock()
        self._addresses = _Table(settings.max_failures_per_address, settings.max_entries, settings)
        self._users = _Table(settings.max_failures_per_user, settings.max_entries, settings)
        self._checks = threading.BoundedSemaphore(settings.concurrent_checks)

    def retry_after(self, ip: str, user: str) -> float:
        """Seconds until ``ip`` and ``user`` may try again (0: now)."""
        now = self._clock()
        with self._lock:
            return max(self._addresses.retry_after(ip, now), self._users.retry_after(user, now))

    def failure(self, ip: str, user: str) -> float:
        """Record a failed check; the lock-out it starts for either key (seconds), or 0."""
        now = self._clock()
        with self._lock:
            return max(self._addresses.failure(ip, now), self._users.failure(user, now))

    def success(self, ip: str, user: str) -> None:
        with self._lock:
            self._addresses.success(ip)
            self._users.success(user)

    @contextmanager
    def check_slot(self) -> Iterator[None]:
        """Hold one of the few password-check slots, or raise :class:`Busy`."""
        if not self._checks.acquire(timeout=self.settings.check_wait_seconds):
            raise Busy("too many password checks at once")
        try:
            yield
        finally:
            self._checks.release()

    def sizes(self) -> tuple[int, int]:
        return len(self._addresses), len(self._users)
