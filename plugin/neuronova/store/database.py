"""Opening the store."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

from ..errors import ConfigError
from .schema import metadata


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
        metadata.create_all(engine)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"the plugin store cannot be opened: {type(exc).__name__}: {exc}") from exc
    return Database(engine, engine.url.render_as_string(hide_password=True))
