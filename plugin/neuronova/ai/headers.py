"""The source attributes copied into SEG and SR, normalized by one documented rule (pure).

Real headers carry values DICOM does not allow (PatientSex ``0000``, dates such as
``1960-13-45``, ages without their unit, over-long accession numbers, ...). highdicom copies
patient and study attributes strictly, so such a value would stop the results from being
stored. The builders therefore never see the source datasets themselves: they get
:func:`normalized_copy`, a new dataset sharing every element of the source except the
Patient and Study attributes, which follow this rule:

- **Kept verbatim**: ``PatientID``, ``StudyInstanceUID``. They tie the results to the
  study in Orthanc (a changed PatientID would make another patient, and the gate would
  quarantine the results as a patient collision).
- **Normalized** (type 2: an invalid value becomes empty, the attribute stays):
  ``PatientName``, ``ReferringPhysicianName`` (person names: surrounding spaces trimmed,
  at most 5 components, trailing empty ones dropped; a one-component name such as
  ``BRAINIX``, the retired form PS3.5 6.2.1 still reads as a family name, is written
  ``BRAINIX^``, which is the same name in the current form), ``PatientBirthDate``,
  ``StudyDate`` (``YYYYMMDD`` of a real calendar day; ``YYYY-MM-DD``, ``YYYY.MM.DD``,
  ``YYYY/MM/DD`` are rewritten), ``StudyTime`` (``HHMMSS.FFFFFF`` in range; ``HH:MM:SS``
  rewritten), ``PatientSex`` (``M``, ``F``,
  ``O`` after trimming and upper-casing), ``AccessionNumber``, ``StudyID`` (short strings).
- **Normalized or left out** (type 3: an invalid value drops the attribute):
  ``IssuerOfPatientID``, ``StudyDescription`` (long strings), ``PatientAge`` (``nnnD``,
  ``nnnW``, ``nnnM``, ``nnnY``; ``45Y``, ``45 y`` become ``045Y``; a bare number has no
  unit and is left out), ``PatientSize``, ``PatientWeight`` (decimal strings, positive;
  a decimal comma becomes a point), ``PatientBirthTime`` (as StudyTime).
- **Left out**: every other attribute of the Patient, General Study, Patient Study,
  Clinical Trial Subject and Clinical Trial Study modules (sequences, other names and
  IDs, clinical trial data, ...).
- Strings are never cut: a cut identifier is a wrong identifier. A value with a character
  its VR forbids (control characters, a backslash where one value is allowed) or longer
  than its VR allows is invalid. A value that is not one value (several, or unreadable) is
  invalid.

The source is never altered (its elements are shared, never changed; replaced ones are new
elements in the copy). Every change is reported (:class:`Change`) and kept in the job.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from pydicom import config
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

#: A normalizer: the value as text -> the value to store, or None (invalid).
Normalizer = Callable[[str], str | None]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def verbatim(value: str) -> str | None:
    return value


def _text(max_length: int, *, multi_line: bool = False) -> Normalizer:
    def normalize(value: str) -> str | None:
        value = value.strip()
        forbidden = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]") if multi_line else _CONTROL
        if len(value) > max_length or "\\" in value or forbidden.search(value):
            return None
        return value

    return normalize


def person_name(value: str) -> str | None:
    value = value.strip()
    if "\\" in value or _CONTROL.search(value):
        return None
    groups = value.split("=")
    if len(groups) > 3:
        return None
    out: list[str] = []
    for group in groups:
        components = [c.strip() for c in group.split("^")]
        if len(components) > 5:
            return None
        while components and not components[-1]:
            components.pop()  # trailing empty components carry nothing
        if not out and len(components) == 1:
            components.append("")  # one component (``BRAINIX``): the family name, in the non-retired form
        joined = "^".join(components)
        if len(joined) > 64:
            return None
        out.append(joined)
    while out and not out[-1]:
        out.pop()
    return "=".join(out)


_DATE_FORMS = (re.compile(r"^(\d{4})(\d{2})(\d{2})$"), re.compile(r"^(\d{4})[-./](\d{2})[-./](\d{2})$"))


def date(value: str) -> str | None:
    value = value.strip()
    for form in _DATE_FORMS:
        match = form.match(value)
        if match:
            try:
                day = datetime.date(int(match[1]), int(match[2]), int(match[3]))
            except ValueError:
                return None
            return day.strftime("%Y%m%d") if day.year >= 1 else None
    return None


_TIME = re.compile(r"^(\d{2})(?::?(\d{2})(?::?(\d{2})(\.\d{1,6})?)?)?$")


def time_of_day(value: str) -> str | None:
    match = _TIME.match(value.strip())
    if not match:
        return None
    hours, minutes, seconds, fraction = match[1], match[2], match[3], match[4]
    if int(hours) > 23 or (minutes and int(minutes) > 59) or (seconds and int(seconds) > 60):
        return None
    return hours + (minutes or "") + (seconds or "") + (fraction or "")


_AGE = re.compile(r"^(\d{1,3})\s*([DWMYdwmy])$")


def age(value: str) -> str | None:
    match = _AGE.match(value.strip())
    if not match:
        return None
    return f"{int(match[1]):03d}{match[2].upper()}"


def sex(value: str) -> str | None:
    value = value.strip().upper()
    return value if value in ("M", "F", "O") else None


def positive_decimal(value: str) -> str | None:
    value = value.strip().replace(",", ".")
    try:
        number = float(value)
    except ValueError:
        return None
    if not number > 0 or number == float("inf") or len(value) > 16:
        return None
    return value


@dataclass(frozen=True)
class Rule:
    normalize: Normalizer
    required: bool  # type 2: kept empty when invalid; else left out


#: The rule (see the module doc). A keyword not listed here is left out of the copy when it
#: belongs to the modules named in :data:`LEFT_OUT`.
RULES: dict[str, Rule] = {
    "PatientID": Rule(verbatim, True),
    "StudyInstanceUID": Rule(verbatim, True),
    "PatientName": Rule(person_name, True),
    "ReferringPhysicianName": Rule(person_name, True),
    "PatientBirthDate": Rule(date, True),
    "StudyDate": Rule(date, True),
    "StudyTime": Rule(time_of_day, True),
    "PatientSex": Rule(sex, True),
    "AccessionNumber": Rule(_text(16), True),
    "StudyID": Rule(_text(16), True),
    "IssuerOfPatientID": Rule(_text(64), False),
    "StudyDescription": Rule(_text(64), False),
    "PatientAge": Rule(age, False),
    "PatientSize": Rule(positive_decimal, False),
    "PatientWeight": Rule(positive_decimal, False),
    "PatientBirthTime": Rule(time_of_day, False),
}

#: Root attributes of the Patient, General Study, Patient Study, Clinical Trial Subject and
#: Clinical Trial Study modules (PS3.3 C.7.1.1, C.7.1.3, C.7.2.1-3) that are not in RULES.
LEFT_OUT: frozenset[str] = frozenset("""
ReferencedPatientSequence TypeOfPatientID IssuerOfPatientIDQualifiersSequence
SourcePatientGroupIdentificationSequence GroupOfPatientsIdentificationSequence
PatientBirthDateInAlternativeCalendar PatientDeathDateInAlternativeCalendar PatientAlternativeCalendar
QualityControlSubject StrainDescription StrainNomenclature StrainStockSequence StrainAdditionalInformation
StrainCodeSequence GeneticModificationsSequence OtherPatientNames OtherPatientIDs OtherPatientIDsSequence
ReferencedPatientPhotoSequence EthnicGroup EthnicGroupCodeSequence PatientSpeciesDescription
PatientSpeciesCodeSequence PatientBreedDescription PatientBreedCodeSequence BreedRegistrationSequence
ResponsiblePerson ResponsiblePersonRole ResponsibleOrganization PatientComments PatientIdentityRemoved
DeidentificationMethod DeidentificationMethodCodeSequence ClinicalTrialSponsorName ClinicalTrialProtocolID
ClinicalTrialProtocolName IssuerOfClinicalTrialProtocolID OtherClinicalTrialProtocolIDsSequence
ClinicalTrialSiteID ClinicalTrialSiteName IssuerOfClinicalTrialSiteID ClinicalTrialSubjectID
IssuerOfClinicalTrialSubjectID ClinicalTrialSubjectReadingID IssuerOfClinicalTrialSubjectReadingID
ClinicalTrialProtocolEthicsCommitteeName ClinicalTrialProtocolEthicsCommitteeApprovalNumber
IssuerOfAccessionNumberSequence ReferringPhysicianIdentificationSequence ConsultingPhysicianName
ConsultingPhysicianIdentificationSequence ProcedureCodeSequence PhysiciansOfRecord
PhysiciansOfRecordIdentificationSequence NameOfPhysiciansReadingStudy PhysiciansReadingStudyIdentificationSequence
ReferencedStudySequence RequestingService RequestingServiceCodeSequence ReasonForPerformedProcedureCodeSequence
AdmittingDiagnosesDescription AdmittingDiagnosesCodeSequence PatientSizeCodeSequence PatientBodyMassIndex
MeasuredAPDimension MeasuredLateralDimension MedicalAlerts Allergies Occupation SmokingStatus
AdditionalPatientHistory PregnancyStatus LastMenstrualDate PatientSexNeutered ReasonForVisit
ReasonForVisitCodeSequence AdmissionID IssuerOfAdmissionIDSequence ServiceEpisodeID ServiceEpisodeDescription
IssuerOfServiceEpisodeIDSequence PatientState ClinicalTrialTimePointID ClinicalTrialTimePointDescription
LongitudinalTemporalOffsetFromEvent LongitudinalTemporalEventType ClinicalTrialTimePointTypeCodeSequence
IssuerOfClinicalTrialTimePointID ConsentForClinicalTrialUseSequence
""".split())


@dataclass(frozen=True)
class Change:
    """One attribute the results carry differently from the source."""

    keyword: str
    source: str  # the source's value, as text
    stored: str | None  # None: left out

    @property
    def tag(self) -> str:
        tag = tag_for_keyword(self.keyword) or 0
        return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"

    def to_json(self) -> dict[str, str | None]:
        return {"attribute": self.keyword, "tag": self.tag, "source": self.source, "stored": self.stored}


def _as_text(element: DataElement) -> str | None:
    """The element's one value as text; None when it is several values or a sequence."""
    value = element.value
    if element.VR == "SQ" or isinstance(value, MultiValue | list | tuple | bytes):
        return None
    return "" if value is None else str(value)


