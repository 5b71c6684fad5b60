"""Renditions done once in a cluster, and never lost when a node dies mid-way.

Orthanc tells only the node that received an instance (NEW_INSTANCE), so each instance is
queued on one node. That node *claims* it in the shared store (``htj2k_claims``: instance,
node, lease) and renews the leases of everything it still has to encode, queued or in the
encoders, every ``lease / 3`` seconds; a result written releases the claim. When a node dies
(``kill -9``, a crash) its leases run out: any node's sweeper then takes the expired claims
over, one conditional UPDATE each (``... WHERE lease_until < now``: exactly one node wins),
and encodes what has no result yet. A single node takes over its own claims after a restart.

Claims and releases are written in batches by the sweeper thread (Orthanc's change thread
only adds to a set). A node that dies before its claims are written leaves instances with
neither a claim nor a result: every node also reads Orthanc's change log (shared with the
index) and adopts such instances once they have stayed unclaimed for a lease
(:meth:`RenditionClaims.adopt`, insert-or-fail: one node wins).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..store import Database
from ..store.schema import htj2k_claims as claims

_TAKE_AT_ONCE = 200  # expired claims looked at per tick


class RenditionClaims:
    def __init__(self, db: Database, node: str, lease_seconds: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self.node = node
        self.lease_seconds = lease_seconds
        self._now = clock
        self._lock = threading.Lock()
        self._to_claim: set[str] = set()
        self._to_release: set[str] = set()
        self.taken_over = 0  # claims of other (dead) nodes, or of an earlier life, taken

    def claim(self, instance_id: str) -> None:
        """This node will encode the instance (written on the next tick; never blocks)."""
        with self._lock:
            self._to_claim.add(instance_id)
            self._to_release.discard(instance_id)

    def release(self, instance_id: str) -> None:
        """The instance has its result (or needs none): nobody must take it over."""
        with self._lock:
            self._to_release.add(instance_id)
            self._to_claim.discard(instance_id)

    def recover(self) -> list[str]:
        """At start: the claims this node name held before (it stopped or crashed), which
        nobody else will take over while they are renewed here. Returns them to be queued."""
        with self._db.engine.connect() as connection:
            mine = [row.instance_id for row in connection.execute(
                select(claims.c.instance_id).where(claims.c.node == self.node))]
        self.taken_over += len(mine)
        return mine

    def tick(self) -> list[str]:
        """Write claims and releases, renew this node's leases, and take over expired ones.
        Returns the instances taken over (to be queued here)."""
        with self._lock:
            to_claim, self._to_claim = self._to_claim, set()
            to_release, self._to_release = self._to_release, set()
        now = self._now()
        lease_until = now + self.lease_seconds
        with self._db.engine.begin() as connection:
            if to_release:
                connection.execute(delete(claims).where(claims.c.instance_id.in_(sorted(to_release))))
            # renew first: the rows inserted below get the same lease
            connection.execute(update(claims).where(claims.c.node == self.node).values(lease_until=lease_until))
        rows = [{"instance_id": i, "node": self.node, "lease_until": lease_until} for i in sorted(to_claim)]
        try:  # one statement for the tick's new instances (the usual case: none claimed before)
            if rows:
                with self._db.engine.begin() as connection:
                    connection.execute(insert(claims), rows)
        except IntegrityError:  # some were claimed before (a re-queue, a takeover): one by one
            for row in rows:
                try:
                    with self._db.engine.begin() as connection:
                        connection.execute(insert(claims), [row])
                except IntegrityError:  # make it ours
                    with self._db.engine.begin() as connection:
                        connection.execute(update(claims).where(claims.c.instance_id == row["instance_id"])
                                           .values(node=self.node, lease_until=lease_until))
        return self._take_expired(now, lease_until)

    def _take_expired(self, now: float, lease_until: float) -> list[str]:
        with self._db.engine.connect() as connection:
            expired = [row.instance_id for row in connection.execute(
                select(claims.c.instance_id).where(claims.c.lease_until < now)
                .order_by(claims.c.lease_until).limit(_TAKE_AT_ONCE))]
        taken = []
        for instance_id in expired:
            with self._db.engine.begin() as connection:
                won = connection.execute(
                    update(claims).where(claims.c.instance_id == instance_id, claims.c.lease_until < now)
                    .values(node=self.node, lease_until=lease_until)).rowcount
            if won:
                taken.append(instance_id)
        self.taken_over += len(taken)
        return taken

    def adopt(self, candidates: list[str]) -> list[str]:
        """Of instances without a result, those nobody claims: claimed here (insert-or-fail, so
        one node wins). Returns the ones adopted, to be queued here."""
        if not candidates:
            return []
        with self._db.engine.connect() as connection:
            claimed = set(connection.execute(
                select(claims.c.instance_id).where(claims.c.instance_id.in_(candidates))).scalars())
        adopted = []
        lease_until = self._now() + self.lease_seconds
        for instance_id in candidates:
            if instance_id in claimed:
                continue
            try:
                with self._db.engine.begin() as connection:
                    connection.execute(insert(claims).values(instance_id=instance_id, node=self.node,
                                                             lease_until=lease_until))
            except IntegrityError:
                continue  # another node adopted it
            adopted.append(instance_id)
        self.taken_over += len(adopted)
        return adopted

    def owned(self) -> int:
        """Claims this node holds in the store (for stats)."""
        with self._db.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(claims)
                                          .where(claims.c.node == self.node)).scalar_one())
