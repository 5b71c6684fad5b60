"""What the gate needs to know about studies, read from Orthanc and cached.

The hierarchy (which study a series or instance belongs to) does not change while the
resource exists, so it is cached for long, and dropped whenever anything is deleted (a
series deleted and stored again under another study must not stay readable through its
old study); the facts a decision reads (PatientID, physician names) are cached briefly.
The Orthanc ids of the search order come from the store's table (gate/study_ids.py) and are
remembered while their study exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from sqlalchemy.exc import SQLAlchemyError

from ..caches import Cache
from ..errors import OrthancCallError
from ..host import Host
from .study_ids import StudyIdTable

_WILDCARDS = set("*?\\")
# StudyInstanceUID <-> Orthanc id remembered for the search order (about 300 bytes each).
MAX_REMEMBERED_IDS = 1_000_000


@dataclass(frozen=True)
class _Order:
    """A study set sorted for search (StudyDirectory.ordered), and the UIDs not yet stored."""

    epoch: int
    version: int
    studies: tuple[str, ...]
    missing: frozenset[str]


@dataclass(frozen=True)
class StudyFacts:
    study_uid: str
    orthanc_id: str
    patient_id: str
    attributes: dict[str, tuple[str, ...]] = field(default_factory=dict)  # keyword -> values


def _ignore(_orthanc_id: str) -> None:
    pass


def normalize_name(value: str) -> str:
    """Person names compare case-insensitively, ignoring empty trailing components."""
    return "^".join(part.strip() for part in value.split("=")[0].split("^")).rstrip("^").upper()


def is_literal(value: str) -> bool:
    """A claim used in an Orthanc query must not be a wildcard pattern."""
    return bool(value) and not (_WILDCARDS & set(value))


class StudyDirectory:
    def __init__(self, host: Host, attributes: Iterable[str], facts_ttl: float) -> None:
        self._host = host
        self._attributes = tuple(dict.fromkeys(attributes))
        self._facts: Cache[str, StudyFacts] = Cache(max_entries=20000, ttl=facts_ttl)
        self._parents: Cache[tuple[str, str], str] = Cache(max_entries=200000, ttl=3600.0)
        self.version = 0  # bumped when studies arrive, change or go
        # Orthanc ids of existing studies: they do not change while the study exists, so they
        # are dropped only when something is deleted (``epoch``).
        self._ids: dict[str, str] = {}
        self._uids: dict[str, str] = {}  # the reverse: Orthanc id -> StudyInstanceUID
        self._epoch = 0
        self._orders: Cache[frozenset[str], _Order] = Cache(max_entries=64)
        # With the table (use_table): UIDs Orthanc's index did not know when asked. Arrivals
        # reach the table through whichever node stores them, so they are not asked again.
        self._table: StudyIdTable | None = None
        self._confirm: Callable[[str], None] = _ignore
        self._absent: set[str] = set()

    def facts(self, study_uid: str) -> StudyFacts | None:
        cached = self._facts.get(study_uid)
        if cached is not None:
            return cached
        facts = self._load(study_uid)
        if facts is not None:  # unknown studies are not remembered: they may arrive any moment
            self._facts.put(study_uid, facts)
        return facts

    def _load(self, study_uid: str) -> StudyFacts | None:
        orthanc_id = self._host.lookup_study(study_uid)
        if orthanc_id is None:
            return None
        try:
            study = self._host.rest_get_json(f"/studies/{orthanc_id}")
        except OrthancCallError:
            return None
        main = {**study.get("PatientMainDicomTags", {}), **study.get("MainDicomTags", {})}
        values: dict[str, tuple[str, ...]] = {}
        missing = [a for a in self._attributes if a not in main]
        if missing and study.get("Series"):
            # Not an Orthanc main tag (e.g. NameOfPhysiciansReadingStudy): read one instance.
            try:
                instances = self._host.rest_get_json(f"/studies/{orthanc_id}/instances")
                if instances:
                    tags = json.loads(self._host.rest_get(f"/instances/{instances[0]['ID']}/simplified-tags"))
                    main.update({a: tags[a] for a in missing if isinstance(tags.get(a), str)})
            except OrthancCallError:
                pass
        for attribute in self._attributes:
            raw = main.get(attribute, "")
            values[attribute] = tuple(v for v in str(raw).split("\\") if v) if raw else ()
        return StudyFacts(study_uid, orthanc_id, str(main.get("PatientID", "")), values)

    def invalidate(self, hierarchy: bool = False, deleted: tuple[str, str] | None = None) -> None:
        """Drop cached facts (a study arrived, changed or was deleted), and with
        ``hierarchy`` the series/instance -> study cache too (something was deleted: Orthanc's
        DELETED change names only an Orthanc id, gone by now, so all of it goes).

        ``deleted`` is the (level, Orthanc id) of that change. Study ids for the search order
        stay valid while their study exists: a deleted study takes only its own entry, a
        deleted series or instance none (when its study goes too, Orthanc reports that study's
        deletion as well); anything else forgets them all (read again from the table, if any)."""
        self._facts.clear()
        if hierarchy:
            self._parents.clear()
            level, orthanc_id = deleted or ("", "")
            if level.upper() == "STUDY":
                self._forget([orthanc_id])
            elif level.upper() not in ("SERIES", "INSTANCE"):
                self.forget_ids()
        self.version += 1

    def use_table(self, table: StudyIdTable, confirm: Callable[[str], None]) -> None:
        """Read identifiers from the store's table (gate/study_ids.py) before asking Orthanc;
        ``confirm`` receives the identifiers Orthanc gave for UIDs the table did not know."""
        self._table, self._confirm = table, confirm

    def written(self, rows: list[dict[str, str]], removed: list[str]) -> None:
        """This node wrote the table: the removed identifiers leave the order (the DELETED
        change took them already, unless a search read the row back meanwhile), and cached
        orders look again for their missing UIDs."""
        if removed:
            self._forget(removed)
        if rows or removed:
            self.version += 1

    def remote_arrivals(self, seen: int | None, _current: int) -> None:
        """A node recorded studies in the table: cached orders look again for missing UIDs."""
        if seen is not None:
            self.version += 1

    def forget_ids(self) -> None:
        """A study may have been deleted through another node: remembered ids are read again."""
        self._ids, self._uids = {}, {}
        self._epoch += 1
        self.version += 1

    def _forget(self, orthanc_ids: Iterable[str]) -> None:
        for orthanc_id in orthanc_ids:
            self._ids.pop(self._uids.pop(orthanc_id, ""), None)
        self._epoch += 1

    def ordered(self, uids: frozenset[str]) -> tuple[str, ...]:
        """The stored studies among ``uids``, by ascending Orthanc id: the order of Orthanc's
        own QIDO answers (dicomweb/search.py). Cached per set; after an arrival only the UIDs
        that were missing are looked for again, after a deletion all of them (from memory and
        the table: Orthanc is asked only for UIDs neither knows)."""
        epoch, version = self._epoch, self.version
        order = self._orders.get(uids)
        if order is not None and order.epoch == epoch:
            if order.version == version:
                return order.studies
            # With the table, an arrival through any node is recorded there: Orthanc is not
            # asked again for UIDs it did not know a moment ago.
            if not self._find(order.missing, look_up=self._table is None):
                self._orders.put(uids, _Order(epoch, version, order.studies, order.missing))
                return order.studies
        found = self._find(uids, look_up=True)
        studies = tuple(uid for _, uid in sorted((orthanc_id, uid) for uid, orthanc_id in found.items()))
        self._orders.put(uids, _Order(epoch, version, studies, frozenset(uids - found.keys())))
        return studies

    def _find(self, uids: Iterable[str], look_up: bool) -> dict[str, str]:
        """uid -> Orthanc id of the stored studies among ``uids``: remembered, else from the
        table, else (``look_up``) from Orthanc's index, once per UID while the table works."""
        found: dict[str, str] = {}
        unknown: list[str] = []
        for uid in uids:
            known = self._ids.get(uid)
            if known is not None:
                found[uid] = known
            else:
                unknown.append(uid)
        table_works = False
        if unknown and self._table is not None:
            try:
                from_table = self._table.ids_of(unknown)
                table_works = True
            except SQLAlchemyError:
                from_table = {}  # the store is away: Orthanc's index answers, slower
            self._remember(from_table)
            found.update(from_table)
            unknown = [uid for uid in unknown if uid not in from_table]
        if not look_up:
            return found
        for uid in unknown:
            if table_works and uid in self._absent:
                continue
            orthanc_id = self._host.lookup_study(uid)
            if orthanc_id is None:
                if table_works and len(self._absent) < MAX_REMEMBERED_IDS:
                    self._absent.add(uid)
                continue
            found[uid] = orthanc_id
            self._remember({uid: orthanc_id})
            if table_works:
                self._confirm(orthanc_id)
        return found

    def _remember(self, ids: dict[str, str]) -> None:
        for uid, orthanc_id in ids.items():
            if len(self._ids) >= MAX_REMEMBERED_IDS:
                return
            self._ids[uid] = orthanc_id
            self._uids[orthanc_id] = uid

    def study_of(self, level: str, uid: str) -> str | None:
        """StudyInstanceUID of a series (``level="series"``) or instance (``"instance"``)."""
        key = (level, uid)
        cached = self._parents.get(key)
        if cached is not None:
            return cached
        lookup = self._host.lookup_series if level == "series" else self._host.lookup_instance
        orthanc_id = lookup(uid)
        if orthanc_id is None:
            return None
        try:
            study = self._host.rest_get_json(f"/{'series' if level == 'series' else 'instances'}/{orthanc_id}/study")
        except OrthancCallError:
            return None
        study_uid = str(study.get("MainDicomTags", {}).get("StudyInstanceUID", ""))
        if study_uid:
            self._parents.put(key, study_uid)
        return study_uid or None

    def find_studies(self, query: dict[str, str]) -> set[str]:
        """StudyInstanceUIDs matching an exact (non-wildcard) query, through Orthanc's index."""
        if not all(is_literal(v) for v in query.values()):
            return set()
        body = json.dumps({"Level": "Study", "Query": query, "Expand": True}).encode()
        answers = json.loads(self._host.rest_post("/tools/find", body))
        return {
            a["MainDicomTags"]["StudyInstanceUID"] for a in answers if "StudyInstanceUID" in a.get("MainDicomTags", {})
        }
