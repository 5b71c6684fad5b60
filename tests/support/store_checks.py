"""What the plugin store must do on every back end (SQLite, PostgreSQL, MariaDB), written once:
two ``Database`` objects on one URL stand for two nodes of a cluster."""

from __future__ import annotations

import time

from sqlalchemy import delete

from neuronova import audit
from neuronova.audit import AuditEvent, AuditWriter
from neuronova.gate.grants import GrantIndex
from neuronova.gate.sessions import SessionRegistry
from neuronova.gate.shares import ShareRegistry
from neuronova.gate.tokens import PluginSigner
from neuronova.store import open_database
from neuronova.store.schema import grant_changes
from neuronova.store.versions import GRANTS, SESSIONS, SHARES, VersionWatch


def check_changes_reach_the_other_node(url: str) -> None:
    one, two = open_database(url), open_database(url)
    signer = PluginSigner("s" * 40)
    grants_1, grants_2 = GrantIndex(one), GrantIndex(two)
    shares_1, shares_2 = ShareRegistry(one, signer), ShareRegistry(two, signer)
    sessions_1, sessions_2 = SessionRegistry(one), SessionRegistry(two, refresh_seconds=3600)
    watch = VersionWatch(two.engine)
    watch.watch(GRANTS, grants_2.catch_up)
    watch.watch(SHARES, lambda _seen, _now: shares_2.reload())
    watch.watch(SESSIONS, lambda _seen, _now: sessions_2.reload())
    watch.poll()
    polls_seen = watch.reloads

    full_reloads = grants_2.full_reloads
    grants_1.add("1.2.3", "dr.a", "ordering", "admin")
    assert grants_2.relations("1.2.3", "dr.a") == frozenset()  # not before the poll: it is the mechanism
    watch.poll()
    assert grants_2.full_reloads == full_reloads  # only the changed pair was read again
    assert grants_2.relations("1.2.3", "dr.a") == {"ordering"}
    assert grants_2.studies_of("dr.a") == {"1.2.3"}
    grants_2.add("1.2.4", "dr.a", "reading", "admin")
    grants_1.add("1.2.4", "dr.a", "reading", "admin")  # already stored by the other node: no error
    assert grants_1.remove("1.2.3", "dr.a") == 1
    watch.poll()
    assert grants_2.relations("1.2.3", "dr.a") == frozenset()
    assert grants_2.studies_of("dr.a") == {"1.2.4"}
    # The change log pruned (or never written): the other node re-reads everything instead.
    grants_1.add("1.2.5", "dr.b", "ordering", "admin")
    grants_1.remove("1.2.4", "dr.a")
    with one.engine.begin() as connection:
        connection.execute(delete(grant_changes))
    watch.poll()
    assert grants_2.studies_of("dr.a") == frozenset() and grants_2.relations("1.2.5", "dr.b") == {"ordering"}

    share, _token = shares_1.create("1.2.3", "dr.a", 600)
    watch.poll()
    assert not shares_2.is_revoked(share.id)
    shares_1.revoke(share.id, audited=True)
    watch.poll()
    assert shares_2.is_revoked(share.id)
    stored = shares_2.get(share.id)
    # Epoch seconds keep sub-second precision (MariaDB's FLOAT would round them to minutes).
    assert stored is not None and abs(stored.expires_at - share.expires_at) < 0.01

    session = sessions_1.open("admin", 600)
    assert sessions_2.is_live(session) and not sessions_2.is_revoked(session)
    assert sessions_1.revoke(session)
    watch.poll()
    assert sessions_2.is_revoked(session) and not sessions_2.is_live(session)
    assert watch.reloads > polls_seen and watch.problem() == ""
    for db in (one, two):
        db.engine.dispose()


def check_one_audit_trail(url: str) -> None:
    one, two = open_database(url), open_database(url)
    writers = [AuditWriter(one, node="node-1"), AuditWriter(two, node="node-2")]
    now = time.time()
    for n, writer in enumerate(writers):
        for _ in range(3):
            writer.record(AuditEvent(now, f"user-{n}", "doctor", "127.0.0.1", "GET", "dicomweb", "/x", "9.9",
                                     "allow", "test", "110106"))
        writer.flush()
    rows = audit.query(one, study="9.9", limit=100)
    assert [r["node"] for r in rows] == ["node-1"] * 3 + ["node-2"] * 3
    assert [r["user"] for r in audit.query(two, node="node-2", study="9.9")] == ["user-1"] * 3
    assert abs(audit.parse_time(rows[0]["time"]) - now) < 0.01
    for writer in writers:
        writer.close()
    for db in (one, two):
        db.engine.dispose()


def check_renditions_and_their_claims(url: str) -> None:
    """HTJ2K results upserted and claims taken over between two nodes (htj2k/claims.py)."""
    from typing import Any, cast

    from neuronova.htj2k import settings as htj2k_settings
    from neuronova.htj2k.claims import RenditionClaims
    from neuronova.htj2k.rendition_store import DONE, FAILED, RenditionStore

    one, two = open_database(url), open_database(url)
    now = [time.time()]
    claims_1 = RenditionClaims(one, "node-1", 5.0, clock=lambda: now[0])
    claims_2 = RenditionClaims(two, "node-2", 5.0, clock=lambda: now[0])
    instance = f"inst-{time.time_ns()}"
    claims_1.claim(instance)
    claims_1.tick()
    now[0] += 6.0  # node-1 died
    assert claims_2.tick() == [instance]
    store = RenditionStore(htj2k_settings.parse({}), cast(Any, None), two)
    store.record(instance, "1.2.3.4", FAILED, error="first try")
    store.record(instance, "1.2.3.4", DONE, frames=[(0, 10)])  # the upsert replaces the row
    other = RenditionStore(htj2k_settings.parse({}), cast(Any, None), one)
    assert other.status(instance) == DONE
    assert claims_2.owned() == 0  # the result's transaction ended the claim
    for db in (one, two):
        db.engine.dispose()
