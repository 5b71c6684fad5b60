"""The plugin store on real PostgreSQL and MariaDB servers (Debian's packages, started here):
the same checks as on SQLite (tests/support/store_checks.py), two engines standing for two
nodes. The drivers are requirements.txt's psycopg and PyMySQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from tests.support.databases import DatabaseServer, start_mariadb, start_postgres
from tests.support.store_checks import (
    check_changes_reach_the_other_node,
    check_one_audit_trail,
    check_renditions_and_their_claims,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["postgresql", "mariadb"])
def server(request: pytest.FixtureRequest) -> Iterator[DatabaseServer]:
    started = start_postgres() if request.param == "postgresql" else start_mariadb()
    try:
        yield started
    finally:
        started.stop()


def test_changes_reach_the_other_node(server: DatabaseServer) -> None:
    check_changes_reach_the_other_node(server.url)


def test_one_audit_trail(server: DatabaseServer) -> None:
    check_one_audit_trail(server.url)


def test_renditions_and_their_claims(server: DatabaseServer) -> None:
    check_renditions_and_their_claims(server.url)


def test_times_are_double_precision(server: DatabaseServer) -> None:
    engine = create_engine(server.url)
    with engine.connect() as connection:
        value = connection.execute(text("SELECT expires_at FROM shares LIMIT 1")).scalar()
    engine.dispose()
    assert value is not None and float(value) != round(float(value))  # sub-second part kept
