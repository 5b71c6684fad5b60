"""Metadata answers stay cached while their study stays as it was (dicomweb/metadata.py), and
are built again after any change the answer depends on: its LastUpdate, a new instance or a
rendition of it on this node, a deletion on this node. Changes to other studies leave them
cached."""

from __future__ import annotations

from typing import Any, cast

from neuronova.dicomweb.front import DicomWebFront
from neuronova.gate import Gate
from neuronova.http import Request
from tests.unit.fakes import FakeHost, FakeStudy


class Host(FakeHost):
    def __init__(self) -> None:
        super().__init__([FakeStudy("1.1", "P1", {}, {"1.1.1": ["1.1.1.1", "1.1.1.2"]}),
                          FakeStudy("2.2", "P2", {}, {"2.2.1": ["2.2.1.1"]})])
        self.built: list[str] = []
        self.last_update: dict[str, str] = {}  # per study UID; default below

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        if uri.startswith("/dicom-web-internal/"):
            self.built.append(uri)
            return b'[{"00080018": {"vr": "UI", "Value": ["1.1.1.1"]}}]'
        return super().rest_get(uri, after_plugins)

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        if uri.startswith("/studies/study-") and uri.count("/") == 2:
            return {"LastUpdate": self.last_update.get(uri.split("study-")[1], "20261202T060000")}
        return super().rest_get_json(uri, after_plugins)


def setup() -> tuple[Host, DicomWebFront]:
    host = Host()
    return host, DicomWebFront(host, cast(Gate, None), annotate_metadata=lambda body: body + b" ")


def metadata(front: DicomWebFront, study: str = "1.1") -> bytes:
    answer = front.handle(Request("GET", f"/dicom-web/studies/{study}/metadata", headers={"host": "pacs"}))
    assert answer.status == 200, answer.body
    return answer.body


def test_an_answer_is_kept_across_changes_to_other_studies() -> None:
    host, front = setup()
    first = metadata(front)
    assert first.endswith(b" ")  # annotated once, before it was cached
    for _ in range(3):
        front.note_change()  # an instance stored in another study: searches are stale
        front.metadata.new_instance("study-2.2")
        front.metadata.new_rendition("2.2")
        assert metadata(front) == first
    assert host.built == ["/dicom-web-internal/studies/1.1/metadata"]
    assert host.metrics["neuronova_dicomweb_metadata_cache_hits_total"] == 3
    assert host.metrics["neuronova_dicomweb_metadata_cache_misses_total"] == 1


def test_a_change_of_the_study_builds_it_again() -> None:
    host, front = setup()
    metadata(front)
    metadata(front, "2.2")
    changes = [
        lambda: front.metadata.new_instance("study-1.1"),  # within the second of LastUpdate
        lambda: front.metadata.new_rendition("1.1"),
        lambda: setattr(host, "last_update", {"1.1": "20261202T060001"}),  # e.g. another node's change
    ]
    for number, change in enumerate(changes, 2):
        change()
        metadata(front)
        metadata(front)  # then cached again
        metadata(front, "2.2")  # the other study's answer stays
        assert host.built.count("/dicom-web-internal/studies/1.1/metadata") == number
    assert host.built.count("/dicom-web-internal/studies/2.2/metadata") == 1
    front.note_change(deleted=True)  # a deletion on this node: which study is not known any more
    metadata(front)
    metadata(front, "2.2")
    assert host.built.count("/dicom-web-internal/studies/1.1/metadata") == 5
    assert host.built.count("/dicom-web-internal/studies/2.2/metadata") == 2
