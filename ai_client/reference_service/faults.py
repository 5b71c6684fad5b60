"""Fault injection for tests: a bounded queue of scripted misbehaviours of ``POST /inference``.

Each queued fault is consumed by one inference request (``times`` > 1 repeats it). Kinds:

``status``     answer ``status`` (default 500) with ``body`` (default a JSON error) and an
               optional ``retry_after`` header value
``sleep``      wait ``seconds`` (at most the server's limit), then answer normally
``malformed``  answer 200 with a truncated JSON body
``invalid``    answer 200 with well-formed JSON that breaks the contract (risk_score 1.5)
``close``      close the connection without answering
``reset``      abort the connection with a TCP RST, without answering

"Connection refused" cannot be scripted from inside a listening server; a test gets it by
pointing the client at a port nobody listens on (or by stopping the service).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("status", "sleep", "malformed", "invalid", "close", "reset")
MAX_QUEUE = 100
MAX_TIMES = 100


class FaultError(ValueError):
    """A fault description is invalid (the control endpoint answers 400)."""


@dataclass(frozen=True)
class Fault:
    kind: str
    status: int = 500
    body: str | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    times: int = 1

    @classmethod
    def from_json(cls, obj: object, *, max_sleep: float) -> Fault:
        if not isinstance(obj, Mapping):
            raise FaultError("a fault must be a JSON object")
        kind = obj.get("kind")
        if kind not in KINDS:
            raise FaultError(f"kind must be one of {KINDS}")
        status = obj.get("status", 500)
        if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
            raise FaultError("status must be an HTTP status code")
        body = obj.get("body")
        if body is not None and not isinstance(body, str):
            raise FaultError("body must be a string")
        retry_after = obj.get("retry_after")
        if retry_after is not None:
            if isinstance(retry_after, bool) or not isinstance(retry_after, (int, str)):
                raise FaultError("retry_after must be a string or an integer")
            retry_after = str(retry_after)
        seconds = obj.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= max_sleep:
            raise FaultError(f"seconds must be a number in [0, {max_sleep}]")
        times = obj.get("times", 1)
        if not isinstance(times, int) or isinstance(times, bool) or not 1 <= times <= MAX_TIMES:
            raise FaultError(f"times must be an integer in [1, {MAX_TIMES}]")
        return cls(str(kind), status, body, retry_after, float(seconds), times)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class FaultQueue:
    """Thread-safe FIFO of faults, at most :data:`MAX_QUEUE` entries."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self.applied = 0

    def extend(self, faults: list[Fault], *, replace: bool = False) -> int:
        with self._lock:
            if replace:
                self._queue.clear()
            if len(self._queue) + len(faults) > MAX_QUEUE:
                raise FaultError(f"at most {MAX_QUEUE} queued faults")
            self._queue.extend(faults)
            return len(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._queue)

    def take(self) -> Fault | None:
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue[0]
            if fault.times > 1:
                self._queue[0] = Fault(
                    fault.kind, fault.status, fault.body, fault.retry_after, fault.seconds, fault.times - 1
                )
            else:
                self._queue.popleft()
            self.applied += 1
            return fault


def parse_faults(obj: object, *, max_sleep: float) -> list[Fault]:
    """A list of faults from JSON (a list, or ``{"faults": [...]}``)."""
    if isinstance(obj, Mapping):
        obj = obj.get("faults")
    if not isinstance(obj, list):
        raise FaultError('expected a list of faults or {"faults": [...]}')
    return [Fault.from_json(item, max_sleep=max_sleep) for item in obj]