def normalized_copy(source: Dataset, rules: Mapping[str, Rule] = RULES) -> tuple[Dataset, list[Change]]:
    """A dataset for the builders: ``source``'s elements, with the Patient and Study
    attributes normalized or left out by ``rules`` (the module doc); the changes made."""
    copy = Dataset()
    for tag in source.keys():
        # get_item: raw elements are shared unconverted (iterating would convert them in
        # the source itself, e.g. replace its UN VRs); each converts on use in the copy
        copy[tag] = source.get_item(tag)
    if hasattr(source, "file_meta"):
        copy.file_meta = source.file_meta
    changes: list[Change] = []
    for keyword in sorted(LEFT_OUT - set(rules)):
        if keyword in copy:
            if not copy[keyword].is_empty:  # an empty value carried nothing: no change to report
                changes.append(Change(keyword, _display(copy[keyword]), None))
            del copy[keyword]
    for keyword, rule in rules.items():
        if keyword not in copy:
            if rule.required:  # type 2: present, empty
                copy.add_new(keyword, dictionary_VR(keyword), "")
            continue
        element = copy[keyword]
        text = _as_text(element)
        stored = None if text is None else rule.normalize(text)
        if stored is None and rule.required:
            stored = ""
        if stored == text:
            continue
        if not element.is_empty:
            changes.append(Change(keyword, _display(element), stored))
        if stored is None:
            del copy[keyword]
        else:
            copy.add(DataElement(element.tag, element.VR, stored))
    return copy, changes


