"""``NeuroNova.Audit``: retention, fail-closed, the writer's queue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import option
from ..errors import ConfigError


@dataclass(frozen=True)
class AuditSettings:
    """``NeuroNova.Audit``."""

    retention_days: float = 2190.0  # six years, the usual span for health-record audit trails
    max_events: int = 20_000_000  # about 6 GB of SQLite; the oldest go first beyond it
    purge_interval_seconds: float = 600.0
    fail_closed: bool = True
    capacity: int = 10000
    enqueue_wait_seconds: float = 0.1


DEFAULT_AUDIT = AuditSettings()


def parse_settings(raw: Mapping[str, Any]) -> AuditSettings:
    d = DEFAULT_AUDIT
    settings = AuditSettings(
        retention_days=option(raw, "RetentionDays", float, d.retention_days),
        max_events=option(raw, "MaxEvents", int, d.max_events),
        purge_interval_seconds=option(raw, "PurgeIntervalSeconds", float, d.purge_interval_seconds),
        fail_closed=option(raw, "FailClosed", bool, d.fail_closed),
        capacity=option(raw, "QueueCapacity", int, d.capacity),
        enqueue_wait_seconds=option(raw, "EnqueueWaitSeconds", float, d.enqueue_wait_seconds),
    )
    if settings.retention_days < 0 or settings.max_events < 0:
        raise ConfigError("Audit.RetentionDays and Audit.MaxEvents must not be negative (0: no bound)")
    if settings.purge_interval_seconds <= 0 or settings.capacity < 1:
        raise ConfigError("Audit.PurgeIntervalSeconds and Audit.QueueCapacity must be positive")
    if not 0 <= settings.enqueue_wait_seconds <= 5:
        raise ConfigError("Audit.EnqueueWaitSeconds must be between 0 and 5")
    return settings
