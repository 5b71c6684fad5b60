"""Explicit grants ("this subject ordered/read this study"), pushed by admins or the RIS.

Kept in the store and mirrored in memory, so the per-request check is a dictionary look-up
and a change is effective for the next request.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from ..store import Database
from ..store.schema import grants as grants_table
from .settings import RELATIONS


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
        self.reload()

    def reload(self) -> None:
        with self._db.engine.connect() as connection:
            rows = connection.execute(select(grants_table)).all()
        by_study: dict[str, dict[str, set[str]]] = {}
        by_subject: dict[str, set[str]] = {}
        for row in rows:
            by_study.setdefault(row.study_uid, {}).setdefault(row.subject, set()).add(row.relation)
            by_subject.setdefault(row.subject, set()).add(row.study_uid)
        with self._lock:
            self._by_study, self._by_subject = by_study, by_subject
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
                with self._db.engine.begin() as connection:
                    connection.execute(insert(grants_table).values(**grant.__dict__))
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
            self._by_study.get(study_uid, {}).pop(subject, None)
            self._by_subject.get(subject, set()).discard(study_uid)
            self.version += 1
        return int(removed or 0)
