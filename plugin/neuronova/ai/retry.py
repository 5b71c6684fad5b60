"""What to do after an attempt: the retry decision and the backoff delay (pure)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .settings import RetryPolicy


def backoff_delay(policy: RetryPolicy, retry_index: int, retry_after: float | None = None,
                  rand: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry ``retry_index`` (0 for the first retry).

    Exponential (``base * factor**n``, capped at ``max_delay``), shortened by a random
    fraction of at most ``jitter`` so that jobs failing together do not retry together, and
    never shorter than the service's ``Retry-After``.
    """
    nominal = min(policy.max_delay_seconds, policy.base_delay_seconds * policy.factor ** max(0, retry_index))
    delay = nominal * (1.0 - policy.jitter * rand())
    if retry_after is not None and retry_after > delay:
        delay = min(float(retry_after), policy.max_delay_seconds)
    return max(0.0, delay)


@dataclass(frozen=True)
class Decision:
    """``retry_in`` is None when the job is finished (failed) and not retried."""

    retry_in: float | None
    reason: str


def after_transient(policy: RetryPolicy, attempts: int, error: str, retry_after: float | None = None,
                    rand: Callable[[], float] = random.random) -> Decision:
    """``attempts`` counts the attempt that just failed (1 after the first one)."""
    if attempts >= policy.max_attempts:
        return Decision(None, f"gave up after {attempts} attempt(s): {error}")
    return Decision(backoff_delay(policy, attempts - 1, retry_after, rand), error)
