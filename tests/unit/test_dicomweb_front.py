from neuronova.dicomweb.front import _narrow
from neuronova.gate.policy import Visibility


def test_narrow_takes_out_the_study_list_and_intersects_requests() -> None:
    visible = Visibility(False, frozenset({"1.1", "2.2"}))
    found = _narrow({"PatientID": "P1"}, visible)
    assert found is not None
    narrowed, permitted = found
    assert permitted == {"1.1", "2.2"} and narrowed == {"PatientID": "P1", "includefield": "0020000D"}
    asked = _narrow({"StudyInstanceUID": "2.2\\3.3"}, visible)
    assert asked is not None and asked[1] == {"2.2"} and "StudyInstanceUID" not in asked[0]
    assert _narrow({"StudyInstanceUID": "3.3"}, visible) is None
    assert _narrow({}, Visibility(False)) is None
    assert _narrow({"includefield": "all"}, visible) == ({"includefield": "all"}, visible.studies)
