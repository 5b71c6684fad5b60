"""WADO-RS frames and instances, answered with the HTJ2K rendition when the client accepts it.

Plugged into the DICOMweb front as its retrieve handler. HTJ2K frames are cut out of the
stored rendition by their spans, frames of native little-endian originals out of the
original by their layout (a slice each, nothing heavy under the GIL). Everything that needs
decoding or reading encapsulated pixel data is delegated to Orthanc's own decoders
(:mod:`.orthanc_decoding`): no third-party codec reads stored data inside Orthanc's process
(issue 9). Every part is labelled with the transfer syntax its bytes really are.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from ..caches import Cache
from ..dicomweb.paths import DicomWebPath
from ..dicomweb.rules import check_answer_size, frame_list
from ..dicomweb.urls import public_base
from ..errors import HttpError, OrthancCallError
from ..host import Host
from ..http import Request, Response
from ..multipart import Part, build
from . import orthanc_decoding, syntaxes
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
from .rendition_store import RenditionStore, StoredRendition

_NOT_NATIVE = NativeFrames(0, 0, 0)  # cached answer "frames of this original need decoding"


class Htj2kRetriever:
    def __init__(self, host: Host, store: RenditionStore) -> None:
        self._host = host
        self._store = store
        # Per-instance facts that never change while the instance exists; an instance
        # deleted and stored again is re-read after the TTL (and layouts are keyed by MD5).
        self._syntaxes: Cache[str, str] = Cache(max_entries=100000, ttl=300.0)
        self._native: Cache[tuple[str, str], NativeFrames] = Cache(max_entries=100000, ttl=3600.0)
        self._frame_counts: Cache[str, int] = Cache(max_entries=100000, ttl=300.0)

    def handle(self, request: Request, path: DicomWebPath) -> Response | None:
        if path.action == "frames":
            return self._frames(request, path)
        if path.action == "retrieve":
            return self._instances(request, path.study, path.series, path.instance)
        return None

    # -- frames ---------------------------------------------------------------------------

    def _frames(self, request: Request, path: DicomWebPath) -> Response:
        # Distinct numbers only, at most MAX_FRAMES of them (400): "1,1,1,..." is one frame.
        sop_uid, numbers = path.instance, frame_list(path.frames)
        instance_id = self._host.lookup_instance(sop_uid)
        if instance_id is None:
            raise HttpError(404, "no such instance")
        original_ts = self._transfer_syntax(instance_id)
        available = Available(original_ts, self._store.spans(instance_id) is not None, can_uncompress=True)
        choice = _negotiated_frames(request.headers.get("accept"), available, len(numbers) == 1)
        rendition = self._store.rendition(instance_id) if choice.representation is Representation.HTJ2K else None
        if choice.representation is Representation.HTJ2K and rendition is None:
            # the attachment vanished between the two looks: ask again, now without HTJ2K
            choice = negotiate_frames(request.headers.get("accept"), Available(original_ts, False, True),
                                      single_part_ok=len(numbers) == 1)
        payloads: list[bytes | memoryview] = []
        total = 0
        for number in numbers:
            # Bounded while collected, not once built: a long list of large frames is refused
            # (413) as soon as it would pass the limit, before it all sits in memory.
            payloads.append(self._frame(instance_id, path.resource, choice, rendition, number))
            total += len(payloads[-1])
            check_answer_size(total)
        if not choice.multipart:
            return Response(200, bytes(payloads[0]), choice.part_content_type)
        # Part headers as DICOMweb 1.24 writes them: each frame's own public URL, its length.
        location = public_base(request) + path.resource + "/frames/"
        body, content_type = build([Part(choice.part_content_type, p, _part_headers(p, location + str(n)))
                                    for n, p in zip(numbers, payloads, strict=True)], choice.media_type)
        return Response(200, body, content_type)

    def _frame(self, instance_id: str, resource: str, choice: Choice, rendition: StoredRendition | None,
               number: int) -> bytes | memoryview:
        # Frames are views into the cached file: the answer is copied once, when it is joined
        # (a slice of a 512x512x16 frame, then the join, copied it twice under the GIL).
        if choice.representation is Representation.HTJ2K:
            assert rendition is not None
            if number > len(rendition.frames):
                raise HttpError(404, f"frame {number} does not exist (the instance has {len(rendition.frames)})")
            offset, length = rendition.frames[number - 1]
            return memoryview(rendition.data)[offset:offset + length]
        if choice.representation is Representation.UNCOMPRESSED:
            original, version = self._store.original_with_version(instance_id)
            layout = self._native.get((instance_id, version))
            if layout is None:
                # header parsing only (no pixel decoding): native little-endian frames are slices
                layout = native_frames(original) or _NOT_NATIVE
                self._native.put((instance_id, version), layout)
            if layout is not _NOT_NATIVE:
                return _native_frame(original, layout, number)
            self._check_frame_number(instance_id, number)
            return self._decoded_frame(instance_id, resource, number, version)
        self._check_frame_number(instance_id, number)
        return orthanc_decoding.original_frame(self._host, instance_id, number)

    def _decoded_frame(self, instance_id: str, resource: str, number: int, version: str) -> bytes | memoryview:
        """Frame ``number`` decoded by Orthanc. Orthanc transcodes the whole instance to Explicit
        VR Little Endian once (DCMTK, GDCM for JPEG 2000; Orthanc caches it as well) and frames
        are sliced from that file: the very bytes DICOMweb 1.24 answers (measured), but a frame
        list costs one transcoding instead of one per frame. Frames that are not whole bytes
        (Bits Allocated 1), or an instance Orthanc cannot transcode whole, go through the
        DICOMweb plugin's frame route, one frame per call (its refusal then names the frame)."""
        key = ("explicit-le", instance_id)
        try:
            data = self._store.files.get(key, version)
            if data is None:
                data = orthanc_decoding.uncompressed_instance(self._host, instance_id)
                self._store.files.put(key, data, version=version)
        except HttpError:
            return orthanc_decoding.uncompressed_frame(self._host, resource, number)
        layout = self._native.get((instance_id + "|explicit-le", version))
        if layout is None:
            layout = native_frames(data) or _NOT_NATIVE
            self._native.put((instance_id + "|explicit-le", version), layout)
        if layout is _NOT_NATIVE or number > layout.count:
            return orthanc_decoding.uncompressed_frame(self._host, resource, number)
        return _native_frame(data, layout, number)

    def _check_frame_number(self, instance_id: str, number: int) -> None:
        """404 for a frame beyond Number of Frames (as Orthanc indexed it), before Orthanc's
        decoders are asked (their refusal would read as "cannot be decoded")."""
        count = self._frame_counts.get(instance_id)
        if count is None:
            tags = self._host.rest_get_json(f"/instances/{instance_id}").get("MainDicomTags", {})
            raw = str(tags.get("NumberOfFrames", "") or "1").strip()
            count = int(raw) if raw.isdigit() and int(raw) > 0 else 1
            self._frame_counts.put(instance_id, count)
        if number > count:
            raise HttpError(404, f"frame {number} does not exist (the instance has {count})")

    def _transfer_syntax(self, instance_id: str) -> str:
        cached = self._syntaxes.get(instance_id)
        if cached is None:
            try:
                cached = self._host.rest_get(f"/instances/{instance_id}/metadata/TransferSyntax").decode().strip()
            except OrthancCallError as exc:
                if exc.status != 404:
                    raise
                # No file meta (a data set sent without the Part 10 header, as older
                # modalities do): Orthanc records no syntax; such a data set is Implicit VR
                # Little Endian (PS3.5 10.1, the default transfer syntax).
                cached = syntaxes.IMPLICIT_VR_LITTLE_ENDIAN
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
            rendition = self._store.rendition(instance_id)
            original_ts = self._transfer_syntax(instance_id)
            try:
                choice = negotiate_instance(accept, Available(original_ts, rendition is not None, can_uncompress=True))
            except NotAcceptable as exc:
                raise HttpError(instance_refusal_status(accept), exc.message) from exc
            if choice.representation is Representation.HTJ2K:
                assert rendition is not None
                payload = rendition.data
            elif choice.representation is Representation.ORIGINAL:
                payload = self._store.original(instance_id)
            else:
                payload = orthanc_decoding.uncompressed_instance(self._host, instance_id)
            parts.append(Part(choice.part_content_type, payload, _part_headers(payload)))
            if not choice.multipart:
                return Response(200, payload, choice.part_content_type)
        body, content_type = build(parts, "application/dicom")
        return Response(200, body, content_type)


@lru_cache(maxsize=256)
def _negotiated_frames(accept: str | None, available: Available, single_part_ok: bool) -> Choice:
    """:func:`negotiate_frames`, remembered: viewers send the same few ``Accept`` values for
    every frame, and reading one is 4% of the GIL's time serving frames (refusals, raised,
    are not remembered)."""
    return negotiate_frames(accept, available, single_part_ok=single_part_ok)


def _native_frame(data: bytes, layout: NativeFrames, number: int) -> memoryview:
    """Frame ``number`` of a native original as a view (``NativeFrames`` says where it is)."""
    if not 1 <= number <= layout.count:
        raise HttpError(404, f"frame {number} does not exist (the instance has {layout.count})")
    offset = layout.start + (number - 1) * layout.size
    return memoryview(data)[offset:offset + layout.size]


def _part_headers(payload: bytes | bytearray | memoryview, location: str = "") -> dict[str, str]:
    headers = {"Content-Location": location} if location else {}
    headers.update({"Content-Length": str(len(payload)), "MIME-Version": "1.0"})
    return headers
