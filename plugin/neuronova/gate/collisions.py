"""Patients never mix: instances whose StudyInstanceUID is already filed under another PatientID.

Orthanc identifies a study by PatientID *and* StudyInstanceUID, so such an instance (a broken
modality, a STOW by an allowed role) makes a second Orthanc study with the same
StudyInstanceUID under another patient, and every DICOMweb answer about that UID then mixes
both patients. The check runs when the instance arrives, before Orthanc stores it
(``ReceivedInstanceCallback``). The instance is never refused or altered: it is stored as
received, recorded here as *quarantined*, audited as a security alert, and its study is
hidden from every non-admin answer (study-scoped reads are denied by the gate's decision,
searches leave it out: ``dicomweb/front.py``) until an admin releases it, or deletes the
instance, through ``/neuronova/quarantine`` (quarantine_api.py).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update

from ..audit import DENY
from ..caches import Cache
from ..host import Host
from ..store import Database
from ..store.schema import quarantine
from .header_tags import read_tags
from .routes import EVENT_SECURITY_ALERT
from .service import Gate
from .studies import is_literal

QUARANTINED, RELEASED, DELETED = "quarantined", "released", "deleted"
HIDDEN_REFRESH_SECONDS = 5.0
_STRIPES = 64
UNCHECKED = "(index lookup failed)"  # the owners recorded when Orthanc's index could not be read
_STUDY, _SERIES, _SOP, _PATIENT = "0020,000d", "0020,000e", "0008,0018", "0010,0020"
_TAGS = (_STUDY, _SERIES, _SOP, _PATIENT)


@dataclass(frozen=True)
class Quarantined:
    id: str
    sop_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    existing_patient_ids: tuple[str, ...]
    origin: str
    received_at: float
    status: str
    resolved_by: str
    resolved_at: float | None

    def as_json(self) -> dict[str, Any]:
        from ..audit import iso_utc

        return {
            "id": self.id, "sop_uid": self.sop_uid, "series_uid": self.series_uid, "study_uid": self.study_uid,
            "patient_id": self.patient_id, "existing_patient_ids": list(self.existing_patient_ids),
            "origin": self.origin, "received_at": iso_utc(self.received_at), "status": self.status,
            "resolved_by": self.resolved_by,
            "resolved_at": iso_utc(self.resolved_at) if self.resolved_at is not None else None,
        }


def _text(tags: Mapping[str, Any], key: str) -> str:
    value = tags.get(key, "")
    return value.strip() if isinstance(value, str) else ""


class CollisionGuard:
    def __init__(self, host: Host, db: Database, gate: Gate) -> None:
        self._host = host
        self._db = db
        self._gate = gate
        # One lock per stripe of StudyInstanceUIDs, not one for all: the first instance of a
        # study waits for an index read, and on PostgreSQL with one index connection per node
        # (docs/deployment.md) that read queues behind other stores; a single lock made every
        # parallel upload of another study wait too (600 one-study uploads: 20.9 s, striped 6.8 s).
        self._stripes = tuple(threading.Lock() for _ in range(_STRIPES))
        # StudyInstanceUID -> the PatientIDs it is filed under. Filled from Orthanc's index on
        # first sight, then by each instance this node accepts, *before* Orthanc stores it: two
        # instances of different patients arriving together (same study: same stripe) cannot
        # both look like the first. Entries are versioned by the generation ``forget`` bumps:
        # an answer read before a deletion is never used after it.
        self._owners: Cache[str, frozenset[str]] = Cache(max_entries=20000, ttl=600.0)
        self._generation = 0
        self._hidden_lock = threading.Lock()
        self._hidden = self._load_hidden()
        self._hidden_read_at = time.monotonic()

    # -- detection (Orthanc's received-instance callback) ------------------------------------

    def check(self, dicom: bytes, origin: str) -> Quarantined | None:
        """Inspect an instance before Orthanc stores it; record it when it collides."""
        # The tags straight from the bytes when the file is plain (header_tags.py: ~0.1 ms of
        # the HTTP thread for a CT slice; Orthanc's full parse and its JSON took ~0.5 ms), else
        # Orthanc's parser, which then also decides what is DICOM.
        tags: Mapping[str, Any] | None = read_tags(dicom, _TAGS) or self._host.parse_dicom(dicom)
        if tags is None:
            return None  # not DICOM: Orthanc refuses it itself
        study, patient = _text(tags, _STUDY), _text(tags, _PATIENT)
        if not study:
            return None
        with self._stripe(study):
            generation = self._generation
            owners = cached = self._owners.get(study, version=generation)
            if owners is None:
                try:
                    owners = self._indexed_patients(study)
                except Exception as exc:  # noqa: BLE001 - cannot compare: fail closed, quarantine it
                    self._host.log_error(f"NeuroNova: study {study} could not be checked for a patient "
                                         f"collision: {exc!r}")
                    unchecked = self._record(tags, study, patient, frozenset({UNCHECKED}), origin)
                    self._alert(unchecked)
                    return unchecked
            if owners and patient not in owners:
                # The intruder's PatientID is not added: every later instance of it collides too.
                found = self._record(tags, study, patient, owners, origin)
            else:
                found = None
                owners = owners | {patient}
            if owners != cached:  # most instances: their study's owners are cached as they are
                self._owners.put(study, owners, version=generation)
        if found is not None:
            self._alert(found)
        return found

    def _stripe(self, study: str) -> threading.Lock:
        return self._stripes[zlib.crc32(study.encode()) % _STRIPES]

    def _indexed_patients(self, study: str) -> frozenset[str]:
        if not is_literal(study):
            return frozenset()  # a wildcard in a UID would match other studies: nothing to compare
        body = json.dumps({"Level": "Study", "Query": {"StudyInstanceUID": study}, "Expand": True}).encode()
        answers = json.loads(self._host.rest_post("/tools/find", body))
        return frozenset(
            str(a.get("PatientMainDicomTags", {}).get("PatientID", "")) for a in answers
            if a.get("MainDicomTags", {}).get("StudyInstanceUID") == study
        )

    def _record(self, tags: Mapping[str, Any], study: str, patient: str, owners: frozenset[str],
                origin: str) -> Quarantined:
        item = Quarantined(
            id=uuid.uuid4().hex, sop_uid=_text(tags, _SOP)[:64], series_uid=_text(tags, _SERIES)[:64],
            study_uid=study[:64], patient_id=patient[:64], existing_patient_ids=tuple(sorted(owners)),
            origin=origin[:32], received_at=time.time(), status=QUARANTINED, resolved_by="", resolved_at=None,
        )
        row = {**item.__dict__, "existing_patient_ids": json.dumps(list(item.existing_patient_ids))}
        with self._db.engine.begin() as connection:
            connection.execute(insert(quarantine), [row])
        with self._hidden_lock:  # records of two stripes at once: neither study may be lost
            self._hidden = self._hidden | {item.study_uid}
        return item

    def _alert(self, item: Quarantined) -> None:
        self._host.log_warning(
            f"NeuroNova: instance {item.sop_uid} reuses study {item.study_uid} of another patient: "
            f"quarantined ({item.id}), the study is hidden from non-admins until an admin resolves it")
        self._gate.record(
            None, "", "STORE", "collision", f"/neuronova/quarantine/{item.id}", item.study_uid, DENY,
            f"patient collision: instance {item.sop_uid} of PatientID {item.patient_id!r} in a study of "
            f"{list(item.existing_patient_ids)!r}, received by {item.origin}; quarantined",
            EVENT_SECURITY_ALERT)

    # -- what is hidden ------------------------------------------------------------------

    def _load_hidden(self) -> frozenset[str]:
        with self._db.engine.connect() as connection:
            rows = connection.execute(
                select(quarantine.c.study_uid).where(quarantine.c.status == QUARANTINED)).all()
        return frozenset(str(r[0]) for r in rows)

    def forget(self) -> None:
        """Resources were deleted: the next instance of a study reads its owners from the index."""
        self._generation += 1  # a check reading the index meanwhile stores under the old one
        self._owners.clear()

    def hidden_studies(self) -> frozenset[str]:
        """StudyInstanceUIDs that non-admins may not see while a collision is unresolved.

        Re-read from the store every few seconds: other nodes sharing it quarantine too."""
        if time.monotonic() - self._hidden_read_at > HIDDEN_REFRESH_SECONDS:
            self._hidden_read_at = time.monotonic()
            self._reload_hidden()
        return self._hidden

    def _reload_hidden(self) -> None:
        # Under the lock _record adds under: a set read before a quarantine's row was written
        # must not replace the set that quarantine just added its study to.
        with self._hidden_lock:
            self._hidden = self._load_hidden()

    # -- resolution (admin API) ----------------------------------------------------------

    def list(self, status: str = "", limit: int = 100, offset: int = 0) -> list[Quarantined]:
        statement = select(quarantine).order_by(quarantine.c.received_at, quarantine.c.id)
        if status:
            statement = statement.where(quarantine.c.status == status)
        with self._db.engine.connect() as connection:
            rows = connection.execute(statement.limit(limit).offset(offset)).mappings().all()
        return [_from_row(row) for row in rows]

    def get(self, item_id: str) -> Quarantined | None:
        with self._db.engine.connect() as connection:
            row = connection.execute(select(quarantine).where(quarantine.c.id == item_id)).mappings().first()
        return _from_row(row) if row is not None else None

    def orthanc_instance(self, item: Quarantined) -> str | None:
        """Orthanc identifier of the quarantined instance (the intruder's copy, not the victim's)."""
        query = {"SOPInstanceUID": item.sop_uid, "StudyInstanceUID": item.study_uid, "PatientID": item.patient_id}
        if not all(is_literal(v) for v in query.values()):
            return None
        body = json.dumps({"Level": "Instance", "Query": query}).encode()
        found = json.loads(self._host.rest_post("/tools/find", body))
        return str(found[0]) if found else None

    def delete_instance(self, orthanc_id: str) -> None:
        self._host.rest_delete(f"/instances/{orthanc_id}")

    def resolve(self, item: Quarantined, status: str, by: str) -> Quarantined:
        with self._db.engine.begin() as connection:
            connection.execute(update(quarantine).where(quarantine.c.id == item.id).values(
                status=status, resolved_by=by[:255], resolved_at=time.time()))
        with self._stripe(item.study_uid):
            self._owners.drop(item.study_uid)  # released: the intruder's PatientID is now known
        self._reload_hidden()
        resolved = self.get(item.id)
        assert resolved is not None
        return resolved


def _from_row(row: Any) -> Quarantined:
    values = dict(row)
    values["existing_patient_ids"] = tuple(json.loads(values["existing_patient_ids"] or "[]"))
    return Quarantined(**values)
