"""Reading the trail back (``GET /neuronova/audit``): every node's events, oldest first."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from ..store import Database
from ..store.schema import audit_events
from .events import AuditEvent


def query(db: Database, *, user: str = "", study: str = "", decision: str = "", node: str = "",
          since: float | None = None, until: float | None = None, limit: int = 100,
          offset: int = 0) -> list[dict[str, Any]]:
    statement = select(audit_events).order_by(audit_events.c.id)
    if user:
        statement = statement.where(audit_events.c.user == user)
    if study:
        statement = statement.where(audit_events.c.study_uid == study)
    if decision:
        statement = statement.where(audit_events.c.decision == decision)
    if node:
        statement = statement.where(audit_events.c.node == node)
    if since is not None:
        statement = statement.where(audit_events.c.time >= since)
    if until is not None:
        statement = statement.where(audit_events.c.time < until)
    statement = statement.limit(limit).offset(offset)
    with db.engine.connect() as connection:
        rows = connection.execute(statement).mappings().all()
    return [{**AuditEvent(**{k: v for k, v in row.items() if k != "id"}).as_json(), "id": row["id"]} for row in rows]


def as_json_lines(rows: list[dict[str, Any]]) -> Iterator[str]:
    for row in rows:
        yield json.dumps(row, separators=(",", ":")) + "\n"
