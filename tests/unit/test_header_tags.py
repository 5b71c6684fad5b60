"""The collision check's fast tag reader (gate/header_tags.py): the values pydicom reads, or
None (then Orthanc's parser decides) whenever the file is not plain enough to be sure."""

from __future__ import annotations

import glob
import io
import os
import struct
import warnings

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import ImplicitVRLittleEndian

from neuronova.gate.header_tags import read_tags
from tests.support.dicom_factory import to_bytes

WANTED = ("0020,000d", "0010,0020", "0008,0018", "0020,000e")
_PATIENT_ID = b"\x10\x00\x20\x00"  # tag (0010,0020), little endian


def _expected(ds: Dataset) -> dict[str, str]:
    return {key: str(ds[int(key.replace(",", ""), 16)].value).strip() for key in WANTED}


def _ct(**values: str) -> Dataset:
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for keyword, value in values.items():
        setattr(ds, keyword, value)
    return ds


def test_every_answer_over_pydicoms_test_files_is_what_pydicom_reads() -> None:
    folder = os.path.dirname(get_testdata_file("CT_small.dcm"))
    answered = 0
    for path in sorted(glob.glob(folder + "/**/*", recursive=True)):
        if not os.path.isfile(path):
            continue
        data = open(path, "rb").read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = pydicom.dcmread(io.BytesIO(data))
            except Exception:  # noqa: S112 - not DICOM to pydicom: nothing to compare with
                continue
        found = read_tags(data, WANTED)
        if found is not None:
            answered += 1
            assert found == _expected(ds), path
    assert answered >= 100  # the plain files (most of them) take the fast path


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_implicit.dcm",
                                  "MR_small_RLE.dcm"])
def test_common_layouts_are_read(name: str) -> None:
    data = open(get_testdata_file(name), "rb").read()
    assert read_tags(data, WANTED) == _expected(pydicom.dcmread(io.BytesIO(data)))


def test_implicit_vr_with_a_sequence_is_read() -> None:
    ds = _ct(PatientID="P-1")
    ds.ReferencedImageSequence = [Dataset(), Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    data = to_bytes(ds)
    assert read_tags(data, WANTED) == _expected(ds)


@pytest.mark.parametrize("patient_id", ["P\u00e9", "A\\B", "A~B", "x" * 300])
def test_values_that_a_character_set_or_a_length_could_change_are_left_to_orthanc(patient_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 300 characters are too long for LO: that is the point
        ds = _ct(PatientID=patient_id, SpecificCharacterSet="ISO_IR 100")
    assert read_tags(to_bytes(ds), WANTED) is None


def test_a_duplicate_or_out_of_order_tag_is_left_to_orthanc() -> None:
    data = to_bytes(_ct(PatientID="P1"))
    # Another PatientID after Pixel Data: DCMTK would see the first, a naive reader the last.
    assert read_tags(data + _PATIENT_ID + b"LO" + struct.pack("<H", 2) + b"P2", WANTED) is None


def test_a_truncated_file_is_left_to_orthanc() -> None:
    data = to_bytes(_ct(PatientID="P1"))
    assert read_tags(data, WANTED) is not None
    assert read_tags(data[:-10], WANTED) is None


def test_a_missing_tag_is_left_to_orthanc() -> None:
    ds = _ct()
    del ds.PatientID
    assert read_tags(to_bytes(ds), WANTED) is None


@pytest.mark.parametrize("data", [b"", b"{}", b"\x00" * 128 + b"DICM", b"\x00" * 400])
def test_what_is_not_a_dicom_file_is_left_to_orthanc(data: bytes) -> None:
    assert read_tags(data, WANTED) is None


def test_big_endian_and_deflated_data_sets_are_left_to_orthanc() -> None:
    for name in ("MR_small_bigendian.dcm", "image_dfl.dcm"):
        data = open(get_testdata_file(name), "rb").read()
        assert all(int(k.replace(",", ""), 16) in pydicom.dcmread(io.BytesIO(data)) for k in WANTED)
        assert read_tags(data, WANTED) is None


@pytest.mark.parametrize("vr", [b"UN", b"XX", b"lo"])
def test_another_or_an_unknown_vr_is_left_to_orthanc(vr: bytes) -> None:
    data = bytearray(to_bytes(_ct(PatientID="P1")))
    at = data.index(_PATIENT_ID + b"LO")
    data[at + 4 : at + 6] = vr  # DCMTK may read another length, or the value as another type
    assert read_tags(bytes(data), WANTED) is None


def test_a_file_meta_whose_group_length_disagrees_is_left_to_orthanc() -> None:
    data = bytearray(to_bytes(_ct(PatientID="P1")))
    assert data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"  # (0002,0000) UL, 4 bytes
    length = struct.unpack_from("<I", data, 140)[0]
    struct.pack_into("<I", data, 140, length + 8)
    assert read_tags(bytes(data), WANTED) is None
