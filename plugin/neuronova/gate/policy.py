"""The access policy: may this identity see this study? Which studies may it see?"""

from __future__ import annotations

from dataclasses import dataclass

from .claims import claim_text
from .grants import GrantIndex
from .identity import Identity
from .settings import Settings
from .studies import StudyDirectory, is_literal, normalize_name

PHYSICIAN_ROLES = frozenset({"doctor", "radiologist"})


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str


@dataclass(frozen=True)
class Visibility:
    """What a search may return: everything (admins), or exactly ``studies``."""

    everything: bool
    studies: frozenset[str] = frozenset()


class Policy:
    def __init__(self, settings: Settings, grants: GrantIndex, studies: StudyDirectory) -> None:
        self._settings = settings
        self._grants = grants
        self._studies = studies

    def decide(self, identity: Identity, study_uid: str) -> Decision:
        if identity.is_admin:
            return Decision(True, "admin")
        if identity.role == "share":
            if study_uid == identity.share_study:
                return Decision(True, f"share {identity.share_id}")
            return Decision(False, "share link is for another study")
        if identity.role not in PHYSICIAN_ROLES and identity.role != "patient":
            return Decision(False, f"role {identity.role or 'none'} has no image access")
        facts = self._studies.facts(study_uid)
        if facts is None:
            # Same answer as a forbidden study: existence must not leak.
            return Decision(False, "unknown study")
        if identity.role == "patient":
            if is_literal(identity.patient_id) and facts.patient_id == identity.patient_id:
                return Decision(True, "own study")
            return Decision(False, "not the patient's study")
        relations = self._grants.relations(study_uid, identity.subject)
        if relations:
            return Decision(True, "grant " + ",".join(sorted(relations)))
        for match in self._settings.attribute_matches:
            wanted = normalize_name(identity.claims_value(match.claim))
            if wanted and any(normalize_name(v) == wanted for v in facts.attributes.get(match.attribute, ())):
                return Decision(True, f"{match.relation} by {match.attribute}")
        return Decision(False, "no grant for this study")

    def visibility(self, identity: Identity) -> Visibility:
        if identity.is_admin:
            return Visibility(True)
        if identity.role == "share":
            return Visibility(False, frozenset({identity.share_study}))
        if identity.role == "patient":
            if not is_literal(identity.patient_id):
                return Visibility(False)
            return Visibility(False, frozenset(self._studies.find_studies({"PatientID": identity.patient_id})))
        if identity.role not in PHYSICIAN_ROLES:
            return Visibility(False)
        studies = set(self._grants.studies_of(identity.subject))
        for match in self._settings.attribute_matches:
            value = identity.claims_value(match.claim)
            if is_literal(value):
                studies |= self._studies.find_studies({match.attribute: value})
        return Visibility(False, frozenset(studies))


__all__ = ["Decision", "Policy", "Visibility", "claim_text"]
