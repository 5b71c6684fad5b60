"""Purging the trail by age (``RetentionDays``) and by count (``MaxEvents``).

Ids grow with time, so both bounds become one id cutoff; rows go in chunks of ``CHUNK``, a
bounded number per pass, so the writer (which calls this between batches) pauses briefly.
With several nodes on one store every node purges: the deletes are idempotent.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from ..store import Database
from ..store.schema import audit_events
from .settings import AuditSettings

CHUNK = 10000  # rows per DELETE
CHUNKS_PER_PASS = 50


def purge(db: Database, settings: AuditSettings, now: float) -> tuple[int, bool]:
    """One pass: (events deleted, True when nothing is left to purge)."""
    ids = audit_events.c.id
    with db.engine.connect() as connection:
        low, high = connection.execute(select(func.min(ids), func.max(ids))).one()
        if low is None:
            return 0, True
        low, high = int(low), int(high)
        cutoff = high - settings.max_events if settings.max_events else low - 1
        if settings.retention_days:
            old = connection.execute(select(func.max(ids)).where(
                audit_events.c.time < now - settings.retention_days * 86400)).scalar()
            cutoff = max(cutoff, old or low - 1)
    purged = 0
    for _ in range(CHUNKS_PER_PASS):
        if low > cutoff:
            return purged, True
        upper = min(cutoff, low + CHUNK - 1)
        with db.engine.begin() as connection:
            purged += connection.execute(delete(audit_events).where(ids <= upper)).rowcount or 0
        low = upper + 1
    return purged, low > cutoff
