"""Pixel work delegated to Orthanc: answers checked against their label, refusals explained."""

from __future__ import annotations

import io
from typing import Any

import pydicom
import pytest
from pydicom.data import get_testdata_file

from neuronova.errors import HttpError, OrthancCallError
from neuronova.htj2k import orthanc_decoding
from neuronova.multipart import Part, build

from .fakes import RecordingHost

EXPLICIT_LE = "1.2.840.10008.1.2.1"
RESOURCE = "/studies/1.2/series/1.2.3/instances/1.2.3.4"


class CannedHost(RecordingHost):
    """Answers GETs from a table (uri -> bytes or an exception); records what was asked."""

    def __init__(self, answers: dict[str, bytes | Exception]) -> None:
        super().__init__()
        self.answers = answers
        self.asked: list[tuple[str, bool]] = []

    def rest_get(self, uri: str, after_plugins: bool = False) -> bytes:
        self.asked.append((uri, after_plugins))
        answer = self.answers[uri]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def rest_get_json(self, uri: str, after_plugins: bool = False) -> Any:
        raise NotImplementedError

    def rest_post(self, uri: str, body: bytes, after_plugins: bool = False) -> bytes:
        raise NotImplementedError

    def lookup_study(self, study_uid: str) -> str | None:
        raise NotImplementedError

    def lookup_series(self, series_uid: str) -> str | None:
        raise NotImplementedError

    def lookup_instance(self, sop_uid: str) -> str | None:
        raise NotImplementedError


def dicomweb_answer(*bodies: bytes, content_type: str = f"application/octet-stream; transfer-syntax={EXPLICIT_LE}"
                    ) -> bytes:
    body, _ = build([Part(content_type, b) for b in bodies], "application/octet-stream")
    return body


def test_uncompressed_frame_is_the_single_part_of_the_dicomweb_plugin() -> None:
    uri = f"/dicom-web-internal{RESOURCE}/frames/3"
    host = CannedHost({uri: dicomweb_answer(b"\x01\x02\x03\x04")})
    assert orthanc_decoding.uncompressed_frame(host, RESOURCE, 3) == b"\x01\x02\x03\x04"
    assert host.asked == [(uri, True)]  # the DICOMweb plugin's route: after plugins


def test_dicomweb_spelling_transfer_syntax_is_accepted() -> None:
    uri = f"/dicom-web-internal{RESOURCE}/frames/1"
    label = f"application/octet-stream; transferSyntax={EXPLICIT_LE}"
    host = CannedHost({uri: dicomweb_answer(b"ab", content_type=label)})
    assert orthanc_decoding.uncompressed_frame(host, RESOURCE, 1) == b"ab"


def test_a_frame_labelled_otherwise_is_refused_not_mislabelled() -> None:
    uri = f"/dicom-web-internal{RESOURCE}/frames/1"
    label = "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"
    host = CannedHost({uri: dicomweb_answer(b"\xff\xd8", content_type=label)})
    with pytest.raises(HttpError) as refused:
        orthanc_decoding.uncompressed_frame(host, RESOURCE, 1)
    assert refused.value.status == 406 and "1.2.840.10008.1.2.4.50" in refused.value.message


@pytest.mark.parametrize("body", [b"", b"not multipart", dicomweb_answer(b"a", b"b")])
def test_unexpected_answers_are_a_gateway_error(body: bytes) -> None:
    host = CannedHost({f"/dicom-web-internal{RESOURCE}/frames/1": body})
    with pytest.raises(HttpError) as refused:
        orthanc_decoding.uncompressed_frame(host, RESOURCE, 1)
    assert refused.value.status == 502


def test_a_decoder_failure_costs_the_request_a_406_with_the_reason() -> None:
    host = CannedHost({f"/dicom-web-internal{RESOURCE}/frames/1": OrthancCallError(500, "NOT_IMPLEMENTED")})
    with pytest.raises(HttpError) as refused:
        orthanc_decoding.uncompressed_frame(host, RESOURCE, 1)
    assert refused.value.status == 406 and "NOT_IMPLEMENTED" in refused.value.message


def test_original_frame_is_orthancs_raw_frame_zero_based() -> None:
    host = CannedHost({"/instances/abc/frames/4/raw": b"codestream"})
    assert orthanc_decoding.original_frame(host, "abc", 5) == b"codestream"
    failing = CannedHost({"/instances/abc/frames/0/raw": OrthancCallError(500, "BAD_FILE_FORMAT")})
    with pytest.raises(HttpError) as refused:
        orthanc_decoding.original_frame(failing, "abc", 1)
    assert refused.value.status == 406


def part10(name: str, transfer_syntax: str | None = None) -> bytes:
    ds = pydicom.dcmread(get_testdata_file(name))
    if transfer_syntax is not None:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_uncompressed_instance_is_orthancs_transcoded_file() -> None:
    uri = f"/instances/abc/file?transcode={EXPLICIT_LE}"
    data = part10("CT_small.dcm")
    assert orthanc_decoding.uncompressed_instance(CannedHost({uri: data}), "abc") == data
    with pytest.raises(HttpError) as refused:  # Orthanc kept another syntax: never labelled Explicit LE
        orthanc_decoding.uncompressed_instance(CannedHost({uri: part10("JPEG2000.dcm")}), "abc")
    assert refused.value.status == 406
    with pytest.raises(HttpError) as failed:
        orthanc_decoding.uncompressed_instance(CannedHost({uri: OrthancCallError(500, "CANNOT_TRANSCODE")}), "abc")
    assert failed.value.status == 406 and "CANNOT_TRANSCODE" in failed.value.message


def test_part10_transfer_syntax_reads_the_meta_only() -> None:
    assert orthanc_decoding.part10_transfer_syntax(part10("CT_small.dcm")) == EXPLICIT_LE
    assert orthanc_decoding.part10_transfer_syntax(part10("JPEG2000.dcm")) == "1.2.840.10008.1.2.4.91"
    assert orthanc_decoding.part10_transfer_syntax(b"") == ""
    assert orthanc_decoding.part10_transfer_syntax(b"\x00" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff") == ""
