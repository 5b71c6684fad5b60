"""The search order across nodes (gate/study_ids.py): a real cluster from ``scripts/cluster up``
(PostgreSQL, two NeuroNova nodes, nginx). A study stored or deleted through one node is in, or
out of, a doctor's pages on the other node as Orthanc's index has it, although the other
node's Orthanc reports neither change to it. (On PostgreSQL Orthanc answers in storage order:
the gate's pages are slices of its complete answer, in ascending Orthanc identifier.)"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from tests.support.cluster import Cluster, cluster_directory, start_cluster
from tests.support.tiny_studies import tiny_instance, upload
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SECRET = "cluster-order-secret-0123456789abcdefghij"
GRANTED = [f"1.2.779.{n}" for n in range(30)]
STORED = GRANTED[:20]  # the last 10 are granted before they arrive


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: scripts/install installs it")
    directory = cluster_directory()
    started = start_cluster(directory, nodes=2, env={"NEURONOVA_JWT_SECRET": SECRET,
                                                     "NEURONOVA_ADMIN_PASSWORD": "cluster order admin"},
                            overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}})
    try:
        first = started.nodes[0].http
        blobs = [tiny_instance(uid, f"PAT-{n % 4}") for n, uid in enumerate(STORED)]
        assert upload(first, blobs, auth=started.admin) == len(STORED)
        for uid in GRANTED:
            answer = requests.post(f"{first}/neuronova/studies/{uid}/grants", auth=started.admin,
                                   json={"subject": "dr.nodes", "relation": "reading"}, timeout=30)
            assert answer.status_code == 201, answer.text
        yield started
    finally:
        started.stop()
        if started.process.returncode == 0:
            shutil.rmtree(directory, ignore_errors=True)


def doctor(base: str, **params: Any) -> list[str]:
    token = jwt.encode({"sub": "dr.nodes", "exp": int(time.time()) + 600, "realm_access": {"roles": ["doctor"]}},
                       SECRET, algorithm="HS256")
    answer = requests.get(base + "/dicom-web/studies", params=params, headers={"Authorization": f"Bearer {token}"},
                          timeout=60)
    assert answer.status_code == 200, answer.text
    return [item["0020000D"]["Value"][0] for item in answer.json()]


def orthanc(base: str, auth: tuple[str, str]) -> list[str]:
    """Orthanc's own answer, kept to the granted studies."""
    answer = requests.get(base + "/dicom-web/studies", auth=auth, timeout=60)
    granted = set(GRANTED)
    return [item["0020000D"]["Value"][0] for item in answer.json() if item["0020000D"]["Value"][0] in granted]


def pages_match(base: str, auth: tuple[str, str]) -> bool:
    """The doctor's pages are slices of the complete answer, which has the studies Orthanc has."""
    complete = doctor(base)
    if sorted(complete) != sorted(orthanc(base, auth)):
        return False
    return all(doctor(base, offset=offset, limit=4) == complete[offset:offset + 4] for offset in (0, 4, 8, 16))


def test_a_study_stored_through_one_node_is_in_the_other_node_s_pages(cluster: Cluster) -> None:
    one, two = cluster.nodes[0].http, cluster.nodes[1].http
    # Grants reach the second node within a poll; its order is cached from then on.
    wait_for(lambda: sorted(doctor(two)) == sorted(STORED), timeout=10, what="the grants on the second node")
    late = GRANTED[25]
    assert upload(one, [tiny_instance(late, "PAT-LATE")], auth=cluster.admin) == 1
    wait_for(lambda: late in doctor(two), timeout=20, what="the study stored through the first node")
    assert pages_match(two, cluster.admin)


def test_a_study_deleted_through_one_node_leaves_the_other_node_s_pages(cluster: Cluster) -> None:
    one, two = cluster.nodes[0].http, cluster.nodes[1].http
    assert pages_match(two, cluster.admin)
    gone = doctor(two)[1]  # early in the order: every later page would shift if it stayed
    found = requests.post(f"{one}/tools/lookup", data=gone, auth=cluster.admin, timeout=30).json()
    study = next(f["ID"] for f in found if f["Type"] == "Study")
    requests.delete(f"{one}/studies/{study}", auth=cluster.admin, timeout=30).raise_for_status()
    wait_for(lambda: gone not in orthanc(two, cluster.admin), timeout=20, what="Orthanc to forget the study")
    wait_for(lambda: pages_match(two, cluster.admin), timeout=20, what="exact pages on the other node")
    assert gone not in doctor(two)
