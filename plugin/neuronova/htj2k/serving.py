"""WADO-RS frames and instances, answered with the HTJ2K rendition when the client accepts it.

Plugged into the DICOMweb front as its retrieve handler. Frames are cut out of the stored
files by their spans (rendition) or by pydicom's frame reader (original), so nothing heavy
runs under the GIL; every part is labelled with the transfer syntax its bytes really are.
"""

from __future__ import annotations

import io
from typing import Any

from ..caches import Cache
from ..dicomweb.paths import DicomWebPath
from ..dicomweb.urls import public_base
from ..errors import HttpError
from ..host import Host
from ..http import Request, Response
from ..multipart import Part, build
from . import syntaxes
from .negotiation import (
    Available,
    Choice,
    NotAcceptable,
    Representation,
    instance_refusal_status,
    negotiate_frames,
    negotiate_instance,
)
from .pixels import NativeFrames, native_frames
from .service import Htj2kService, StoredRendition

_NOT_NATIVE = NativeFrames(0, 0, 0)  # cached answer "frames of this original need decoding"

MAX_FRAMES_PER_REQUEST = 10000


class Htj2kRetriever:
    def __init__(self, host: Host, service: Htj2kService) -> None:
        self._host = host
        self._service = service
        # Per-instance facts that never change while the instance exists; an instance
        # deleted and stored again is re-read after the TTL (and layouts are keyed by MD5).
        self._syntaxes: Cache[str, str] = Cache(max_entries=100000, ttl=300.0)
        self._native: Cache[tuple[str, str], NativeFrames] = Cache(max_entries=100000, ttl=3600.0)

    def handle(self, request: Request, path: DicomWebPath) -> Response | None:
        if path.action == "frames":
            return self._frames(request, path)
        if path.action == "retrieve":
            return self._instances(request, path.study, path.series, path.instance)
        return None

    # -- frames ---------------------------------------------------------------------------

    def _frames(self, request: Request, path: DicomWebPath) -> Response:
        sop_uid, numbers = path.instance, path.frames
        if not numbers or len(numbers) > MAX_FRAMES_PER_REQUEST or min(numbers) < 1:
            raise HttpError(400, "frame numbers start at 1")
        instance_id = self._host.lookup_instance(sop_uid)
        if instance_id is None:
            raise HttpError(404, "no such instance")
        original_ts = self._transfer_syntax(instance_id)
        available = Available(original_ts, self._service.spans(instance_id) is not None, can_uncompress=True)
        choice = negotiate_frames(request.headers.get("accept"), available, single_part_ok=len(numbers) == 1)
        rendition = self._service.rendition(instance_id) if choice.representation is Representation.HTJ2K else None
        if choice.representation is Representation.HTJ2K and rendition is None:
            # the attachment vanished between the two looks: ask again, now without HTJ2K
            choice = negotiate_frames(request.headers.get("accept"), Available(original_ts, False, True),
                                      single_part_ok=len(numbers) == 1)
        payloads = [self._frame(instance_id, choice, rendition, n) for n in numbers]
        if not choice.multipart:
            return Response(200, payloads[0], choice.part_content_type)
        # Part headers as DICOMweb 1.24 writes them: each frame's own public URL, its length.
        location = public_base(request) + path.resource + "/frames/"
        body, content_type = build([Part(choice.part_content_type, p, _part_headers(p, location + str(n)))
                                    for n, p in zip(numbers, payloads, strict=True)], choice.media_type)
        return Response(200, body, content_type)

    def _frame(self, instance_id: str, choice: Choice, rendition: StoredRendition | None, number: int) -> bytes:
        from .codec import uncompressed_frame
        from .errors import NotEncodable

        if choice.representation is Representation.HTJ2K:
            assert rendition is not None
            if number > len(rendition.frames):
                raise HttpError(404, f"frame {number} does not exist (the instance has {len(rendition.frames)})")
            offset, length = rendition.frames[number - 1]
            return rendition.data[offset:offset + length]
        original, version = self._service.original_with_version(instance_id)
        try:
            if choice.representation is Representation.UNCOMPRESSED:
                layout = self._native.get((instance_id, version))
                if layout is None:
                    layout = native_frames(original) or _NOT_NATIVE
                    self._native.put((instance_id, version), layout)
                if layout is not _NOT_NATIVE:
                    return layout.frame(original, number)
                return uncompressed_frame(original, number)
            return _original_frame(original, number)
        except IndexError as exc:
            raise HttpError(404, str(exc)) from exc
        except NotEncodable as exc:
            raise HttpError(406, f"this frame cannot be served uncompressed: {exc.reason}") from exc

    def _transfer_syntax(self, instance_id: str) -> str:
        cached = self._syntaxes.get(instance_id)
        if cached is None:
            cached = self._host.rest_get(f"/instances/{instance_id}/metadata/TransferSyntax").decode().strip()
            self._syntaxes.put(instance_id, cached)
        return cached

    # -- instances, series, studies -------------------------------------------------------

    def _instance_ids(self, study: str, series: str, instance: str) -> list[str]:
        """Orthanc identifiers of the instances addressed, in series/instance order."""
        if instance:
            found = self._host.lookup_instance(instance)
            return [found] if found else []
        found = self._host.lookup_series(series) if series else self._host.lookup_study(study)
        if found is None:
            return []
        items = self._host.rest_get_json(f"/{'series' if series else 'studies'}/{found}/instances")

        def order(item: dict[str, Any]) -> tuple[str, int, str]:
            number = str(item.get("MainDicomTags", {}).get("InstanceNumber", "0")).strip()
            return (str(item.get("ParentSeries", "")), int(number) if number.isdigit() else 0, str(item["ID"]))

        return [str(item["ID"]) for item in sorted(items, key=order)]

    def _instances(self, request: Request, study: str, series: str, instance: str) -> Response:
        ids = self._instance_ids(study, series, instance)
        if not ids:
            raise HttpError(404, "no such resource")
        accept = request.headers.get("accept")
        parts: list[Part] = []
        for instance_id in ids:
            rendition = self._service.rendition(instance_id)
            original_ts = self._transfer_syntax(instance_id)
            try:
                choice = negotiate_instance(accept, Available(original_ts, rendition is not None, can_uncompress=True))
            except NotAcceptable as exc:
                raise HttpError(instance_refusal_status(accept), exc.message) from exc
            if choice.representation is Representation.HTJ2K:
                assert rendition is not None
                payload = rendition.data
            elif choice.representation is Representation.ORIGINAL:
                payload = self._service.original(instance_id)
            else:
                payload = _uncompressed_instance(self._service.original(instance_id))
            parts.append(Part(choice.part_content_type, payload, _part_headers(payload)))
            if not choice.multipart:
                return Response(200, payload, choice.part_content_type)
        body, content_type = build(parts, "application/dicom")
        return Response(200, body, content_type)


