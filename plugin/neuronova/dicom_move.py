"""The C-MOVE SCP: Orthanc's own store SCU, driven by the plugin so that every C-MOVE is audited
with who asked for it.

Orthanc's built-in C-MOVE SCP tells no plugin, and no Lua script, which modality asked for a
move: only the instances it sends are seen (``OutgoingCStoreInstanceFilter``, dicom_audit.lua).
orthanc-python's ``RegisterMoveCallback3`` hands the request to the plugin together with the
DICOM connection (calling AET and IP) and replaces the built-in SCP, so this module does what
that SCP did:

1. :meth:`MoveScp.create` resolves the request (level PATIENT, STUDY, SERIES or IMAGE, several
   UIDs separated by backslashes as PS3.4 allows) to Orthanc's instances and the move
   destination to a configured modality (Orthanc refuses unknown destinations the same way),
   and records one audit event per study: which modality asked (AET and IP), which study, to
   which AET, how many instances. A move that cannot be audited is refused (fail closed).
2. Orthanc then calls :meth:`MoveScp.apply` once per sub-operation (one per instance, so the
   remaining/completed counts the requester sees are right). The instances go out in chunks,
   one association each, through Orthanc's own store SCU (``POST /modalities/{name}/store``,
   synchronous, carrying the Move Originator AET and Message ID): the chunk is sent on its
   first sub-operation and the others of the chunk report its outcome.

Permissions stay Orthanc's: a modality without ``AllowMove`` never reaches the callback.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .audit import ALLOW, DENY, AuditEvent, AuditWriter
from .errors import OrthancCallError
from .gate.routes import EVENT_INSTANCES_TRANSFERRED
from .host import Host, MoveRequest

CHUNK = 64  # instances per outgoing association
_MAX_INSTANCES = 100_000  # one C-MOVE; beyond that the requester must ask level by level
# UIDs named in one request: each is one index search, so a list of thousands (a value may
# be 64 KiB long) would hold the SCP thread for long before anything is sent.
_MAX_KEYS = 1000
_SEND_TIMEOUT_S = 120


class MoveRefused(Exception):
    """The C-MOVE is refused; Orthanc answers the requester with a failure status."""


@dataclass
class MoveDriver:
    """One C-MOVE in progress: what is left to send, and how the current chunk went."""

    request: MoveRequest
    modality: str
    instances: list[str]
    done: int = 0
    chunk_error: str | None = field(default=None, repr=False)


class MoveScp:
    def __init__(self, host: Host, audit: AuditWriter) -> None:
        self._host = host
        self._audit = audit

    def create(self, request: MoveRequest) -> MoveDriver:
        try:
            modality = self._destination(request.target_aet)
            by_study = self._resolve(request)
        except MoveRefused as exc:
            self._record(request, "", DENY, str(exc))
            raise
        instances = [i for ids in by_study.values() for i in ids]
        if len(instances) > _MAX_INSTANCES:
            reason = f"{len(instances)} instances in one C-MOVE (at most {_MAX_INSTANCES})"
            self._record(request, "", DENY, reason)
            raise MoveRefused(reason)
        for study_uid, ids in by_study.items():
            self._record(request, study_uid, ALLOW,
                         f"C-MOVE of {len(ids)} instance(s) asked by AET {request.remote_aet} "
                         f"to AET {request.target_aet} (modality {modality})")
        return MoveDriver(request=request, modality=modality, instances=instances)

    @staticmethod
    def size(driver: MoveDriver) -> int:
        return len(driver.instances)

    def apply(self, driver: MoveDriver) -> None:
        """One sub-operation: the next instance. Raises when it was not sent."""
        index = driver.done
        driver.done += 1
        if index >= len(driver.instances):
            raise MoveRefused("no sub-operation left")
        if index % CHUNK == 0:
            driver.chunk_error = self._send(driver, driver.instances[index:index + CHUNK])
        if driver.chunk_error is not None:
            raise MoveRefused(driver.chunk_error)

    def _send(self, driver: MoveDriver, chunk: list[str]) -> str | None:
        body = {"Resources": chunk, "Synchronous": True, "Timeout": _SEND_TIMEOUT_S,
                "MoveOriginatorAet": driver.request.remote_aet,
                "MoveOriginatorID": driver.request.originator_id}
        try:
            self._host.rest_post(f"/modalities/{driver.modality}/store", json.dumps(body).encode())
        except OrthancCallError as exc:
            self._host.log_warning(f"C-MOVE to {driver.request.target_aet}: a chunk of {len(chunk)} "
                                   f"instance(s) was not sent: {exc}")
            return f"store to AET {driver.request.target_aet} failed: {exc}"
        return None

    def _destination(self, target_aet: str) -> str:
        modalities = self._host.rest_get_json("/modalities?expand")
        if isinstance(modalities, dict):
            for name, entry in modalities.items():
                if isinstance(entry, dict) and entry.get("AET") == target_aet:
                    return str(name)
        raise MoveRefused(f"unknown move destination AET {target_aet!r}")

    def _resolve(self, request: MoveRequest) -> dict[str, list[str]]:
        """Orthanc instance IDs per StudyInstanceUID, in the order Orthanc lists them."""
        level = request.level.upper()
        if level == "PATIENT":
            kind, key, uids = "Patient", "PatientID", _values(request.patient_id)
        elif level == "STUDY":
            kind, key, uids = "Study", "StudyInstanceUID", _values(request.study_uid)
        elif level == "SERIES":
            kind, key, uids = "Series", "SeriesInstanceUID", _values(request.series_uid)
        elif level in ("IMAGE", "INSTANCE"):
            kind, key, uids = "Instance", "SOPInstanceUID", _values(request.sop_uid)
        else:
            raise MoveRefused(f"unknown query/retrieve level {request.level!r}")
        if not uids:
            raise MoveRefused(f"no {key} at level {level}")
        if len(uids) > _MAX_KEYS:
            raise MoveRefused(f"{len(uids)} values of {key} in one C-MOVE (at most {_MAX_KEYS})")
        found: dict[str, list[str]] = {}
        total = 0
        for uid in uids:
            query = json.dumps({"Level": kind, "Query": {key: uid}, "Limit": 1000}).encode()
            try:
                ids = json.loads(self._host.rest_post("/tools/find", query))
                for resource_id in ids:
                    for study_uid, instances in self._instances(kind, str(resource_id)):
                        found.setdefault(study_uid, []).extend(instances)
                        total += len(instances)
            except (OrthancCallError, ValueError, KeyError, TypeError) as exc:
                raise MoveRefused(f"cannot resolve {key}={uid}: {exc}") from exc
            if total > _MAX_INSTANCES:  # refused by create(); resolving the rest would be wasted
                break
        return found

    def _instances(self, kind: str, resource_id: str) -> list[tuple[str, list[str]]]:
        """(StudyInstanceUID, instance IDs) below one resource."""
        get = self._host.rest_get_json
        if kind == "Patient":
            return [pair for study in get(f"/patients/{resource_id}/studies")
                    for pair in self._instances("Study", str(study["ID"]))]
        if kind == "Study":
            study = get(f"/studies/{resource_id}")
            return [(_uid(study), [str(i["ID"]) for i in get(f"/studies/{resource_id}/instances")])]
        route = "series" if kind == "Series" else "instances"
        study = get(f"/{route}/{resource_id}/study")
        if kind == "Series":
            return [(_uid(study), [str(i["ID"]) for i in get(f"/series/{resource_id}/instances")])]
        return [(_uid(study), [resource_id])]

    def _record(self, request: MoveRequest, study_uid: str, decision: str, reason: str) -> None:
        self._audit.record(AuditEvent(
            time=time.time(), user=request.remote_aet[:255], role="modality", ip=request.remote_ip[:64],
            method="C-MOVE", route="dicom/c-move",
            uri=f"dicom://{request.called_aet}/{request.level}?to={request.target_aet}"[:2048],
            study_uid=study_uid[:64], decision=decision, reason=reason[:1024],
            event_type=EVENT_INSTANCES_TRANSFERRED,
        ))


def _uid(study: dict[str, Any]) -> str:
    return str(study.get("MainDicomTags", {}).get("StudyInstanceUID", ""))


def _values(raw: str) -> list[str]:
    return [v.strip() for v in raw.split("\\") if v.strip()]
