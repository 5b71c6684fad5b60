"""Several nodes on one PostgreSQL behave as one PACS (issue 10): a real cluster from
``scripts/cluster up`` (PostgreSQL, two NeuroNova nodes, nginx), started once for the module.

Grants, their removal, share revocation and logout made through one node are enforced by the
other node and through the balancer within 1 s (the issue's bound); a study sent by C-STORE to
one node and one sent by STOW-RS to the other give the same QIDO answers everywhere; the audit
trail is one, each event naming its node.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests
from pynetdicom import AE, StoragePresentationContexts

from tests.support.cluster import Cluster, cluster_directory, start_cluster
from tests.support.dicom_factory import Study, make_study
from tests.support.orthanc_server import free_port

pytestmark = pytest.mark.integration

JWT_SECRET = "cluster-secret-0123456789abcdefghijklmnopqrs"
ADMIN_PASSWORD = "cluster admin password"
SCU_AET = "CLUSTERSCU"
PROPAGATION_SECONDS = 1.0  # the issue: "enforced by every node within 1 s"
SESSION = "neuronova_session"


def token(sub: str, role: str = "doctor", ttl: int = 600) -> str:
    now = int(time.time())
    return jwt.encode({"sub": sub, "iat": now, "exp": now + ttl, "realm_access": {"roles": [role]}},
                      JWT_SECRET, algorithm="HS256")


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def eventually(check: Callable[[], bool], within: float = PROPAGATION_SECONDS) -> bool:
    """Whether ``check`` holds by ``within`` seconds from now (polled; bounded)."""
    deadline = time.monotonic() + within
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def stow(base: str, study: Study, auth: tuple[str, str]) -> requests.Response:
    boundary = uuid.uuid4().hex
    parts = b"".join(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + blob + b"\r\n"
                     for blob in study.files())
    body = parts + b"--" + boundary.encode() + b"--\r\n"
    return requests.post(base + "/dicom-web/studies", data=body, auth=auth, timeout=60, headers={
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json"})


def c_store(port: int, study: Study) -> list[int]:
    ae = AE(ae_title=SCU_AET)
    ae.requested_contexts = StoragePresentationContexts
    assoc = ae.associate("127.0.0.1", port, ae_title="NEURONOVA")
    assert assoc.is_established, "C-STORE association refused"
    try:
        return [int(assoc.send_c_store(ds).Status) for ds in study.instances]
    finally:
        assoc.release()


class World:
    def __init__(self, cluster: Cluster, by_cstore: Study, by_stow: Study) -> None:
        self.cluster = cluster
        self.a, self.b = cluster.nodes[0].http, cluster.nodes[1].http
        self.everywhere = [n.http for n in cluster.nodes] + [cluster.balancer]
        self.by_cstore, self.by_stow = by_cstore, by_stow

    @property
    def admin(self) -> tuple[str, str]:
        return self.cluster.admin


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: scripts/install installs it")
    directory = cluster_directory()
    scu_port = free_port()
    cluster = start_cluster(directory, nodes=2, env={
        "NEURONOVA_JWT_SECRET": JWT_SECRET, "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "NEURONOVA_MODALITIES": json.dumps({SCU_AET: [SCU_AET, "127.0.0.1", scu_port]}),
        "NEURONOVA_STABLE_AGE": "2",
    }, overlay={"NeuroNova": {"Htj2k": {"ClaimLeaseSeconds": 2}}})
    try:
        by_cstore = make_study("MR_small.dcm", patient_id="PAT-C1", patient_name="NODE^ALPHA", slices=2,
                               description="sent to node 1 by C-STORE")
        by_stow = make_study("CT_small.dcm", patient_id="PAT-C2", patient_name="NODE^BETA", slices=2,
                             description="sent to node 2 by STOW-RS")
        assert c_store(cluster.nodes[0].dicom, by_cstore) == [0] * len(by_cstore.instances)
        answer = stow(cluster.nodes[1].http, by_stow, cluster.admin)
        assert answer.status_code == 200, answer.text
        yield World(cluster, by_cstore, by_stow)
    finally:
        cluster.stop()
        if cluster.process.returncode == 0:
            shutil.rmtree(directory, ignore_errors=True)


def study_series(base: str, study: str, headers: dict[str, str]) -> int:
    return requests.get(f"{base}/dicom-web/studies/{study}/series", headers=headers, timeout=10).status_code


def test_cluster_json_describes_what_runs(world: World) -> None:
    raw = json.loads((world.cluster.directory / "cluster.json").read_text())
    assert set(raw) == {"balancer", "nodes", "data_dir"}
    assert set(world.cluster.pids()) == {"postgres", "node-1", "node-2", "nginx"}
    assert [set(n) for n in raw["nodes"]] == [{"name", "http", "dicom"}] * 2
    healths = [requests.get(base + "/neuronova/health", timeout=10).json() for base in world.everywhere[:2]]
    assert [h["node"] for h in healths] == ["node-1", "node-2"]
    assert {h["store"] for h in healths} == {"postgresql"}
    system = requests.get(world.b + "/system", auth=world.admin, timeout=10).json()
    assert system["DatabaseBackendPlugin"].endswith("libOrthancPostgreSQLIndex.so")
    assert system["DatabaseServerIdentifier"] == "node-2"


def test_a_grant_and_its_removal_reach_every_node_within_a_second(world: World) -> None:
    study = world.by_cstore.study_uid
    doctor = bearer(token("dr.cluster.grant"))
    assert all(study_series(base, study, doctor) == 403 for base in world.everywhere)
    added = requests.post(f"{world.a}/neuronova/studies/{study}/grants", auth=world.admin, timeout=10,
                          json={"subject": "dr.cluster.grant", "relation": "ordering"})
    assert added.status_code == 201, added.text
    assert eventually(lambda: study_series(world.b, study, doctor) == 200), "the grant did not reach node 2"
    assert all(study_series(base, study, doctor) == 200 for base in world.everywhere)
    removed = requests.delete(f"{world.b}/neuronova/studies/{study}/grants/dr.cluster.grant", auth=world.admin,
                              timeout=10)
    assert removed.status_code in (200, 204), removed.text
    assert eventually(lambda: study_series(world.a, study, doctor) == 403), "the removal did not reach node 1"
    assert all(study_series(base, study, doctor) == 403 for base in world.everywhere)


def test_a_revoked_share_link_stops_working_on_every_node_within_a_second(world: World) -> None:
    study = world.by_stow.study_uid
    created = requests.post(f"{world.a}/neuronova/shares", json={"study": study, "ttl": 600}, auth=world.admin,
                            timeout=10)
    assert created.status_code == 201, created.text
    share = created.json()
    link = bearer(share["token"])
    # Every node has verified and cached the link before it is revoked.
    assert all(study_series(base, study, link) == 200 for base in world.everywhere)
    revoked = requests.delete(f"{world.a}/neuronova/shares/{share['id']}", auth=world.admin, timeout=10)
    assert revoked.status_code in (200, 204), revoked.text
    assert eventually(lambda: study_series(world.b, study, link) == 403), "the revocation did not reach node 2"
    assert all(study_series(base, study, link) == 403 for base in world.everywhere)


def test_logout_on_one_node_ends_the_session_on_every_node_within_a_second(world: World) -> None:
    session = requests.Session()
    answer = session.post(world.a + "/neuronova/login", data={"username": "admin", "password": ADMIN_PASSWORD},
                          timeout=10)
    assert answer.status_code == 200 and SESSION in session.cookies
    cookie = {SESSION: session.cookies[SESSION]}

    def system(base: str) -> int:
        return requests.get(base + "/system", cookies=cookie, timeout=10).status_code

    assert all(system(base) == 200 for base in world.everywhere)  # cached on every node
    assert session.get(world.a + "/neuronova/logout", headers={"Referer": world.a + "/app/explorer.html"},
                       timeout=10).status_code == 200
    assert eventually(lambda: system(world.b) == 403), "the logout did not reach node 2"
    assert all(system(base) == 403 for base in world.everywhere)


def _without_urls(answer: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # RetrieveURL names the host that was asked (each node's own port): all else must match.
    items = [{k: v for k, v in item.items() if k != "00081190"} for item in answer]
    return sorted(items, key=lambda item: json.dumps(item, sort_keys=True))


def test_studies_from_c_store_and_stow_on_two_nodes_give_one_qido_answer_everywhere(world: World) -> None:
    uids = {world.by_cstore.study_uid, world.by_stow.study_uid}

    def studies(base: str) -> list[dict[str, Any]]:
        answer = requests.get(base + "/dicom-web/studies", params={"includefield": "all"}, auth=world.admin,
                              timeout=30)
        assert answer.status_code == 200, answer.text
        return [item for item in answer.json() if item["0020000D"]["Value"][0] in uids]

    # QIDO answers are cached per node for a few seconds (dicomweb/front.py): bounded wait.
    assert eventually(lambda: all(len(studies(base)) == 2 for base in world.everywhere), within=15.0)
    answers = [_without_urls(studies(base)) for base in world.everywhere]
    assert answers[0] == answers[1] == answers[2]
    series = [_without_urls(requests.get(f"{base}/dicom-web/studies/{world.by_stow.study_uid}/series",
                                         auth=world.admin, timeout=30).json()) for base in world.everywhere]
    assert series[0] == series[1] == series[2] and len(series[0]) == 1


def test_the_audit_trail_is_one_and_names_each_event_s_node(world: World) -> None:
    requests.get(f"{world.a}/dicom-web/studies/{world.by_cstore.study_uid}/series", auth=world.admin, timeout=10)
    requests.get(f"{world.b}/dicom-web/studies/{world.by_cstore.study_uid}/series", auth=world.admin, timeout=10)

    def rows(base: str, **query: str) -> list[dict[str, Any]]:
        answer = requests.get(base + "/neuronova/audit", params={"limit": "100000", **query}, auth=world.admin,
                              timeout=30)
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()
        return result

    study = world.by_cstore.study_uid
    assert eventually(lambda: {r["node"] for r in rows(world.b, study=study)} >= {"node-1", "node-2"}, within=5.0)
    from_a, from_b = rows(world.a, study=study), rows(world.b, study=study)
    last = min(from_a[-1]["id"], from_b[-1]["id"])
    assert [r for r in from_a if r["id"] <= last] == [r for r in from_b if r["id"] <= last]  # one trail
    stores = [r for r in from_a if r["route"] == "dicom/c-store"]
    assert stores and {r["node"] for r in stores} == {"node-1"}  # C-STORE went to node 1
    stowed = [r for r in rows(world.cluster.balancer) if r["method"] == "POST" and r["uri"] == "/dicom-web/studies"]
    assert stowed and {r["node"] for r in stowed} == {"node-2"}  # STOW-RS went to node 2
    only_b = rows(world.a, node="node-2")
    assert only_b and {r["node"] for r in only_b} == {"node-2"}


def test_renditions_of_a_node_killed_mid_ingest_are_made_once_by_the_survivor(world: World) -> None:
    """Last in this module: it kills node 1. Instances stored through node 1 whose renditions
    it had not made yet (they wait while an ingest is busy) are taken over by node 2 after the
    claims' lease (2 s here); none is lost, none is encoded twice."""
    import os
    import signal

    study = make_study("CT_small.dcm", patient_id="PAT-C9", patient_name="NODE^KILLED", slices=24,
                       description="renditions interrupted by kill -9")
    for blob in study.files():
        answer = requests.post(world.a + "/instances", data=blob, auth=world.admin, timeout=30)
        assert answer.status_code == 200, answer.text
    os.kill(world.cluster.pids()["node-1"], signal.SIGKILL)  # within the ingest's quiet window
    status: dict[str, Any] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = requests.get(f"{world.b}/neuronova/htj2k/studies/{study.study_uid}", auth=world.admin,
                              timeout=10).json()
        if status.get("counts", {}).get("done") == len(study.instances):
            break
        time.sleep(0.5)
    assert status["counts"] == {"done": len(study.instances)}, status
    stats = requests.get(f"{world.b}/neuronova/htj2k/stats", auth=world.admin, timeout=10).json()
    assert stats["claims_taken_over"] >= 1  # node 2 did what node 1 left
    # one attachment per instance, each decodable: nothing written twice or half
    for instance in requests.get(f"{world.b}/studies/{_orthanc_study(world, study)}/instances",
                                 auth=world.admin, timeout=10).json():
        attachments = requests.get(f"{world.b}/instances/{instance['ID']}/attachments", auth=world.admin,
                                   timeout=10).json()
        assert attachments.count("htj2k") == 1


def _orthanc_study(world: World, study: Study) -> str:
    found = requests.post(world.b + "/tools/lookup", data=study.study_uid, auth=world.admin, timeout=10).json()
    return str(next(item["ID"] for item in found if item["Type"] == "Study"))
