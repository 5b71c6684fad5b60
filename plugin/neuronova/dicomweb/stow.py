"""STOW-RS (PS3.18 10.5) for the public DICOMweb front, answered as DICOMweb 1.24 answers it.

Why the front stores instances itself instead of forwarding to the DICOMweb plugin: internal
REST calls carry no headers (docs/runtime-facts.md), so the plugin would never see the
``multipart/related`` Content-Type and its boundary. The front therefore splits the body, has
Orthanc parse each part without storing it (``Host.parse_dicom``, the parser the plugin uses),
and stores the parts it accepts through ``POST /instances``.

The answer copies the plugin's (checked against a bare Orthanc 1.13 + DICOMweb 1.24):

- ``SpecificCharacterSet`` (0008,0005) ``ISO_IR 100``; ``ReferencedSOPSequence`` (0008,1199)
  always present, ``{"vr": "SQ"}`` when empty; ``FailedSOPSequence`` (0008,1198) only when
  something failed; a top-level ``RetrieveURL`` (0008,1190) for the study of the first part
  that is stored (or tried), absent when none is.
- A part Orthanc cannot parse is not listed at all but makes the answer 400 (the valid parts
  are still stored and listed). A file lacking one of the four UIDs is listed as failed with
  0xC000 when its SOP UIDs are known.
- When the path names a study (``/studies/{uid}``), an instance of another study is listed as
  failed with 0x0110 and makes the answer 409. Unlike DICOMweb 1.24, which reports it failed
  but keeps it, the front does not store it.
- A store that fails is listed with 0xA700 (storage full) or 0x0110, and the status is
  400 when nothing was stored, 202 when something was.

Deliberate differences: a part whose Content-Type is not ``application/dicom`` refuses the
whole request with 415 before anything is stored (DICOMweb 1.24 means to answer 415 but, in
its streaming reader, silently stops at such a part and answers 200 for the parts before it);
answers are DICOM JSON only (no ``application/dicom+xml``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import multipart
from ..errors import HttpError, OrthancCallError
from ..host import Host
from ..http import Request, Response
from .paths import UID_RE

DICOM_JSON = "application/dicom+json"

# PS3.18 Table 10.5.3-1 / PS3.4 status codes used by DICOMweb 1.24.
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# Tags in Orthanc's "short" JSON (Host.parse_dicom).
_STUDY, _SERIES, _SOP_CLASS, _SOP = "0020,000d", "0020,000e", "0008,0016", "0008,0018"


def study_in_path(rest: str) -> str | None:
    """The study named by a STOW-RS path below the DICOMweb root: "" for ``/studies``, the UID
    for ``/studies/{uid}``, None when the path is no STOW-RS resource."""
    if rest in ("/studies", "/studies/"):
        return ""
    named = rest.removeprefix("/studies/")
    if named != rest and UID_RE.match(named):
        return named
    return None


def split(content_type: str, body: bytes) -> list[bytes]:
    """The DICOM files of a STOW-RS body. Raises HttpError 415 unless the body is
    ``multipart/related; type="application/dicom"`` and every part is ``application/dicom``
    (checked before anything is stored), 400 when it cannot be split."""
    media, params = _content_type(content_type)
    if media != "multipart/related" or params.get("type", "").lower() != "application/dicom" \
            or not params.get("boundary"):
        raise HttpError(415, 'STOW-RS needs Content-Type: multipart/related; type="application/dicom"; boundary=...')
    try:
        parts = multipart.parse(body, content_type)
    except ValueError as exc:
        raise HttpError(400, f"the multipart body could not be parsed: {exc}") from exc
    for number, part in enumerate(parts, start=1):
        if _content_type(part.content_type)[0] != "application/dicom":
            raise HttpError(415, f'part {number} of the STOW-RS request is not "application/dicom"')
    return [bytes(part.body) for part in parts]


@dataclass
class StowResult:
    """What :func:`store` did, as the DICOMweb plugin would report it."""

    retrieve_url: str | None = None
    referenced: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)
    bad_syntax: bool = False
    conflict: bool = False

    @property
    def status(self) -> int:
        if self.bad_syntax:
            return 400
        if self.conflict:
            return 409
        if self.failed:
            return 202 if self.referenced else 400
        return 200

    def dicom_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"00080005": {"vr": "CS", "Value": ["ISO_IR 100"]}}
        if self.retrieve_url is not None:
            body["00081190"] = {"vr": "UR", "Value": [self.retrieve_url]}
        if self.failed:
            body["00081198"] = {"vr": "SQ", "Value": self.failed}
        body["00081199"] = {"vr": "SQ", "Value": self.referenced} if self.referenced else {"vr": "SQ"}
        return body


def store(host: Host, files: Sequence[bytes], expected_study: str, base_url: str) -> StowResult:
    """Store ``files`` (refusing instances of another study when ``expected_study`` is set).
    ``base_url`` is the caller's public DICOMweb root (``public_url.public_base``: no "/" at the end)."""
    result = StowResult()
    for blob in files:
        tags = host.parse_dicom(blob)
        if tags is None:
            result.bad_syntax = True
            continue
        uids = {tag: tags.get(tag) for tag in (_STUDY, _SERIES, _SOP_CLASS, _SOP)}
        if not all(isinstance(v, str) for v in uids.values()):
            result.bad_syntax = True
            if isinstance(uids[_SOP_CLASS], str) and isinstance(uids[_SOP], str):
                result.failed.append(_reference(uids, failure=CANNOT_UNDERSTAND))
            continue
        study = str(uids[_STUDY])
        if expected_study and study != expected_study:
            result.conflict = True
            result.failed.append(_reference(uids, failure=PROCESSING_FAILURE))
            continue
        if result.retrieve_url is None:
            result.retrieve_url = f"{base_url}/studies/{study}"
        try:
            host.rest_post("/instances", blob)
        except OrthancCallError as exc:
            host.log_warning(f"NeuroNova STOW-RS: storing SOP instance {uids[_SOP]} failed: {exc}")
            failure = OUT_OF_RESOURCES if "FULL_STORAGE" in exc.message.upper() else PROCESSING_FAILURE
            result.failed.append(_reference(uids, failure=failure))
            continue
        result.referenced.append(_reference(uids, url=f"{base_url}/studies/{study}/series/{uids[_SERIES]}"
                                                      f"/instances/{uids[_SOP]}"))
    return result


def answer(host: Host, request: Request, expected_study: str, base_url: str) -> Response:
    """The STOW-RS answer to ``request`` (raises HttpError 415/400 for a body it cannot take)."""
    files = split(request.headers.get("content-type", ""), request.body)
    result = store(host, files, expected_study, base_url)
    return Response(result.status, json.dumps(result.dicom_json()).encode(), DICOM_JSON)


def _reference(uids: dict[str, Any], *, failure: int | None = None, url: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "00081150": {"vr": "UI", "Value": [uids[_SOP_CLASS]]},
        "00081155": {"vr": "UI", "Value": [uids[_SOP]]},
    }
    if failure is not None:
        item["00081197"] = {"vr": "US", "Value": [failure]}
    if url is not None:
        item["00081190"] = {"vr": "UR", "Value": [url]}
    return item


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    """Media type (lower case) and parameters (names lower case, quotes removed)."""
    media, *rest = value.split(";")
    params = {}
    for param in rest:
        name, _, raw = param.partition("=")
        params[name.strip().lower()] = raw.strip().strip('"')
    return media.strip().lower(), params
