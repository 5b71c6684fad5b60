"""The DICOM result objects of an AI job: a Segmentation (``seg.py``) and a TID 1500
Measurement Report (``sr.py``), built from normalized copies of the source headers
(``headers.py``), as Part 10 files ready to store.

Pure: no ``orthanc`` import, no I/O. :func:`build_results` is what the runner calls; it
fails only with :class:`ResultsError`, whose message names the source attribute and value
that made highdicom (or pydicom, writing the file) refuse, when one did.
"""

from __future__ import annotations

import io
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset

from .codes import SEG_SERIES_NUMBER, SR_SERIES_NUMBER
from .headers import RULES, Change, Rule, invalid_attributes, normalized_copy
from .inputs import AiResult
from .seg import build_segmentation
from .sr import build_report


class ResultsError(ValueError):
    """The job's answer cannot be stored as DICOM (the job fails: a retry would fail alike)."""


@dataclass(frozen=True)
class ResultObjects:
    segmentation: Dataset | None
    report: Dataset
    files: tuple[bytes, ...] = ()  # Part 10 bytes of datasets(), in that order
    changes: tuple[Change, ...] = ()  # source attributes the results carry differently

    def datasets(self) -> list[Dataset]:
        return [d for d in (self.segmentation, self.report) if d is not None]

    def part10(self) -> list[bytes]:
        return list(self.files) if self.files else [to_part10(d) for d in self.datasets()]


def to_part10(ds: Dataset) -> bytes:
    """The DICOM Part 10 file (preamble, DICM, file meta) of ``ds``."""
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _distinct(changes: Sequence[Change]) -> tuple[Change, ...]:
    return tuple(dict.fromkeys(changes))


def describe_failure(exc: Exception, copies: Sequence[Dataset]) -> str:
    """What to tell the job's owner: the offending attribute and value when one is found."""
    reason = f"{type(exc).__name__}: {exc}"
    found = invalid_attributes(copies)
    if not found:
        return reason
    keyword, value, uid = found[0]
    tag = Change(keyword, value, None).tag
    return f"source attribute {keyword} {tag} = {value!r} (instance {uid}) is not valid DICOM; highdicom: {reason}"


def build_results(
    sources: Sequence[Dataset],
    result: AiResult,
    *,
    segmented: Collection[str] | None = None,
    rules: Mapping[str, Rule] = RULES,
    seg_series_number: int = SEG_SERIES_NUMBER,
    sr_series_number: int = SR_SERIES_NUMBER,
) -> ResultObjects:
    """The SEG (when there are masks) and the SR referencing it, with their files.

    ``segmented`` (SOP Instance UIDs; default: every source) are the images the SEG covers:
    the one instance a seed-contract mask belongs to. The sources are never altered."""
    copies: list[Dataset] = []
    changes: list[Change] = []
    for ds in sources:
        copy, changed = normalized_copy(ds, rules)
        copies.append(copy)
        changes += changed
    covered = copies if segmented is None else [c for c in copies if str(c.SOPInstanceUID) in segmented]
    if segmented is not None and len(covered) != len(set(segmented)):
        raise ResultsError("the mask belongs to an instance that is not in the analysed series")
    try:
        seg = build_segmentation(covered, result, series_number=seg_series_number)
        sr = build_report(copies, result, segmentation=seg, segmented=covered, series_number=sr_series_number)
        files = tuple(to_part10(d) for d in (seg, sr) if d is not None)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise ResultsError(describe_failure(exc, copies)) from exc
    return ResultObjects(seg, sr, files, _distinct(changes))
