from neuronova.dicomweb.front import _narrow
from neuronova.gate.policy import Visibility


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