def _part_headers(payload: bytes | bytearray | memoryview, location: str = "") -> dict[str, str]:
    headers = {"Content-Location": location} if location else {}
    headers.update({"Content-Length": str(len(payload)), "MIME-Version": "1.0"})
    return headers


def _original_frame(original: bytes, number: int) -> bytes:
    """Frame ``number`` of an encapsulated original, as stored (its own transfer syntax)."""
    from pydicom import dcmread
    from pydicom.encaps import generate_frames

    ds = dcmread(io.BytesIO(original))
    frames = int(ds.get("NumberOfFrames") or 1)
    if not 1 <= number <= frames:
        raise IndexError(f"frame {number} does not exist (the instance has {frames})")
    for index, frame in enumerate(generate_frames(ds.PixelData, number_of_frames=frames), 1):
        if index == number:
            return bytes(frame)
    raise IndexError(f"frame {number} is missing from the pixel data")


def _uncompressed_instance(original: bytes) -> bytes:
    """The instance decompressed to Explicit VR Little Endian (rare: a client that asked for it)."""
    from pydicom import dcmread
    from pydicom.uid import UID

    ds = dcmread(io.BytesIO(original))
    try:
        if ds.file_meta.TransferSyntaxUID.is_compressed:
            ds.decompress()
        out = io.BytesIO()
        ds.file_meta.TransferSyntaxUID = UID(syntaxes.EXPLICIT_VR_LITTLE_ENDIAN)
        ds.save_as(out, enforce_file_format=True, little_endian=True, implicit_vr=False)
    except Exception as exc:
        raise HttpError(406, f"this instance cannot be served uncompressed: {exc}") from exc
    return out.getvalue()
