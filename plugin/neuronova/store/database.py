"""Opening the store."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError
from .schema import metadata
from .versions import ensure_rows


@dataclass(frozen=True)
class Database:
    engine: Engine
    url_for_logs: str  # without the password


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets readers (audit queries) run while the audit writer writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_database(url: str) -> Database:
    """Connect and create missing tables; any failure is a ConfigError (the gate stays closed)."""
    try:
        engine = create_engine(url, pool_pre_ping=True, future=True)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        _create_schema(engine)
        ensure_rows(engine)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"the plugin store cannot be opened: {type(exc).__name__}: {exc}") from exc
    return Database(engine, engine.url.render_as_string(hide_password=True))


def _create_schema(engine: Engine) -> None:
    # Nodes of a cluster start together on an empty store: two CREATE TABLEs of the same table
    # race and one fails; the next pass finds the table there.
    for attempt in range(5):
        try:
            metadata.create_all(engine)
            break
        except SQLAlchemyError:
            if attempt == 4:
                raise
            time.sleep(0.2 * (attempt + 1))
    _add_missing_columns(engine)


def _add_missing_columns(engine: Engine) -> None:
    """Columns added to existing tables since their creation (create_all adds tables only)."""
    columns = {c["name"] for c in inspect(engine).get_columns("audit_events")}
    if "node" not in columns:
        try:
            with engine.begin() as connection:
                connection.execute(text("ALTER TABLE audit_events ADD COLUMN node VARCHAR(64) NOT NULL DEFAULT ''"))
        except SQLAlchemyError:
            # Another node added it meanwhile; anything else shows at the next check.
            if "node" not in {c["name"] for c in inspect(engine).get_columns("audit_events")}:
                raise