def _display(element: DataElement) -> str:
    value = element.value
    if value is None:
        return ""
    if element.VR == "SQ":
        return f"<sequence of {len(value)} item(s)>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value)[:200]


# --------------------------------------------------------------------------- diagnosis

_ENUMERATED = {"PatientSex": ("M", "F", "O", "")}


def invalid_attributes(
    datasets: Sequence[Dataset], keywords: Iterable[str] | None = None
) -> list[tuple[str, str, str]]:
    """Attributes DICOM refuses, as ``(keyword, value, SOP Instance UID)``: what to name
    when building the results failed anyway. Checks the VR of every listed root attribute
    (default: those of RULES), the enumerations highdicom enforces, and calendar dates."""
    found = []
    for ds in datasets:
        for keyword in keywords if keywords is not None else RULES:
            if keyword not in ds:
                continue
            element = ds[keyword]
            text = _as_text(element)
            problem = text is None and element.VR != "SQ" and element.VM > 1
            if text is not None and not problem:
                try:
                    validate_value(element.VR, text, config.RAISE)
                except ValueError:
                    problem = True
                allowed = _ENUMERATED.get(keyword)
                if allowed is not None and text.strip() not in allowed:
                    problem = True
                if element.VR == "DA" and text.strip() and date(text) != text.strip():
                    problem = True
            if problem:
                found.append((keyword, _display(element), str(ds.get("SOPInstanceUID", ""))))
    return found
