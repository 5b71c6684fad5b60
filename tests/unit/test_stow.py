"""STOW-RS answers (neuronova.stow) over a fake Host: what DICOMweb 1.24 answers, measured."""

from __future__ import annotations

import json
from typing import Any

import pytest

from neuronova.dicomweb import stow
from neuronova.errors import HttpError, OrthancCallError
from neuronova.http import Request
from neuronova.multipart import Part, build

from .fakes import RecordingHost

BASE = "https://pacs.example.org/dicom-web"


def blob(study: str, sop: str, series: str = "1.9", sop_class: str = "1.2.840.10008.5.1.4.1.1.2") -> bytes:
    """A "DICOM file" the fake host understands: its short-format tags as JSON."""
    return json.dumps({"0020,000d": study, "0020,000e": series, "0008,0016": sop_class,
                       "0008,0018": sop}).encode()


class StowHost(RecordingHost):
    def __init__(self, fail: dict[str, str] | None = None) -> None:
        super().__init__()
        self.stored: list[bytes] = []
        self.fail = fail or {}  # SOP UID -> Orthanc error name of its failing store

    def parse_dicom(self, dicom: bytes) -> dict[str, Any] | None:
        try:
            tags = json.loads(dicom)
        except ValueError:
            return None
        return tags if isinstance(tags, dict) else None

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        assert uri == "/instances" and not after_plugins
        sop = json.loads(body)["0008,0018"]
        if sop in self.fail:
            raise OrthancCallError(500, self.fail[sop])
        self.stored.append(body)
        return b'{"ID": "x", "Status": "Success"}'


def ref(sop: str, **extra: Any) -> dict[str, Any]:
    item = {"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
            "00081155": {"vr": "UI", "Value": [sop]}}
    if "url" in extra:
        item["00081190"] = {"vr": "UR", "Value": [extra["url"]]}
    if "failure" in extra:
        item["00081197"] = {"vr": "US", "Value": [extra["failure"]]}
    return item


CHARSET = {"vr": "CS", "Value": ["ISO_IR 100"]}


def test_success_lists_each_instance_with_absolute_urls() -> None:
    host = StowHost()
    result = stow.store(host, [blob("1.1", "1.1.1"), blob("1.1", "1.1.2")], "", BASE)
    assert result.status == 200 and len(host.stored) == 2
    assert result.dicom_json() == {
        "00080005": CHARSET,
        "00081190": {"vr": "UR", "Value": [f"{BASE}/studies/1.1"]},
        "00081199": {"vr": "SQ", "Value": [
            ref("1.1.1", url=f"{BASE}/studies/1.1/series/1.9/instances/1.1.1"),
            ref("1.1.2", url=f"{BASE}/studies/1.1/series/1.9/instances/1.1.2")]},
    }


def test_a_part_that_is_not_dicom_makes_400_and_is_not_listed() -> None:
    host = StowHost()
    result = stow.store(host, [blob("1.1", "1.1.1"), b"this is not a DICOM file"], "", BASE)
    assert result.status == 400 and len(host.stored) == 1
    body = result.dicom_json()
    assert "00081198" not in body and len(body["00081199"]["Value"]) == 1
    only_junk = stow.store(host, [b"junk"], "", BASE).dicom_json()
    assert only_junk == {"00080005": CHARSET, "00081199": {"vr": "SQ"}}


def test_missing_uid_fails_with_cannot_understand() -> None:
    partial = json.dumps({"0008,0016": "1.2.840.10008.5.1.4.1.1.2", "0008,0018": "5.5"}).encode()
    result = stow.store(StowHost(), [partial], "", BASE)
    assert result.status == 400
    assert result.dicom_json()["00081198"]["Value"] == [ref("5.5", failure=stow.CANNOT_UNDERSTAND)]


def test_instance_of_another_study_is_refused_409_and_not_stored() -> None:
    host = StowHost()
    result = stow.store(host, [blob("2.2", "2.2.1")], "1.1", BASE)
    assert result.status == 409 and host.stored == []
    assert result.dicom_json() == {
        "00080005": CHARSET,
        "00081198": {"vr": "SQ", "Value": [ref("2.2.1", failure=0x0110)]},
        "00081199": {"vr": "SQ"},
    }
    mixed = stow.store(host, [blob("2.2", "2.2.1"), blob("1.1", "1.1.1")], "1.1", BASE)
    assert mixed.status == 409 and mixed.retrieve_url == f"{BASE}/studies/1.1"
    assert len(mixed.referenced) == 1 and len(mixed.failed) == 1


def test_store_failures_give_202_or_400_and_their_reason() -> None:
    host = StowHost(fail={"1.1.2": "FULL_STORAGE", "1.1.3": "INTERNAL_ERROR"})
    result = stow.store(host, [blob("1.1", "1.1.1"), blob("1.1", "1.1.2"), blob("1.1", "1.1.3")], "", BASE)
    assert result.status == 202
    assert result.failed == [ref("1.1.2", failure=stow.OUT_OF_RESOURCES), ref("1.1.3", failure=0x0110)]
    alone = stow.store(host, [blob("1.1", "1.1.3")], "", BASE)
    assert alone.status == 400 and alone.retrieve_url == f"{BASE}/studies/1.1"  # as 1.24: set before storing


def test_study_in_path() -> None:
    assert stow.study_in_path("/studies") == ""
    assert stow.study_in_path("/studies/1.2.3") == "1.2.3"
    assert stow.study_in_path("/studies/1.2.3/series") is None
    assert stow.study_in_path("/series") is None
    assert stow.study_in_path("/studies/abc") is None


def test_split_checks_the_media_types_before_anything_is_stored() -> None:
    body, content_type = build([Part("application/dicom", b"one"), Part("application/dicom", b"two")],
                               "application/dicom")
    assert stow.split(content_type, body) == [b"one", b"two"]
    for wrong in ("application/dicom", content_type.replace('type="application/dicom"', 'type="application/json"'),
                  "multipart/related; type=application/dicom"):
        with pytest.raises(HttpError) as refused:
            stow.split(wrong, body)
        assert refused.value.status == 415
    mixed, mixed_type = build([Part("application/dicom", b"one"), Part("text/plain", b"two")], "application/dicom")
    with pytest.raises(HttpError) as refused:
        stow.split(mixed_type, mixed)
    assert refused.value.status == 415
    with pytest.raises(HttpError) as broken:
        stow.split(content_type, b"no boundary here")
    assert broken.value.status == 400


def test_answer_is_dicom_json_with_the_status() -> None:
    host = StowHost()
    body, content_type = build([Part("application/dicom", blob("2.2", "2.2.1"))], "application/dicom")
    response = stow.answer(host, Request("POST", "/dicom-web/studies/1.1", headers={"content-type": content_type},
                                         body=body), "1.1", BASE)
    assert response.status == 409 and response.content_type == "application/dicom+json"
    assert json.loads(response.body)["00081198"]["Value"][0]["00081197"]["Value"] == [272]
