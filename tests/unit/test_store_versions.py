"""Shared plugin state across nodes on SQLite (tests/integration/test_store_backends.py runs the
same checks on real PostgreSQL and MariaDB servers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuronova.store import open_database
from neuronova.store.versions import GRANTS, VersionWatch, bump
from tests.support.store_checks import (
    check_changes_reach_the_other_node,
    check_one_audit_trail,
    check_renditions_and_their_claims,
)


def test_changes_reach_the_other_node(tmp_path: Path) -> None:
    check_changes_reach_the_other_node(f"sqlite:///{tmp_path}/store.sqlite")


def test_one_audit_trail(tmp_path: Path) -> None:
    check_one_audit_trail(f"sqlite:///{tmp_path}/store.sqlite")


def test_renditions_and_their_claims(tmp_path: Path) -> None:
    check_renditions_and_their_claims(f"sqlite:///{tmp_path}/store.sqlite")


def test_a_failed_reload_is_retried_and_a_silent_store_is_reported(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    now = [0.0]
    watch = VersionWatch(db.engine, clock=lambda: now[0])
    calls: list[int] = []

    def flaky(_seen: int | None, _now: int) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("store away")

    watch.watch(GRANTS, flaky)
    watch.poll()  # first reload fails: not marked as seen
    watch.poll()  # retried
    assert len(calls) == 2
    watch.poll()
    assert len(calls) == 2  # nothing changed since
    with db.engine.begin() as connection:
        bump(connection, GRANTS)
    watch.poll()
    assert len(calls) == 3
    db.engine.dispose()
    (tmp_path / "store.sqlite").unlink()
    (tmp_path / "store.sqlite").mkdir()  # the store cannot be opened any more
    now[0] = 10.0
    watch.poll()
    assert "not refreshed" in watch.problem()


def test_an_old_audit_table_gains_the_node_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as connection:  # the audit table as it was before the node column
        connection.execute("CREATE TABLE audit_events (id INTEGER PRIMARY KEY, time FLOAT NOT NULL, "
                           "user VARCHAR(255) NOT NULL, role VARCHAR(32) NOT NULL, ip VARCHAR(64) NOT NULL, "
                           "method VARCHAR(8) NOT NULL, route VARCHAR(64) NOT NULL, uri TEXT NOT NULL, "
                           "study_uid VARCHAR(64) NOT NULL, decision VARCHAR(8) NOT NULL, reason TEXT NOT NULL, "
                           "event_type VARCHAR(8) NOT NULL)")
    check_one_audit_trail(f"sqlite:///{path}")


@pytest.mark.parametrize("interval", [0.05])
def test_the_watch_thread_polls(tmp_path: Path, interval: float) -> None:
    import threading

    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    seen = threading.Event()
    watch = VersionWatch(db.engine, interval=interval)
    watch.watch(GRANTS, lambda _seen, _now: seen.set())
    watch.start()
    try:
        assert seen.wait(10)  # the first poll reloads every kind
    finally:
        watch.stop()
