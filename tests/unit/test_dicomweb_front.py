from neuronova.dicomweb import _narrow, accepts_original
from neuronova.gate.policy import Visibility

CT = "1.2.840.10008.1.2.1"


def test_narrow_adds_the_permitted_list_and_intersects_requests() -> None:
    visible = Visibility(False, frozenset({"1.1", "2.2"}))
    narrowed = _narrow({"PatientID": "P1"}, visible)
    assert narrowed is not None
    assert narrowed["StudyInstanceUID"] == "1.1,2.2" and narrowed["PatientID"] == "P1"
    assert narrowed["includefield"] == "0020000D"
    asked = _narrow({"StudyInstanceUID": "2.2\\3.3"}, visible)
    assert asked is not None and asked["StudyInstanceUID"] == "2.2"
    assert _narrow({"StudyInstanceUID": "3.3"}, visible) is None
    assert _narrow({}, Visibility(False)) is None
    assert _narrow({"includefield": "all"}, visible) == {"includefield": "all", "StudyInstanceUID": "1.1,2.2"}


def test_accept_headers_for_stored_files() -> None:
    assert accepts_original("", {CT})
    assert accepts_original("*/*", {CT})
    assert accepts_original('multipart/related; type="application/dicom"', {CT})
    assert accepts_original('multipart/related; type="application/dicom"; transfer-syntax=*', {CT})
    assert accepts_original(f'multipart/related; type="application/dicom"; transfer-syntax={CT}', {CT})
    assert not accepts_original('multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50',
                                {CT})
    assert not accepts_original('multipart/related; type="application/octet-stream"', {CT})
    assert not accepts_original("application/dicom; q=0, image/png", {CT})
