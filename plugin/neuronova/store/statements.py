"""Statements every back end needs in its own dialect, and the bound on IN (...) lists."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table
from sqlalchemy.dialects import mysql, postgresql, sqlite

# Bound parameters per IN (...): well under every back end's limit.
IDS_PER_QUERY = 500

T = TypeVar("T")


def upsert(table: Table, key: str, dialect: str) -> Any:
    """One statement that inserts a row or rewrites every other column of the row with the
    same ``key`` (executed for many rows at once)."""
    columns = [c.name for c in table.columns if c.name != key]
    if dialect == "mysql":  # MariaDB and MySQL
        on_mysql = mysql.insert(table)
        return on_mysql.on_duplicate_key_update({c: on_mysql.inserted[c] for c in columns})
    if dialect == "postgresql":
        on_postgresql = postgresql.insert(table)
        return on_postgresql.on_conflict_do_update(index_elements=[key],
                                                   set_={c: on_postgresql.excluded[c] for c in columns})
    on_sqlite = sqlite.insert(table)
    return on_sqlite.on_conflict_do_update(index_elements=[key], set_={c: on_sqlite.excluded[c] for c in columns})


def batches(items: Sequence[T], size: int = IDS_PER_QUERY) -> Iterator[Sequence[T]]:
    """Consecutive slices of at most ``size`` items (one IN (...) list each)."""
    return (items[start:start + size] for start in range(0, len(items), size))
