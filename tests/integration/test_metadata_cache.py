"""Study metadata through a real Orthanc with the gate: an answer stays cached while instances
arrive in other studies, and follows its own study's changes at once (dicomweb/metadata.py).
Orthanc's own metrics count the answers served from the cache and those built."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support.dicom_factory import Study, make_study
from tests.support.orthanc_server import OrthancServer, start_orthanc

ENV = {"NEURONOVA_JWT_SECRET": "metadata-cache-secret-0123456789abcdef", "NEURONOVA_ADMIN_PASSWORD": "meta-admin"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[OrthancServer]:
    # HTJ2K off: renditions appearing meanwhile would change the answers too (test_htj2k.py)
    orthanc = start_orthanc(tmp_path, env=ENV, overlay={"NeuroNova": {"Htj2k": {"Enabled": False}}})
    try:
        yield orthanc
    finally:
        orthanc.stop()


def store(server: OrthancServer, study: Study, files: list[bytes] | None = None) -> None:
    for blob in files if files is not None else study.files():
        requests.post(server.base + "/instances", data=blob, auth=server.admin, timeout=30).raise_for_status()


def metadata(server: OrthancServer, study: Study) -> list[dict[str, object]]:
    answer = requests.get(f"{server.base}/dicom-web/studies/{study.study_uid}/metadata", auth=server.admin, timeout=30)
    answer.raise_for_status()
    return list(answer.json())


def cache_counts(server: OrthancServer) -> tuple[float, float]:
    text = requests.get(server.base + "/tools/metrics-prometheus", auth=server.admin, timeout=10).text
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("neuronova_")}
    return (values.get("neuronova_dicomweb_metadata_cache_hits_total", 0.0),
            values.get("neuronova_dicomweb_metadata_cache_misses_total", 0.0))


def sop_uids(items: list[dict[str, object]]) -> set[str]:
    return {str(item["00080018"]["Value"][0]) for item in items}  # type: ignore[index]


def test_metadata_stays_cached_while_other_studies_arrive(server: OrthancServer) -> None:
    viewed = make_study("CT_small.dcm", patient_id="MC-1", patient_name="META^VIEWED", slices=3)
    store(server, viewed)
    first = metadata(server, viewed)
    assert cache_counts(server) == (0, 1)
    for n in range(3):  # an ingest elsewhere: instance after instance, in the same seconds
        store(server, make_study("CT_small.dcm", patient_id=f"MC-{n + 2}", patient_name="META^OTHER", slices=2))
        assert metadata(server, viewed) == first
    assert cache_counts(server) == (3, 1)


def test_metadata_follows_its_own_study_at_once(server: OrthancServer) -> None:
    study = make_study("CT_small.dcm", patient_id="MC-9", patient_name="META^CHANGED", slices=4)
    files = study.files()
    store(server, study, files[:3])
    assert sop_uids(metadata(server, study)) == {str(ds.SOPInstanceUID) for ds in study.instances[:3]}
    store(server, study, files[3:])  # within the same second of LastUpdate, most likely
    assert sop_uids(metadata(server, study)) == {str(ds.SOPInstanceUID) for ds in study.instances}
    gone = requests.post(server.base + "/tools/lookup", data=str(study.instances[0].SOPInstanceUID),
                         auth=server.admin, timeout=10).json()[0]["ID"]
    requests.delete(f"{server.base}/instances/{gone}", auth=server.admin, timeout=10).raise_for_status()
    assert sop_uids(metadata(server, study)) == {str(ds.SOPInstanceUID) for ds in study.instances[1:]}
    assert cache_counts(server) == (0, 3)
    metadata(server, study)
    assert cache_counts(server) == (1, 3)
