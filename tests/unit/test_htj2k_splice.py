"""The spliced fast path gives the same rendition as the general (pydicom) path."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from neuronova.htj2k import codec, splice
from neuronova.htj2k.codec import encode_rendition
from neuronova.htj2k.encoder import encode_frame
from neuronova.htj2k.errors import NotEncodable
from tests.support.corpus import corpus_files, transfer_syntax

EXPLICIT_LE = "1.2.840.10008.1.2.1"


FILES = corpus_files(lambda ds: transfer_syntax(ds) == EXPLICIT_LE and int(ds.get("SamplesPerPixel", 1)) == 1
                   and int(ds.get("BitsAllocated", 0)) in (8, 16))


def test_there_are_enough_native_files_to_compare() -> None:
    assert len(FILES) >= 8


@pytest.mark.parametrize("path", FILES, ids=[Path(p).name for p in FILES])
def test_fast_path_equals_general_path(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(path).read_bytes()
    spliced = splice.splice_rendition(data, encode_frame)
    try:
        fast = encode_rendition(data)
    except NotEncodable:
        assert spliced is None
        return
    monkeypatch.setattr(codec, "splice_rendition", lambda *_: None)
    general = encode_rendition(data)
    if spliced is None:
        return  # the fast path declined (e.g. unused high bits): the general path was used
    assert [bytes(fast.frame(n)) for n in range(1, fast.number_of_frames + 1)] == [
        bytes(general.frame(n)) for n in range(1, general.number_of_frames + 1)]
    a, b = pydicom.dcmread(io.BytesIO(fast.data)), pydicom.dcmread(io.BytesIO(general.data))
    assert a.file_meta.TransferSyntaxUID == b.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.202"
    assert a.file_meta.MediaStorageSOPInstanceUID == b.file_meta.MediaStorageSOPInstanceUID
    for ds in (a, b):
        del ds.PixelData
    assert a == b
    assert (a.pixel_array if "PixelData" in a else None) is None
    original = pydicom.dcmread(path)
    decoded = pydicom.dcmread(io.BytesIO(fast.data))
    assert (decoded.pixel_array == original.pixel_array).all()


def test_fast_path_is_taken_for_a_plain_ct() -> None:
    data = Path(pydicom.data.get_testdata_file("CT_small.dcm")).read_bytes()
    assert splice.splice_rendition(data, encode_frame) is not None


def test_fast_path_declines_unused_high_bits() -> None:
    ds = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    ds.BitsStored = 8  # the stored 16-bit values exceed 8 bits: pydicom would mask them
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    assert splice.splice_rendition(buffer.getvalue(), encode_frame) is None
