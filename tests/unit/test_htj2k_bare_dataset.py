"""A data set stored without the Part 10 header (as older modalities send it) gets a rendition."""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from neuronova.htj2k.codec import encode_rendition
from neuronova.htj2k.errors import NotEncodable
from neuronova.htj2k.pixels import read_dataset


def bare(name: str, *, implicit: bool = True) -> bytes:
    """The data set alone: no preamble, no DICM, no file meta."""
    ds = pydicom.dcmread(get_testdata_file(name))
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, implicit
    write_dataset(fp, ds)
    return fp.getvalue()


@pytest.mark.parametrize("implicit", [True, False])
def test_bare_data_set_is_read_with_the_syntax_it_is_written_in(implicit: bool) -> None:
    data = bare("CT_small.dcm", implicit=implicit)
    assert data[128:132] != b"DICM"
    ds = read_dataset(data)
    expected = "1.2.840.10008.1.2" if implicit else "1.2.840.10008.1.2.1"
    assert ds.file_meta.TransferSyntaxUID == expected
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID


def test_bare_data_set_gets_a_lossless_rendition() -> None:
    rendition = encode_rendition(bare("CT_small.dcm"))
    original = pydicom.dcmread(get_testdata_file("CT_small.dcm")).pixel_array
    assert np.array_equal(imagecodecs.htj2k_decode(bytes(rendition.frame(1))), original)
    written = pydicom.dcmread(io.BytesIO(rendition.data))  # a proper Part 10 file
    assert written.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.202"


def test_a_corpus_file_without_file_meta_gets_a_lossless_rendition() -> None:
    path = get_testdata_file("OT-PAL-8-face.dcm")  # pydicom-data: a bare Implicit VR LE data set
    data = open(path, "rb").read()
    assert data[128:132] != b"DICM"
    rendition = encode_rendition(data)
    source = read_dataset(data)
    assert np.array_equal(imagecodecs.htj2k_decode(bytes(rendition.frame(1))), source.pixel_array)
    assert rendition.photometric_interpretation == "PALETTE COLOR"


def test_bytes_that_are_no_data_set_are_not_encodable() -> None:
    with pytest.raises(NotEncodable):
        read_dataset(b"\x00" * 300)
    with pytest.raises(NotEncodable):
        encode_rendition(b"hello world, not DICOM at all" * 10)
