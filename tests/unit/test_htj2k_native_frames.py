"""The cached native frame layout serves the same bytes as the general frame reader."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from neuronova.htj2k.pixels import native_frames, uncompressed_frame
from tests.support.corpus import corpus_files, transfer_syntax

NATIVE_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}


FILES = corpus_files(lambda ds: transfer_syntax(ds) in NATIVE_LE and "Rows" in ds)


def test_enough_native_files() -> None:
    assert len(FILES) >= 20


@pytest.mark.parametrize("path", FILES, ids=[Path(p).name for p in FILES])
def test_layout_slices_equal_the_general_reader(path: str) -> None:
    data = Path(path).read_bytes()
    layout = native_frames(data)
    if layout is None:
        return  # e.g. 1-bit frames that are not whole bytes, or no Pixel Data: the general reader serves them
    for number in sorted({1, layout.count}):
        assert layout.frame(data, number) == uncompressed_frame(data, number)
    with pytest.raises(IndexError):
        layout.frame(data, layout.count + 1)


def test_compressed_originals_have_no_native_layout() -> None:
    data = Path(pydicom.data.get_testdata_file("JPEG2000.dcm")).read_bytes()
    assert native_frames(data) is None
