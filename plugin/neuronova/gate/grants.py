"""Explicit grants ("this subject ordered/read this study"), pushed by admins or the RIS.

Kept in the store and mirrored in memory, so the per-request check is a dictionary look-up
and a change is effective for the next request on this node. Each change bumps the shared
"grants" counter (store/versions.py) and logs which (study, subject) it touched under the
counter's new value (``grant_changes``): the other nodes re-read just those pairs within a
poll (:meth:`GrantIndex.catch_up`), or everything when the log no longer covers the gap.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import Connection, delete, insert, select, tuple_
from sqlalchemy.exc import IntegrityError

from ..store import Database
from ..store.schema import grant_changes
from ..store.schema import grants as grants_table
from ..store.versions import GRANTS, bump
from .settings import RELATIONS

GRANT_CHANGES_KEPT = 10000  # rows of the change log; a node further behind reloads everything
CATCH_UP_PAIRS = 500  # beyond this many changed pairs, one full reload is cheaper


@dataclass(frozen=True)
class Grant:
    study_uid: str
    subject: str
    relation: str
    created_at: float
    created_by: str


class GrantIndex:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._by_study: dict[str, dict[str, set[str]]] = {}
        self._by_subject: dict[str, set[str]] = {}
        self.version = 0  # bumped on every change: caches keyed by it see changes at once
        self.full_reloads = 0  # whole-table reads (start-up, or a node too far behind the log)
        self.reload()

    def reload(self) -> None:
        # Under the writers' lock: a snapshot read before a local change and assigned after it
        # would undo that change here until the next reload. Readers never take the lock.
        with self._lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        with self._db.engine.connect() as connection:
            rows = connection.execute(select(grants_table)).all()
        by_study: dict[str, dict[str, set[str]]] = {}
        by_subject: dict[str, set[str]] = {}
        for row in rows:
            by_study.setdefault(row.study_uid, {}).setdefault(row.subject, set()).add(row.relation)
            by_subject.setdefault(row.subject, set()).add(row.study_uid)
        self._by_study, self._by_subject = by_study, by_subject
        self.version += 1
        self.full_reloads += 1

    def catch_up(self, seen: int | None, current: int) -> None:
        """The store's grants moved from version ``seen`` to ``current`` (VersionWatch): re-read
        the pairs changed in between, or everything (first load, or the log has gaps)."""
        if seen is None or current - seen > CATCH_UP_PAIRS:
            self.reload()
            return
        with self._lock:
            with self._db.engine.connect() as connection:
                changes = connection.execute(select(grant_changes.c.study_uid, grant_changes.c.subject).where(
                    grant_changes.c.seq > seen, grant_changes.c.seq <= current)).all()
                if len(changes) != current - seen:  # pruned, or a change written without its log row
                    self._reload_locked()
                    return
                pairs = {(row.study_uid, row.subject) for row in changes}
                rows = connection.execute(select(grants_table.c.study_uid, grants_table.c.subject,
                                                 grants_table.c.relation).where(
                    tuple_(grants_table.c.study_uid, grants_table.c.subject).in_(sorted(pairs)))).all()
            for study_uid, subject in pairs:
                self._by_study.get(study_uid, {}).pop(subject, None)
                self._by_subject.get(subject, set()).discard(study_uid)
            for row in rows:
                self._by_study.setdefault(row.study_uid, {}).setdefault(row.subject, set()).add(row.relation)
                self._by_subject.setdefault(row.subject, set()).add(row.study_uid)
            self.version += 1

    def relations(self, study_uid: str, subject: str) -> frozenset[str]:
        return frozenset(self._by_study.get(study_uid, {}).get(subject, ()))

    def studies_of(self, subject: str) -> frozenset[str]:
        return frozenset(self._by_subject.get(subject, ()))

    def list(self, study_uid: str) -> list[Grant]:
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(grants_table).where(grants_table.c.study_uid == study_uid).order_by(grants_table.c.subject)
            ).all()
        return [Grant(r.study_uid, r.subject, r.relation, r.created_at, r.created_by) for r in rows]

    def add(self, study_uid: str, subject: str, relation: str, created_by: str) -> Grant:
        if relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}")
        grant = Grant(study_uid, subject, relation, time.time(), created_by)
        with self._lock:
            if relation not in self._by_study.get(study_uid, {}).get(subject, set()):
                try:
                    with self._db.engine.begin() as connection:
                        connection.execute(insert(grants_table).values(**grant.__dict__))
                        _log_change(connection, study_uid, subject)
                except IntegrityError:
                    pass  # another node stored the same grant; this node's copy lagged behind
            self._by_study.setdefault(study_uid, {}).setdefault(subject, set()).add(relation)
            self._by_subject.setdefault(subject, set()).add(study_uid)
            self.version += 1
        return grant

    def remove(self, study_uid: str, subject: str) -> int:
        with self._lock:
            with self._db.engine.begin() as connection:
                removed = connection.execute(
                    delete(grants_table).where(
                        grants_table.c.study_uid == study_uid, grants_table.c.subject == subject
                    )
                ).rowcount
                _log_change(connection, study_uid, subject)
            self._by_study.get(study_uid, {}).pop(subject, None)
            self._by_subject.get(subject, set()).discard(study_uid)
            self.version += 1
        return int(removed or 0)


def _log_change(connection: Connection, study_uid: str, subject: str) -> None:
    """Bump the shared counter and log the pair under its new value, in the change's transaction."""
    seq = bump(connection, GRANTS)
    connection.execute(insert(grant_changes).values(seq=seq, study_uid=study_uid, subject=subject, time=time.time()))
    if seq % 1000 == 0:
        connection.execute(delete(grant_changes).where(grant_changes.c.seq <= seq - GRANT_CHANGES_KEPT))
