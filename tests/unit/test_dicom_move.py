"""The C-MOVE SCP's logic (dicom_move.py): resolution, audit, chunked sub-operations."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from neuronova.audit import AuditEvent, AuditWriter
from neuronova.dicom_move import CHUNK, MoveRefused, MoveScp
from neuronova.errors import OrthancCallError
from neuronova.host import Host, MoveRequest

from .fakes import RecordingHost


class MoveHost(RecordingHost):
    """One patient, one study with ``count`` instances in one series; one modality WS1."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.instances = [f"i{n}" for n in range(count)]
        self.sent: list[dict[str, Any]] = []
        self.fail_store = False

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if uri == "/modalities?expand":
            return {"ws1": {"AET": "WS1", "Host": "127.0.0.1", "Port": 104}}
        if uri == "/studies/s1":
            return {"ID": "s1", "MainDicomTags": {"StudyInstanceUID": "1.2.3"}}
        if uri in ("/series/r1/study", "/instances/i0/study"):
            return {"ID": "s1", "MainDicomTags": {"StudyInstanceUID": "1.2.3"}}
        if uri in ("/studies/s1/instances", "/series/r1/instances"):
            return [{"ID": i} for i in self.instances]
        if uri == "/patients/p1/studies":
            return [{"ID": "s1"}]
        raise OrthancCallError(404, uri)

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        payload = json.loads(body)
        if uri == "/tools/find":
            key, value = next(iter(payload["Query"].items()))
            ids = {("PatientID", "PAT"): "p1", ("StudyInstanceUID", "1.2.3"): "s1",
                   ("SeriesInstanceUID", "1.2.3.4"): "r1", ("SOPInstanceUID", "1.2.3.4.0"): "i0"}
            return json.dumps([ids[(key, value)]] if (key, value) in ids else []).encode()
        assert uri == "/modalities/ws1/store"
        if self.fail_store:
            raise OrthancCallError(500, "association refused")
        self.sent.append(payload)
        return b"{}"


class Events:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []

    def record(self, event: AuditEvent) -> None:
        self.events.append(event)


def _scp(count: int = 3) -> tuple[MoveScp, MoveHost, Events]:
    host, events = MoveHost(count), Events()
    return MoveScp(cast(Host, host), cast(AuditWriter, events)), host, events


def _request(level: str = "STUDY", target: str = "WS1", **uids: str) -> MoveRequest:
    return MoveRequest(level=level, patient_id=uids.get("patient", ""), accession="",
                       study_uid=uids.get("study", "1.2.3"), series_uid=uids.get("series", ""),
                       sop_uid=uids.get("sop", ""), target_aet=target, originator_id=7,
                       remote_aet="VIEWER", remote_ip="127.0.0.1", called_aet="NEURONOVA")


def test_a_study_is_sent_in_one_chunk_and_audited_with_who_asked() -> None:
    scp, host, events = _scp(3)
    driver = scp.create(_request())
    assert scp.size(driver) == 3
    for _ in range(3):
        scp.apply(driver)
    assert host.sent == [{"Resources": ["i0", "i1", "i2"], "Synchronous": True, "Timeout": 120,
                          "MoveOriginatorAet": "VIEWER", "MoveOriginatorID": 7}]
    [event] = events.events
    assert (event.user, event.ip, event.study_uid, event.decision) == ("VIEWER", "127.0.0.1", "1.2.3", "allow")
    assert "3 instance(s)" in event.reason and "to AET WS1" in event.reason


def test_each_chunk_is_one_association_and_its_failure_fails_its_sub_operations() -> None:
    scp, host, _ = _scp(CHUNK + 2)
    driver = scp.create(_request())
    for _ in range(CHUNK):
        scp.apply(driver)
    host.fail_store = True
    with pytest.raises(MoveRefused, match="association refused"):
        scp.apply(driver)
    with pytest.raises(MoveRefused):
        scp.apply(driver)  # the same chunk
    assert [len(s["Resources"]) for s in host.sent] == [CHUNK]


@pytest.mark.parametrize(("level", "uids", "expected"), [
    ("PATIENT", {"patient": "PAT"}, 3), ("SERIES", {"series": "1.2.3.4"}, 3), ("IMAGE", {"sop": "1.2.3.4.0"}, 1),
])
def test_every_level_resolves_to_its_instances(level: str, uids: dict[str, str], expected: int) -> None:
    scp, _, events = _scp(3)
    assert scp.size(scp.create(_request(level, **uids))) == expected
    assert events.events[0].study_uid == "1.2.3"


def test_unknown_destination_unknown_level_and_missing_keys_are_refused_and_audited() -> None:
    for request, reason in ((_request(target="NOPE"), "unknown move destination"),
                            (_request("WORKLIST"), "unknown query/retrieve level"),
                            (_request(study=""), "no StudyInstanceUID")):
        scp, host, events = _scp()
        with pytest.raises(MoveRefused, match=reason):
            scp.create(request)
        assert [e.decision for e in events.events] == ["deny"] and host.sent == []


def test_a_request_naming_too_many_uids_is_refused_before_any_search() -> None:
    scp, host, events = _scp()
    too_many = "\\".join(f"1.2.{n}" for n in range(1001))
    with pytest.raises(MoveRefused, match="1001 values of StudyInstanceUID"):
        scp.create(_request(study=too_many))
    assert [e.decision for e in events.events] == ["deny"] and host.sent == []


def test_a_request_beyond_the_instance_bound_is_refused_without_resolving_the_rest(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("neuronova.dicom_move._MAX_INSTANCES", 2)
    scp, host, events = _scp(3)
    searched: list[str] = []
    original = host.rest_post

    def counting(uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        if uri == "/tools/find":
            searched.append(json.loads(body)["Query"]["StudyInstanceUID"])
        return original(uri, body, after_plugins)

    monkeypatch.setattr(host, "rest_post", counting)
    with pytest.raises(MoveRefused, match="3 instances in one C-MOVE"):
        scp.create(_request(study="1.2.3\\1.2.9\\1.2.8"))
    assert searched == ["1.2.3"] and [e.decision for e in events.events] == ["deny"]
