"""DICOM network: modalities rendered from NEURONOVA_MODALITIES, C-STORE audit events."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from neuronova import audit
from neuronova.audit import AuditWriter
from neuronova.dicom_network import DicomNetworkAudit
from neuronova.host import StoredInstance
from neuronova.store import open_database

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts" / "py"


def _load(name: str) -> ModuleType:
    if str(SCRIPTS) not in sys.path:
        sys.path.insert(0, str(SCRIPTS))  # render_config imports dicom_modalities as a sibling
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def render(tmp_path: Path, **env: str) -> dict[str, Any]:
    template = tmp_path / "orthanc.json"
    template.write_text(json.dumps({"DicomAlwaysAllowEcho": True, "DicomModalities": {}}))
    result: dict[str, Any] = _load("render_config").render(str(template), env)
    return result


def test_extended_modalities_refuse_what_they_do_not_name(tmp_path: Path) -> None:
    modality = {"AET": "CT1", "Host": "127.0.0.1", "Port": 104, "AllowStore": True, "AllowEcho": True}
    config = render(tmp_path, NEURONOVA_MODALITIES=json.dumps({"ct1": modality, "old": ["OLD", "::1", 11112]}))
    rendered = config["DicomModalities"]["ct1"]
    assert rendered["AllowStore"] is True and rendered["AllowEcho"] is True
    assert rendered["AllowFind"] is False and rendered["AllowMove"] is False and rendered["AllowGet"] is False
    # the list form gets every permission but C-GET (Orthanc cannot audit C-GET)
    old = config["DicomModalities"]["old"]
    assert (old["AET"], old["Host"], old["Port"]) == ("OLD", "::1", 11112)
    assert old["AllowStore"] and old["AllowFind"] and old["AllowMove"] and old["AllowGet"] is False
    assert config["DicomAlwaysAllowGet"] is False


def test_c_get_only_when_allowed_unaudited(tmp_path: Path) -> None:
    getter = {"ws": {"AET": "WS1", "Host": "127.0.0.1", "Port": 104, "AllowGet": True}}
    with pytest.raises(SystemExit, match="C-GET cannot be audited"):
        render(tmp_path, NEURONOVA_MODALITIES=json.dumps(getter))
    allowed = render(tmp_path, NEURONOVA_MODALITIES=json.dumps({**getter, "old": ["OLD", "::1", 11112]}),
                     NEURONOVA_DICOM_CGET="unaudited")
    assert allowed["DicomModalities"]["ws"]["AllowGet"] is True
    assert allowed["DicomModalities"]["old"] == ["OLD", "::1", 11112]
    with pytest.raises(SystemExit, match="NEURONOVA_DICOM_CGET"):
        render(tmp_path, NEURONOVA_DICOM_CGET="yes")


def test_without_remote_access_dicom_is_for_loopback_modalities_only(tmp_path: Path) -> None:
    config = render(tmp_path)
    assert config["DicomAlwaysAllowEcho"] is False and config["DicomAlwaysAllowStore"] is False
    assert config["DicomCheckModalityHost"] is True
    remote = {"ct1": {"AET": "CT1", "Host": "10.0.0.5", "Port": 104, "AllowStore": True}}
    with pytest.raises(SystemExit, match="remote access is off"):
        render(tmp_path, NEURONOVA_MODALITIES=json.dumps(remote))
    opened = render(tmp_path, NEURONOVA_MODALITIES=json.dumps(remote), NEURONOVA_REMOTE_ACCESS="true")
    assert opened["DicomModalities"]["ct1"]["Host"] == "10.0.0.5"
    assert opened["DicomAlwaysAllowEcho"] is True  # the template's choice when remote access is on


@pytest.mark.parametrize("modality", [
    {"AET": "", "Host": "127.0.0.1", "Port": 104},
    {"AET": "A" * 17, "Host": "127.0.0.1", "Port": 104},
    {"AET": "CT1", "Host": "127.0.0.1", "Port": "104"},
    {"AET": "CT1", "Host": "127.0.0.1", "Port": 104, "AllowStore": "yes"},
    {"AET": "CT1", "Host": "127.0.0.1", "Port": 104, "AllowEverything": True},
    ["CT1", "127.0.0.1"],
    "CT1",
])
def test_malformed_modalities_stop_the_start(tmp_path: Path, modality: Any) -> None:
    with pytest.raises(SystemExit):
        render(tmp_path, NEURONOVA_MODALITIES=json.dumps({"m": modality}))


def test_c_store_is_an_audit_event_and_http_uploads_are_not_counted_twice(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    network = DicomNetworkAudit(writer)
    network.stored(StoredInstance("DICOM_PROTOCOL", "CT1", "127.0.0.1", "NEURONOVA", "1.2.3", "1.2.3.4"))
    network.stored(StoredInstance("REST_API", "", "", "", "1.2.3", "1.2.3.5"))
    writer.flush()
    rows = audit.query(db, study="1.2.3")
    writer.close()
    assert len(rows) == 1
    row = rows[0]
    assert (row["user"], row["ip"], row["method"], row["route"], row["event_type"]) == (
        "CT1", "127.0.0.1", "C-STORE", "dicom/c-store", "110104")
    assert "1.2.3.4" in row["uri"]


def test_c_find_reported_by_lua_is_an_audit_event_and_only_internal_calls_count(tmp_path: Path) -> None:
    from neuronova.dicom_network import C_FIND_ROUTE, DicomNetworkApi
    from neuronova.http import Request
    from neuronova.router import Router

    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    router = Router()
    DicomNetworkApi(DicomNetworkAudit(writer)).register(router)
    body = json.dumps({"query": {"0008,0052": "STUDY", "0020,000d": "1.2.3", "0010,0010": ""},
                       "origin": {"RemoteAet": "CT1", "RemoteIp": "127.0.0.1", "CalledAet": "NEURONOVA"}}).encode()
    assert router.dispatch(Request("POST", C_FIND_ROUTE, body=body)).status == 200
    assert router.dispatch(Request("POST", C_FIND_ROUTE, body=body,
                                   headers={"authorization": "Basic eDp5"})).status == 403
    assert router.dispatch(Request("POST", C_FIND_ROUTE, body=body, ip="10.0.0.1")).status == 403
    assert router.dispatch(Request("POST", C_FIND_ROUTE, body=b"[]")).status == 400
    wildcard = json.dumps({"query": {"0008,0052": "STUDY", "0020,000d": "1.2.*"}, "origin": {}}).encode()
    assert router.dispatch(Request("POST", C_FIND_ROUTE, body=wildcard)).status == 200
    writer.flush()
    rows = audit.query(db)
    writer.close()
    assert len(rows) == 2
    first = rows[0]
    assert (first["user"], first["ip"], first["method"], first["study_uid"], first["event_type"]) == (
        "CT1", "127.0.0.1", "C-FIND", "1.2.3", "110112")
    assert first["uri"] == "dicom://NEURONOVA/STUDY?0010,0010&0020,000d=1.2.3"
    assert rows[1]["study_uid"] == ""  # a wildcard names no study


def test_instances_sent_by_orthanc_are_audit_events(tmp_path: Path) -> None:
    from neuronova.dicom_network import C_STORE_OUT_ROUTE, DicomNetworkApi
    from neuronova.http import Request
    from neuronova.router import Router

    db = open_database(f"sqlite:///{tmp_path}/store.sqlite")
    writer = AuditWriter(db)
    router = Router()
    DicomNetworkApi(DicomNetworkAudit(writer)).register(router)
    body = json.dumps({"study": "1.2.3", "instance": "1.2.3.4",
                       "destination": {"RemoteAet": "WS1", "RemoteIp": "127.0.0.1"}}).encode()
    assert router.dispatch(Request("POST", C_STORE_OUT_ROUTE, body=body)).status == 200
    assert router.dispatch(Request("POST", C_STORE_OUT_ROUTE, body=body, headers={"cookie": "x=y"})).status == 403
    assert router.dispatch(Request("POST", C_STORE_OUT_ROUTE, body=b"[1]")).status == 400
    assert router.dispatch(Request("POST", C_STORE_OUT_ROUTE, body=b"{" * 300000)).status == 413
    writer.flush()
    rows = audit.query(db)
    writer.close()
    assert [(r["user"], r["ip"], r["route"], r["study_uid"], r["uri"]) for r in rows] == [
        ("WS1", "127.0.0.1", "dicom/outgoing", "1.2.3", "dicom://WS1/instances/1.2.3.4")]
