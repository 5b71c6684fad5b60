"""The public DICOMweb front at /dicom-web/.

Orthanc's DICOMweb plugin is mounted at an internal root that the gate closes to callers
(DESIGN.md: on DICOMweb 1.7 QIDO cannot be filtered any other way). Every public request
has already passed the gate's filter; here it is answered from the internal root:
searches narrowed to the studies the caller may see (``limit``/``offset`` applied after
filtering), study-scoped reads forwarded, STOW-RS stored instance by instance (stow.py),
admin requests such as ``/servers`` forwarded (admin.py). Frame and
instance retrieval can be taken over by a ``RetrieveHandler`` (the HTJ2K package).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Protocol
from urllib.parse import quote

from ..caches import Cache
from ..dicom_json import tag_value
from ..errors import HttpError, OrthancCallError
from ..gate import Gate
from ..gate.api import caller
from ..gate.policy import Visibility
from ..host import Host
from ..http import Request, Response, error_response
from . import admin, search, stow
from .metadata import Annotate, StudyMetadata
from .paths import INTERNAL_ROOT, PUBLIC_ROOT, DicomWebPath, parse
from .rules import (
    PNG,
    allowed_methods,
    check_answer_size,
    core_rendering_query,
    frame_list,
    json_accepted,
    rendered_media_type,
    rendering_query,
)
from .urls import public_base

DICOM_JSON = "application/dicom+json"
_INTERNAL_URL = re.compile(rb"https?://[^/\"\s]+" + re.escape(INTERNAL_ROOT.encode()) + rb"/")
STUDY_UID, SERIES_UID, SOP_UID, PATIENT_ID = "0020000D", "0020000E", "00080018", "00100020"
SOP_CLASS_UID = "00080016"
SEARCH_SECONDS = 5.0  # how long a search answer may miss another node's changes


class RetrieveHandler(Protocol):
    def handle(self, request: Request, path: DicomWebPath) -> Response | None:
        """Answer a WADO-RS retrieval, or None to let the front forward it."""


def _sniff_image(body: bytes) -> str:
    if body.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if body.startswith(b"\x89PNG"):
        return "image/png"
    if body.startswith(b"GIF8"):
        return "image/gif"
    return "application/octet-stream"


def _refusal(request: Request, rest: str) -> Response | None:
    """DICOMweb 1.24's answer when it refuses the method or the ``Accept`` outright (405 with
    its ``Allow``, 400), else None. Internal calls carry neither, so the front decides."""
    allowed = allowed_methods(rest)
    if allowed is None:
        return None
    if request.method not in allowed.split(","):
        return Response(405, b"", headers={"Allow": allowed})
    if request.method != "GET":
        return None
    accept = request.headers.get("accept")
    path = parse(rest)
    action = path.action if path is not None else "search"
    if action in ("search", "metadata") and not json_accepted(accept):
        return error_response(400, f"DICOM JSON only (application/dicom+json), not {accept!r}")
    if action in ("rendered", "thumbnail") and rendered_media_type(accept) is None:
        return error_response(400, f"rendered answers are image/jpeg or image/png, not {accept!r}")
    return None


def _multipart_type(body: bytes, part_type: str) -> str:
    """Content-Type of a multipart body made by the DICOMweb plugin, from its first boundary."""
    first_line = body.split(b"\r\n", 1)[0]
    if not first_line.startswith(b"--"):
        raise HttpError(502, "the DICOMweb plugin answered an unexpected body")
    boundary = first_line[2:].decode("ascii", "replace")
    return f'multipart/related; type="{part_type}"; boundary={boundary}'


class DicomWebFront:
    def __init__(self, host: Host, gate: Gate, *, retrieve: RetrieveHandler | None = None,
                 annotate_metadata: Annotate | None = None,
                 metadata_cache_bytes: int = 256 * 1024 * 1024) -> None:
        self._host = host
        self._gate = gate
        # Retrieval of instances, series, studies and frames (the HTJ2K package): the DICOMweb
        # plugin's multi-part answers cannot cross an internal call (docs/runtime-facts.md).
        self.retrieve = retrieve
        # Metadata answers, cached per study version; the HTJ2K package advertises renditions.
        self.metadata = StudyMetadata(host, max_bytes=metadata_cache_bytes, annotate=annotate_metadata)
        self.search_cache: Cache[tuple[object, ...], bytes] = Cache(max_bytes=32 * 1024 * 1024, max_entries=4096)
        # Whole non-admin answers, keyed by the caller's permitted set (the gate's cached object).
        self.answer_cache: Cache[tuple[object, ...], bytes] = Cache(max_bytes=32 * 1024 * 1024, max_entries=4096)
        self.generation = 0  # counts this node's new and deleted instances (note_change): searches
        # Studies no non-admin search may return (gate/collisions.py sets it: quarantine).
        self.hidden_studies: Callable[[], frozenset[str]] = frozenset

    def note_change(self, *, deleted: bool = False) -> None:
        """An instance was stored, or a resource deleted, on this node: cached search answers
        are stale (metadata answers follow their own study, metadata.py)."""
        self.generation += 1
        if deleted:
            self.metadata.note_deletion()

    def handle(self, request: Request) -> Response:
        rest = request.path[len(PUBLIC_ROOT):]
        try:
            refused = _refusal(request, rest)
            if refused is not None:
                return refused
            if request.method == "GET" and rest in ("/studies", "/series", "/instances"):
                return self._search(request, rest)
            if request.method == "POST" and (study := stow.study_in_path(rest)) is not None:
                return stow.answer(self._host, request, study, public_base(request))
            path = parse(rest)
            if request.method == "GET" and path is not None:
                answer = self.retrieve.handle(request, path) if self.retrieve is not None else None
                if answer is not None:
                    return answer  # frame answers are bounded while the handler collects them
                return self._forward_get(request, path)
            return self._forward_admin(request, rest)
        except OrthancCallError as exc:
            self._host.log_warning(f"NeuroNova DICOMweb: {request.method} {request.path}: {exc}")
            return error_response(exc.status if 400 <= exc.status < 600 else 502, "DICOMweb request failed")
        except HttpError as exc:
            return error_response(exc.status, exc.message)

    # -- QIDO-RS --------------------------------------------------------------------------

    def _search(self, request: Request, rest: str) -> Response:
        identity = caller(self._gate, request)
        visibility = self._gate.visibility(identity)
        query = dict(request.query)
        query.pop("token", None)
        if visibility.everything:
            return self._json_answer(request, self._cached_search(rest, query))
        hidden = self.hidden_studies()
        own = identity.patient_id if identity.role == "patient" else ""
        # The whole answer is cached: a repeated search (viewers repeat them) costs a look-up,
        # no JSON work under the GIL. Stale after a change on this node, and after 5 s for
        # the changes other nodes of a shared index make (per entry, so expiries spread out).
        key = (rest, tuple(sorted(query.items())), visibility.studies, own, public_base(request))
        version = (self.generation, self._gate.studies.version, hidden)
        body = self.answer_cache.get(key, version)
        if body is None:
            answers = self._permitted(rest, query, visibility, hidden, own)
            body = self._public_urls(request, json.dumps(answers).encode())
            self.answer_cache.put(key, body, version=version, ttl=SEARCH_SECONDS)
        return Response(200, body, DICOM_JSON)

    def _permitted(self, rest: str, query: dict[str, str], visibility: Visibility, hidden: frozenset[str],
                   own: str) -> list[search.Answer]:
        """The exact page of a non-admin search (dicomweb/search.py)."""
        limit = _bounded_int(query.pop("limit", ""), "limit")
        offset = _bounded_int(query.pop("offset", ""), "offset") or 0
        found = _narrow(query, visibility)
        if found is None:
            return []
        narrowed, permitted = found
        ordered = self._gate.studies.ordered(permitted)
        if hidden and not hidden.isdisjoint(ordered):
            # A study quarantined by a patient collision (gate/collisions.py) is no answer to non-admins.
            ordered = tuple(u for u in ordered if u not in hidden)
        # The merge and the post-filter read each answer's UIDs and PatientID.
        fields = [f for f in narrowed.get("includefield", "").split(",") if f]
        if "all" not in fields:
            needed = [t for t in search.ORDER_TAGS[rest] if t not in fields]
            narrowed["includefield"] = ",".join([*fields, *needed])
        allowed = set(ordered)

        def fetch(run: list[str]) -> list[search.Answer]:
            answers: list[search.Answer] = json.loads(
                self._cached_search(rest, {**narrowed, "StudyInstanceUID": ",".join(run)}) or b"[]")
            return answers

        def keep(results: list[search.Answer]) -> list[search.Answer]:
            # Defence in depth: whatever the narrowing did, only permitted studies go out, and
            # never a StudyInstanceUID that the index holds under several PatientIDs (both
            # entries are left out: which one is legitimate is an admin's decision), nor, for
            # a patient, an answer of another PatientID.
            mine = [r for r in results if tag_value(r, STUDY_UID) in allowed]
            patients: dict[str, set[str]] = {}
            for r in mine:
                if tag_value(r, PATIENT_ID):
                    patients.setdefault(tag_value(r, STUDY_UID), set()).add(tag_value(r, PATIENT_ID))
            return [r for r in mine if len(patients.get(tag_value(r, STUDY_UID), ())) <= 1
                    and not (own and tag_value(r, PATIENT_ID) not in ("", own))]

        return search.page(rest, ordered, fetch, keep, offset, limit, search.is_matching(narrowed))

    def _internal_get(self, rest: str, query: dict[str, str]) -> bytes:
        uri = INTERNAL_ROOT + rest + ("?" + internal_query(query) if query else "")
        return self._host.rest_get(uri, after_plugins=True)

    def _cached_search(self, rest: str, query: dict[str, str]) -> bytes:
        """QIDO answers, cached while this node sees no change (and for 5 s at most, for the
        changes other nodes of a shared index make): viewers repeat the same searches."""
        # Study lists are long: the key holds their digest.
        key = ("qido", rest, tuple(sorted((k, _digest(v)) for k, v in query.items())))
        body = self.search_cache.get(key, self.generation)
        if body is None:
            body = self._internal_get(rest, query)
            self.search_cache.put(key, body, version=self.generation, ttl=SEARCH_SECONDS)
        return body

    def _json_answer(self, request: Request, body: bytes) -> Response:
        return Response(200, self._public_urls(request, body), DICOM_JSON)

    def _public_urls(self, request: Request, body: bytes) -> bytes:
        # The DICOMweb plugin writes RetrieveURL / BulkDataURI for the root it is mounted on
        # and, on internal calls, for a host it guesses: point them at what the caller used.
        return _INTERNAL_URL.sub((public_base(request) + "/").encode(), body)

    # -- WADO-RS --------------------------------------------------------------------------

    def _forward_get(self, request: Request, path: DicomWebPath) -> Response:
        query = {k: v for k, v in request.query.items() if k != "token"}
        action = path.action
        if action == "metadata":
            # PS3.18 defines no query parameters for WADO-RS metadata: whatever the query, the
            # cached answer, so "?x=1" cannot make the plugin rebuild a study's metadata.
            return self._metadata(request, path)
        if action in ("rendered", "thumbnail"):
            query = rendering_query(query)  # checked and bounded here, before Orthanc renders
            if rendered_media_type(request.headers.get("accept")) == PNG:
                return self._rendered_png(path, query)
        rest = path.resource + path.tail
        if action == "frames":
            # Duplicates collapsed, the list bounded, as the retrieve handler does.
            rest = path.resource + "/frames/" + ",".join(str(n) for n in frame_list(path.frames))
        body = self._internal_get(rest, query)
        if action == "frames":
            check_answer_size(len(body))
        if action in ("metadata", "search"):
            return self._json_answer(request, body)
        if action in ("frames", "bulk"):
            return Response(200, body, _multipart_type(body, "application/octet-stream"))
        if action in ("rendered", "thumbnail"):
            return Response(200, body, _sniff_image(body))
        return Response(200, body, _multipart_type(body, "application/dicom"))

    def _rendered_png(self, path: DicomWebPath, query: dict[str, str]) -> Response:
        """PNG rendering. The DICOMweb plugin picks PNG from the Accept header only, which an
        internal call cannot carry; without rendering parameters it answers Orthanc's own
        ``/instances/{id}/frames/{n-1}/rendered`` (PNG when no Accept is sent), so that is
        asked directly, for the instance DICOMweb 1.24 would choose (first Orthanc id of the
        series or study). viewport and window map to Orthanc's width/height and
        window-center/window-width; quality does not apply to PNG."""
        if path.instance:
            instance_id = self._host.lookup_instance(path.instance)
        elif path.series:
            series_id = self._host.lookup_series(path.series)
            ids = self._host.rest_get_json(f"/series/{series_id}").get("Instances", []) if series_id else []
            instance_id = min(ids) if ids else None
        else:
            study_id = self._host.lookup_study(path.study)
            items = self._host.rest_get_json(f"/studies/{study_id}/instances") if study_id else []
            instance_id = min((str(i["ID"]) for i in items), default=None)
        if instance_id is None:
            raise HttpError(404, "no such resource")
        frame = path.frames[0] if path.frames else 1
        uri = f"/instances/{instance_id}/frames/{frame - 1}/rendered"
        core = core_rendering_query(query)
        body = self._host.rest_get(uri + ("?" + internal_query(core) if core else ""))
        return Response(200, body, PNG)

    def _metadata(self, request: Request, path: DicomWebPath) -> Response:
        study_id = self._host.lookup_study(path.study)
        if study_id is None:
            raise HttpError(404, "no such study")
        rest = path.resource + path.tail
        key = (rest, public_base(request))  # the URLs inside name the caller's scheme and host
        body = self.metadata.answer(study_id, path.study, key,
                                    lambda: self._public_urls(request, self._internal_get(rest, {})))
        return Response(200, body, DICOM_JSON)

    def _forward_admin(self, request: Request, rest: str) -> Response:
        """Any other request (``/servers...``): the DICOMweb plugin's own route, same method,
        query and body, its status and body answered (admin.py)."""
        identity = caller(self._gate, request)
        if not identity.is_admin:  # the filter already refused; this is belt and braces
            raise HttpError(403, "admin only")
        query = {k: v for k, v in request.query.items() if k != "token"}
        return admin.forward(self._host, request, rest, internal_query(query))


def internal_query(query: dict[str, str]) -> str:
    """A query string for an internal call. Orthanc 1.10.1 does not percent-decode the values
    it hands to plugins (docs/runtime-facts.md), so values go literally; only the characters
    that would split the query are encoded (the DICOMweb plugin then sees them encoded, which
    matches nothing rather than something else)."""
    return "&".join(f"{quote(k, safe='')}={quote(v, safe=_LITERAL)}" for k, v in query.items())


_LITERAL = "^*?,.-_:/@!$'()~;[]|\\ "


def _bounded_int(raw: str, name: str) -> int:
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError as exc:
        raise HttpError(400, f"{name} must be a non-negative integer") from exc
    if value < 0:
        raise HttpError(400, f"{name} must be a non-negative integer")
    return value


def _digest(value: str) -> str:
    return value if len(value) <= 256 else "#" + hashlib.blake2b(value.encode(), digest_size=16).hexdigest()


def _narrow(query: dict[str, str], visibility: Visibility) -> tuple[dict[str, str], frozenset[str]] | None:
    """The search without its study list, and the permitted studies it asks for (all of them,
    or those of its StudyInstanceUID list), or None when nothing can match. The caller asks
    Orthanc for the studies in chunks (dicomweb/search.py)."""
    permitted = visibility.studies
    asked = query.get("StudyInstanceUID") or query.get(STUDY_UID)
    if asked:
        wanted = {u for u in asked.replace("\\", ",").split(",") if u}
        permitted = frozenset(wanted & permitted)
    if not permitted:
        return None
    narrowed = {k: v for k, v in query.items() if k not in ("StudyInstanceUID", STUDY_UID)}
    # The post-filter reads each answer's StudyInstanceUID: make sure it is included.
    fields = [f for f in narrowed.get("includefield", "").split(",") if f]
    if "all" not in fields and STUDY_UID not in fields and "StudyInstanceUID" not in fields:
        narrowed["includefield"] = ",".join([*fields, STUDY_UID])
    return narrowed, permitted
