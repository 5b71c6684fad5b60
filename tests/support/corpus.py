"""pydicom's and pydicom-data's test files, selected by their headers."""

from __future__ import annotations

from collections.abc import Callable

import pydicom
from pydicom.data import get_testdata_files
from pydicom.dataset import Dataset


def corpus_files(accept: Callable[[Dataset], bool]) -> list[str]:
    """Paths of the installed test files whose header (read without pixels) ``accept`` takes."""
    found = []
    for path in sorted(set(get_testdata_files("*.dcm"))):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: S112 - not every test file is valid DICOM
            continue
        if accept(ds):
            found.append(path)
    return found


def transfer_syntax(ds: Dataset) -> str:
    return str(ds.file_meta.get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
