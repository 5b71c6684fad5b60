"""Renditions done once across nodes (htj2k/claims.py), on one shared store."""

from __future__ import annotations

from pathlib import Path

from neuronova.htj2k.claims import RenditionClaims
from neuronova.store import open_database


def test_a_dead_nodes_claims_are_taken_over_once_after_the_lease(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    now = [1000.0]
    a = RenditionClaims(db, "node-a", 10.0, clock=lambda: now[0])
    b = RenditionClaims(db, "node-b", 10.0, clock=lambda: now[0])
    c = RenditionClaims(db, "node-c", 10.0, clock=lambda: now[0])
    for instance in ("i1", "i2", "i3"):
        a.claim(instance)
    assert a.tick() == [] and a.owned() == 3
    a.release("i3")  # its result is in: nobody takes it over
    now[0] += 9.0
    assert a.tick() == [] and b.tick() == []  # renewed by a living node: not taken
    now[0] += 9.0
    assert b.tick() == []  # renewed 9 s ago
    now[0] += 11.0  # node-a died: its leases ran out
    taken = b.tick()
    assert sorted(taken) == ["i1", "i2"] and b.taken_over == 2
    assert c.tick() == [] and b.tick() == []  # exactly one node wins, once
    assert b.owned() == 2 and a.owned() == 0


def test_a_restarted_node_takes_back_its_own_claims(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    before = RenditionClaims(db, "solo", 30.0)
    before.claim("i1")
    before.tick()
    after = RenditionClaims(db, "solo", 30.0)  # same node name, new life
    assert after.recover() == ["i1"]
    after.release("i1")
    after.tick()
    assert after.owned() == 0
