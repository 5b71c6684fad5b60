"""AI inference through a real Orthanc with the plugin and the real reference service on
loopback: stable study -> rule -> durable job -> inference (pixels pulled through the gate
with a share token) -> SEG + SR stored in the study; manual jobs, authorization, a fault
schedule with retries and backoff, Orthanc stopped or killed mid-job, disabled mode."""

from __future__ import annotations

import io
import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import highdicom as hd
import jwt
import pydicom
import pytest
import requests
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from ai_client.reference_service import Fault, ReferenceServer, ServiceConfig, orthanc_instance_id
from ai_client.testing import mr_head_series, part10
from neuronova.ai.recognition import is_ai_result
from tests.support.dicom_factory import Study
from tests.support.orthanc_server import OrthancServer, free_port, start_orthanc
from tests.support.waiting import wait_for
from tests.unit.test_ai_headers import _copied_attribute_errors, _dciodvfy_errors

from .conftest import SCU_AET, c_store

JWT_SECRET = "ai-integration-secret-0123456789abcdefghijk"
ADMIN_PASSWORD = "ai admin password 0123"
STABLE_AGE = 2
BASE_DELAY, FACTOR, JITTER = 0.5, 2.0, 0.2
READ_TIMEOUT = 2.0
FAULTY, REFUSED = "stroke_risk_faulty", "stroke_risk_refused"
SEED = "stroke_risk_seed"  # the reference service answering exactly the seed's fields


@dataclass
class AiWorld:
    server: OrthancServer
    data: Path
    env: dict[str, str]
    overlay: dict[str, Any]
    main: ReferenceServer
    faulty: ReferenceServer
    seed: ReferenceServer
    a: list[Dataset] = field(default_factory=list)  # referring HOUSE^GREGORY, sent by C-STORE
    b: list[Dataset] = field(default_factory=list)  # no physician, patient PAT-AI-B

    @property
    def base(self) -> str:
        return self.server.base

    def token(self, sub: str, role: str, **claims: Any) -> str:
        now = int(time.time())
        payload = {"sub": sub, "iat": now, "exp": now + 600, "realm_access": {"roles": [role]}, **claims}
        return jwt.encode(payload, JWT_SECRET, algorithm="HS256")

    def call(self, method: str, path: str, token: str | None = None, admin: bool = False,
             **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.base + path, headers=headers, timeout=30,
                                auth=self.server.admin if admin else None, **kwargs)

    def jobs(self, study: str, model: str = "") -> list[dict[str, Any]]:
        answer = self.call("GET", f"/neuronova/ai/jobs?study={study}&model={model}", admin=True)
        assert answer.status_code == 200, answer.text
        return list(answer.json())

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.call("GET", f"/neuronova/ai/jobs/{job_id}", admin=True)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def wait_job(self, job_id: str, statuses: tuple[str, ...] = ("succeeded", "failed"),
                 timeout: float = 45.0) -> dict[str, Any]:
        return wait_for(lambda: (j := self.job(job_id))["status"] in statuses and j, timeout,
                        f"job {job_id} in {statuses}")

    def submit(self, study: str, model: str, token: str | None = None) -> requests.Response:
        return self.call("POST", "/neuronova/ai/jobs", token, admin=token is None,
                         json={"study": study, "model": model})

    def upload(self, datasets: list[Dataset]) -> None:
        for ds in datasets:
            answer = requests.post(self.base + "/instances", data=part10(ds), auth=self.server.admin, timeout=30)
            assert answer.status_code == 200, answer.text

    def study_id(self, study_uid: str) -> str:
        found = self.call("POST", "/tools/lookup", admin=True, data=study_uid).json()
        return str(found[0]["ID"])

    def series_of(self, study_uid: str) -> list[dict[str, Any]]:
        return list(self.call("GET", f"/studies/{self.study_id(study_uid)}/series", admin=True).json())

    def restart(self, kill: bool) -> None:
        if kill:
            self.server.process.kill()
            self.server.process.wait(timeout=30)
        else:
            self.server.stop()
        self.server = start_orthanc(self.data, env=self.env, overlay=self.overlay,
                                    http_port=self.server.http_port, dicom_port=self.server.dicom_port)



def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def head(seed: str, slices: int = 5, patient: str = "PAT-AI", referring: str = "") -> list[Dataset]:
    datasets = mr_head_series(seed=seed, slices=slices, patient_id=patient)
    for ds in datasets:
        ds.ReferringPhysicianName = referring
    return datasets


def as_study(datasets: list[Dataset]) -> Study:
    return Study(str(datasets[0].StudyInstanceUID), str(datasets[0].PatientID),
                 [str(datasets[0].SeriesInstanceUID)], datasets)


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AiWorld]:
    main = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=4))
    faulty = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=4, max_fault_sleep=10))
    seed = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=2, answer="seed"))
    main.start_background()
    faulty.start_background()
    seed.start_background()
    data = tmp_path_factory.mktemp("orthanc-ai")
    scu_port = free_port()
    env = {
        "NEURONOVA_INFERENCE_URL": main.url,
        "NEURONOVA_STABLE_AGE": str(STABLE_AGE),
        "NEURONOVA_JWT_SECRET": JWT_SECRET,
        "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "NEURONOVA_MODALITIES": f'{{"{SCU_AET}": ["{SCU_AET}", "127.0.0.1", {scu_port}]}}',
    }
    overlay = {
        "OverwriteInstances": True,  # a re-sent study is stored again: a genuine second STABLE_STUDY
        "NeuroNova": {"Ai": {
            "ReadTimeoutSeconds": READ_TIMEOUT, "PollSeconds": 0.2, "LeaseSeconds": 10,
            "Retry": {"MaxRetries": 3, "BaseDelaySeconds": BASE_DELAY, "Factor": FACTOR, "MaxDelaySeconds": 10,
                      "Jitter": JITTER},
            "Rules": [
                {"Name": "mr-stroke-risk", "ModalitiesInStudy": ["MR"], "Models": ["stroke_risk"]},
                {"Name": "seed-contract", "StudyDescription": "^SEED CONTRACT", "Models": [SEED]},
            ],
            "Models": {
                SEED: {"Url": seed.url, "RemoteName": "stroke_risk"},
                FAULTY: {"Url": faulty.url, "RemoteName": "stroke_risk"},
                REFUSED: {"Url": f"http://127.0.0.1:{free_port()}", "RemoteName": "stroke_risk"},
            },
        }},
    }
    server = start_orthanc(data, env=env, overlay=overlay)
    world = AiWorld(server, data, env, overlay, main, faulty, seed)
    try:
        world.a = head("ai-it-a", slices=10, patient="PAT-AI-A", referring="HOUSE^GREGORY")
        world.b = head("ai-it-b", slices=4, patient="PAT-AI-B")
        assert c_store(server.dicom_port, as_study(world.a)) == [0] * 10
        world.upload(world.b)
        yield world
    finally:
        world.server.stop()
        main.stop()
        faulty.stop()
        seed.stop()


def _num(content: Any, code: str) -> float | None:
    """The value of the NUM item with concept ``code`` anywhere in an SR content tree."""
    for item in content or ():
        if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == code:
            return float(item.MeasuredValueSequence[0].NumericValue)
        found = _num(item.get("ContentSequence"), code)
        if found is not None:
            return found
    return None


def test_health_reports_ai(ai: AiWorld) -> None:
    health = requests.get(ai.base + "/neuronova/health", timeout=10).json()
    assert health["ai"]["enabled"] is True
    assert set(health["ai"]["models"]) == {"stroke_risk", "tumor_detection", FAULTY, REFUSED, SEED}


def test_a_stable_study_sent_by_c_store_gets_one_job_and_its_results(ai: AiWorld) -> None:
    study, series = str(ai.a[0].StudyInstanceUID), str(ai.a[0].SeriesInstanceUID)
    job = wait_for(lambda: (js := ai.jobs(study, "stroke_risk")) and js[0]["status"] in ("succeeded", "failed")
                   and js[0], 45, "the automatic job")
    assert (job["status"], job["attempts"], job["trigger"], job["rule"]) == ("succeeded", 1, "auto", "mr-stroke-risk")
    assert job["series"] == series
    result = job["result"]
    assert 0 <= result["risk_score"] <= 1 and result["mask"]["frames"] == 10
    assert ai.main.counters["inference_ok"] >= 1

    # SEG and SR are in the study and decode
    by_type = {o["type"]: o for o in result["objects"]}
    assert set(by_type) == {"SEG", "SR"}
    files = {kind: ai.call("GET", f"/instances/{o['orthanc_id']}/file", admin=True).content
             for kind, o in by_type.items()}
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(files["SEG"])))
    assert seg.StudyInstanceUID == study and seg.Manufacturer == "NeuroNova"
    assert str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID) == series
    assert seg.get_segment_description(1).segment_label == "Hyperintensity"
    assert int(seg.pixel_array.sum()) == result["mask"]["voxels"] > 0  # the service's mask, bit for bit counted
    sr = pydicom.dcmread(io.BytesIO(files["SR"]))
    hd.sr.Comprehensive3DSR.from_dataset(sr)
    assert sr.StudyInstanceUID == study
    assert _num(sr.ContentSequence, "NN-0001") == pytest.approx(result["risk_score"])
    assert _num(sr.ContentSequence, "NN-0002") == pytest.approx(result["confidence"])
    assert _num(sr.ContentSequence, "NN-0003") == pytest.approx(result["details"]["burden"])
    modalities = sorted(s["MainDicomTags"]["Modality"] for s in ai.series_of(study))
    assert modalities == ["MR", "SEG", "SR"]
    # what Orthanc 1.10.1 keeps as series main tags is enough to recognise the results
    for s in ai.series_of(study):
        assert is_ai_result(s["MainDicomTags"]) is (s["MainDicomTags"]["Modality"] != "MR"), s["MainDicomTags"]

    # a viewer with access to the study sees the result series through DICOMweb
    house = ai.token("dr.house", "doctor", name="HOUSE^GREGORY")
    qido = ai.call("GET", f"/dicom-web/studies/{study}/series", house)
    assert qido.status_code == 200
    assert {s["00080060"]["Value"][0] for s in qido.json()} == {"MR", "SEG", "SR"}

    # the service read the pixels through the gate with a share token, revoked afterwards
    audit = ai.call("GET", f"/neuronova/audit?study={study}&limit=1000", admin=True).json()
    reads = [row for row in audit if row["user"].startswith("share:") and row["decision"] == "allow"]
    assert reads and all(row["route"].startswith("wado-rs") for row in reads)
    share = ai.call("GET", f"/neuronova/shares/{reads[0]['user'].removeprefix('share:')}", admin=True).json()
    assert share["created_by"] == f"ai:{job['id']}" and share["revoked"] is True

    metrics = ai.call("GET", "/tools/metrics-prometheus", admin=True).text
    for name in ("queue_depth", "jobs_running", "jobs_failed", "attempts", "inference_latency_seconds"):
        assert f"neuronova_ai_{name} " in metrics



def _raw(ds: Dataset, values: dict[str, bytes]) -> None:
    """Put values in as a modality writes them, unchecked (pydicom would refuse some)."""
    for keyword, value in values.items():
        value += b" " * (len(value) % 2)
        tag = Tag(tag_for_keyword(keyword))
        ds[tag] = RawDataElement(tag, dictionary_VR(keyword), len(value), value, 0, False, True)


#: The header oddities of the real brain MR study this contract was measured on (BRAINIX).
BRAINIX = {"PatientSex": b"0000", "PatientName": b"BRAINIX", "PatientAge": b"45", "StudyDate": b"2006-12-21",
           "PatientBirthDate": b"19601345", "AccessionNumber": b"ACC-" + b"9" * 30}


def test_the_seed_contract_on_a_study_with_real_world_headers_stores_seg_and_sr(ai: AiWorld, tmp_path: Path) -> None:
    datasets = head("ai-seed-contract", slices=7, patient="PAT-AI-SEED")
    # InstanceNumbers out of slice order: the middle by number (7) is not the middle by position
    for ds, number in zip(datasets, (5, 1, 6, 2, 3, 4, 7), strict=True):
        ds.StudyDescription = "SEED CONTRACT brain"
        ds.InstanceNumber = number
        _raw(ds, BRAINIX)
    study, series = str(datasets[0].StudyInstanceUID), str(datasets[0].SeriesInstanceUID)
    sent = datasets[3]  # the middle of 7 slices by position (head() stacks them along z), number 2
    files = {str(ds.SOPInstanceUID): part10(ds) for ds in datasets}
    for ds in reversed(datasets):  # Orthanc's order is not the slice order
        answer = requests.post(ai.base + "/instances", data=files[str(ds.SOPInstanceUID)], auth=ai.server.admin,
                               timeout=30).json()
        # the seed mode finds the instance by Orthanc's identifier, computed as Orthanc does
        assert answer["ID"] == orthanc_instance_id("PAT-AI-SEED", study, series, str(ds.SOPInstanceUID))

    # stable study -> rule -> job -> the seed's answer -> SEG + SR stored, listed by the job API
    job = wait_for(lambda: (js := ai.jobs(study, SEED)) and js[0]["status"] in ("succeeded", "failed") and js[0],
                   45, "the seed-contract job")
    assert (job["status"], job["trigger"], job["rule"], job["attempts"]) == (
        "succeeded", "auto", "seed-contract", 1), job
    result = job["result"]
    assert result["instance_sent"]["sop_instance_uid"] == str(sent.SOPInstanceUID)
    assert "note" not in result and result["mask"]["frames"] == 1
    assert ai.seed.counters["inference_ok"] >= 1
    changed = {c["attribute"]: c for c in result["header_changes"]}
    assert changed["PatientSex"] == {"attribute": "PatientSex", "tag": "(0010,0040)", "source": "0000", "stored": ""}
    assert set(BRAINIX) <= set(changed)

    by_type = {o["type"]: o for o in result["objects"]}
    assert set(by_type) == {"SEG", "SR"}
    blobs = {kind: ai.call("GET", f"/instances/{o['orthanc_id']}/file", admin=True).content
             for kind, o in by_type.items()}
    seg = hd.seg.Segmentation.from_dataset(pydicom.dcmread(io.BytesIO(blobs["SEG"])))
    assert int(seg.NumberOfFrames) == 1  # the one mask, on the frame of the instance sent
    source = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert source.ReferencedSOPInstanceUID == sent.SOPInstanceUID
    assert int(seg.pixel_array.sum()) == result["mask"]["voxels"]
    sr = hd.sr.Comprehensive3DSR.from_dataset(pydicom.dcmread(io.BytesIO(blobs["SR"])))
    for obj in (seg, sr):
        assert (obj.PatientID, obj.StudyInstanceUID, obj.PatientSex, str(obj.PatientName)) == (
            "PAT-AI-SEED", study, "", "BRAINIX^")
        assert _copied_attribute_errors(_dciodvfy_errors(blobs["SEG" if obj is seg else "SR"], tmp_path)) == []
    # the results joined the study and patient (no second patient: PatientID kept verbatim)
    # (the study also got the default rule's stroke_risk job, from the full-answer service)
    ours = sorted(s["MainDicomTags"]["Modality"] for s in ai.series_of(study)
                  if SEED in s["MainDicomTags"].get("SeriesDescription", ""))
    assert ours == ["SEG", "SR"]
    patients = ai.call("POST", "/tools/lookup", admin=True, data="PAT-AI-SEED").json()
    assert len([p for p in patients if p["Type"] == "Patient"]) == 1
    # the sources are stored as they were sent
    instance_id = orthanc_instance_id("PAT-AI-SEED", study, series, str(sent.SOPInstanceUID))
    assert ai.call("GET", f"/instances/{instance_id}/file", admin=True).content == files[str(sent.SOPInstanceUID)]
    listed = ai.call("GET", f"/neuronova/ai/jobs?study={study}&model={SEED}", admin=True).json()
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["result"]["objects"] == result["objects"]


def test_duplicate_stable_events_and_stored_results_never_make_another_job(ai: AiWorld) -> None:
    study = str(ai.a[0].StudyInstanceUID)
    study_id = ai.study_id(study)
    requests_before = ai.main.counters["inference_requests"]

    def stable_events() -> int:
        changes = ai.call("GET", "/changes?limit=10000", admin=True).json()["Changes"]
        return sum(1 for c in changes if c["ChangeType"] == "StableStudy" and c["ID"] == study_id)

    # storing the SEG and SR made the study unstable: it becomes stable once more
    wait_for(lambda: stable_events() >= 2, 20, "the stable event caused by the results")
    # and the modality sends the whole study again (stored again: OverwriteInstances)
    assert c_store(ai.server.dicom_port, as_study(ai.a)) == [0] * 10
    wait_for(lambda: stable_events() >= 3, 20, "the stable event of the re-sent study")
    time.sleep(1.5)  # time for the intake and a worker to act, if they wrongly would
    jobs = ai.jobs(study)
    assert [(j["model"], j["status"]) for j in jobs] == [("stroke_risk", "succeeded")]
    assert ai.main.counters["inference_requests"] == requests_before


def test_manual_trigger_is_idempotent(ai: AiWorld) -> None:
    study = str(ai.a[0].StudyInstanceUID)
    house = ai.token("dr.house", "doctor", name="HOUSE^GREGORY")
    first = ai.submit(study, "tumor_detection", house)
    assert first.status_code == 201, first.text
    body = first.json()
    assert (body["created"], body["trigger"], body["created_by"], body["model"]) == (
        True, "manual", "dr.house", "tumor_detection")
    again = ai.submit(study, "tumor_detection")  # admin, same content and model
    assert again.status_code == 200 and again.json()["id"] == body["id"] and again.json()["created"] is False
    done = ai.wait_job(body["id"])
    assert done["status"] == "succeeded" and done["series"] == str(ai.a[0].SeriesInstanceUID)
    assert [e["event"] for e in done["history"]] == ["succeeded"]
    descriptions = {s["MainDicomTags"].get("SeriesDescription", "") for s in ai.series_of(study)}
    assert {"NeuroNova AI tumor_detection report", "NeuroNova AI stroke_risk report"} <= descriptions
    assert ai.submit(study, "no_such_model").status_code == 400
    assert ai.submit("1.2.3.4.5.6.7.8", "stroke_risk").status_code == 404
    assert ai.call("POST", "/neuronova/ai/jobs", admin=True, data=b"{oops").status_code == 400


def test_job_routes_authorization(ai: AiWorld) -> None:
    a, b = str(ai.a[0].StudyInstanceUID), str(ai.b[0].StudyInstanceUID)
    job_a = wait_for(lambda: ai.jobs(a, "stroke_risk"), 30, "job of A")[0]
    job_b = wait_for(lambda: ai.jobs(b, "stroke_risk"), 30, "job of B")[0]
    grant = ai.call("POST", f"/neuronova/studies/{b}/grants", admin=True,
                    json={"subject": "dr.wilson", "relation": "reading"})
    assert grant.status_code == 201
    share_b = ai.call("POST", "/neuronova/shares", admin=True, json={"study": b, "ttl": 600}).json()["token"]
    callers = {
        # name: (token or None for admin basic auth, studies visible, may run jobs on)
        "admin": (None, {a, b}, {a, b}),
        "doctor-referring-a": (ai.token("dr.house", "doctor", name="HOUSE^GREGORY"), {a}, {a}),
        "radiologist-granted-b": (ai.token("dr.wilson", "radiologist", name="WILSON^JAMES"), {b}, {b}),
        "patient-a": (ai.token("pat-a", "patient", patient_id="PAT-AI-A"), {a}, set()),
        "nurse": (ai.token("nurse.joy", "nurse"), set(), set()),
        "share-b": (share_b, {b}, set()),
    }
    for name, (token, visible, runnable) in callers.items():
        admin = token is None
        listed = ai.call("GET", "/neuronova/ai/jobs?limit=1000", token, admin=admin)
        assert listed.status_code == 200, (name, listed.text)
        assert {j["study"] for j in listed.json()} & {a, b} == visible, name
        for study, job in ((a, job_a), (b, job_b)):
            got = ai.call("GET", f"/neuronova/ai/jobs/{job['id']}", token, admin=admin)
            assert got.status_code == (200 if study in visible else 404), (name, study)
            only_study = ai.call("GET", f"/neuronova/ai/jobs?study={study}", token, admin=admin).json()
            assert bool(only_study) is (study in visible), (name, study)
            created = ai.call("POST", "/neuronova/ai/jobs", token, admin=admin,
                              json={"study": study, "model": "stroke_risk"})
            assert created.status_code == (200 if study in runnable else 403), (name, study, created.text)
            retried = ai.call("POST", f"/neuronova/ai/jobs/{job['id']}/retry", token, admin=admin)
            # a succeeded job cannot be retried (409); who may not see it gets 404, who may
            # see it but not run jobs gets 403
            expected = 409 if study in runnable else 403 if study in visible else 404
            assert retried.status_code == expected, (name, study, retried.text)
    assert ai.call("GET", "/neuronova/ai/jobs").status_code == 403  # no credentials: the gate says no
    assert ai.call("GET", "/neuronova/ai/jobs", "not-a-token").status_code == 403
    audit = ai.call("GET", f"/neuronova/audit?study={b}&decision=deny&limit=1000", admin=True).json()
    denied = [(row["user"], row["route"], row["event_type"]) for row in audit if row["route"] == "ai/jobs"]
    assert ("dr.house", "ai/jobs", "110113") in denied
    allowed = ai.call("GET", f"/neuronova/audit?study={b}&decision=allow&limit=1000", admin=True).json()
    assert any(row["route"] == "ai/jobs" and row["user"] == "dr.wilson" for row in allowed)


# name: (faults queued on the faulty service, model, final status, attempts, words in the errors)
SCENARIOS: dict[str, tuple[list[dict[str, Any]], str, str, int, list[str]]] = {
    "500-malformed-closed-then-ok": ([{"kind": "status", "status": 500}, {"kind": "malformed"}, {"kind": "close"}],
                                     FAULTY, "succeeded", 4, ["500", "not JSON", "could not reach"]),
    "timeout-then-ok": ([{"kind": "sleep", "seconds": READ_TIMEOUT + 1.5}], FAULTY, "succeeded", 2, ["timed out"]),
    "slow-answer": ([{"kind": "sleep", "seconds": READ_TIMEOUT / 2}], FAULTY, "succeeded", 1, []),
    "invalid-answer-then-ok": ([{"kind": "invalid"}], FAULTY, "succeeded", 2, ["risk_score"]),
    "retry-after": ([{"kind": "status", "status": 503, "retry_after": 2}], FAULTY, "succeeded", 2, ["503"]),
    "4xx": ([{"kind": "status", "status": 422, "body": '{"error": "series unusable"}'}], FAULTY, "failed", 1,
            ["422", "series unusable"]),
    "500-every-time": ([{"kind": "status", "status": 500, "times": 4}], FAULTY, "failed", 4,
                       ["gave up after 4 attempt(s)"]),
    "refused": ([], REFUSED, "failed", 4, ["could not reach", "gave up after 4 attempt(s)"]),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_fault_schedule(ai: AiWorld, name: str) -> None:
    faults, model, status, attempts, words = SCENARIOS[name]
    datasets = head(f"ai-fault-{name}", slices=3)
    study = str(datasets[0].StudyInstanceUID)
    ai.upload(datasets)
    assert ai.faulty.faults.pending() == []
    ai.faulty.faults.extend([Fault.from_json(f, max_sleep=10) for f in faults])
    before = ai.faulty.counters["inference_requests"]
    answer = ai.submit(study, model)
    assert answer.status_code == 201, answer.text
    job = ai.wait_job(answer.json()["id"], timeout=40)
    assert (job["status"], job["attempts"]) == (status, attempts), job
    assert ai.faulty.faults.pending() == []
    if model == FAULTY:
        assert ai.faulty.counters["inference_requests"] - before == attempts
    history = job["history"]
    assert [e["attempt"] for e in history] == list(range(1, attempts + 1))
    errors = " | ".join(e.get("detail", "") for e in history) + " | " + job["last_error"]
    for word in words:
        assert word in errors, (word, errors)
    # backoff: exponential with jitter below, never before the service's Retry-After
    for n, (event, following) in enumerate(itertools.pairwise(history)):
        assert event["event"] == "retry"
        nominal = BASE_DELAY * FACTOR**n
        wanted = 2.0 if name == "retry-after" else nominal * (1 - JITTER)
        assert wanted - 0.01 <= event["retry_in_seconds"] <= max(nominal, wanted) + 0.01, event
        next_start = epoch(following["time"]) - following.get("duration_seconds", 0)
        assert next_start - epoch(event["time"]) >= event["retry_in_seconds"] - 0.01, (event, following)
    if status == "succeeded":
        assert history[-1]["event"] == "succeeded" and job["result"]["objects"]
        if name == "slow-answer":
            assert job["result"]["inference_seconds"] >= READ_TIMEOUT / 2
    else:
        assert history[-1]["event"] == "failed" and job["result"] is None and job["finished_at"]
    if name == "4xx":
        # a failed job can be sent again on request; the fault is gone, so it succeeds
        retried = ai.call("POST", f"/neuronova/ai/jobs/{job['id']}/retry", admin=True)
        assert retried.status_code == 200 and retried.json()["status"] in ("queued", "running", "succeeded")
        done = ai.wait_job(job["id"])
        assert (done["status"], done["attempts"]) == ("succeeded", 1)
        assert [e["event"] for e in done["history"]] == ["failed", "requeued", "succeeded"]


def _stop_mid_job(ai: AiWorld, kill: bool) -> None:
    datasets = head(f"ai-restart-{'kill' if kill else 'term'}", slices=3)
    study = str(datasets[0].StudyInstanceUID)
    ai.upload(datasets)
    ai.faulty.faults.extend([Fault("sleep", seconds=6)])
    before = ai.faulty.counters["inference_requests"]
    answer = ai.submit(study, FAULTY)
    assert answer.status_code == 201, answer.text
    job_id = answer.json()["id"]
    ai.wait_job(job_id, ("running",), timeout=20)
    wait_for(lambda: ai.faulty.counters["inference_requests"] > before, 10, "the request to arrive")
    ai.restart(kill=kill)
    done = ai.wait_job(job_id, timeout=40)
    assert (done["status"], done["attempts"]) == ("succeeded", 1), done
    assert [e["event"] for e in done["history"]] == ["interrupted", "succeeded"]
    assert ai.faulty.counters["inference_requests"] - before == 2
    assert [j["id"] for j in ai.jobs(study, FAULTY)] == [job_id]
    # the results are in the study once
    descriptions = [s["MainDicomTags"].get("SeriesDescription", "") for s in ai.series_of(study)]
    assert descriptions.count(f"NeuroNova AI {FAULTY} report") == 1
    assert descriptions.count(f"NeuroNova AI {FAULTY} Hyperintensity") == 1
    instances = [i for s in ai.series_of(study) if s["MainDicomTags"].get("Modality") in ("SEG", "SR")
                 and FAULTY in s["MainDicomTags"].get("SeriesDescription", "") for i in s["Instances"]]
    assert len(instances) == 2


def test_orthanc_stopped_mid_job_completes_it_once_after_restart(ai: AiWorld) -> None:
    _stop_mid_job(ai, kill=False)


def test_orthanc_killed_mid_job_completes_it_once_after_restart(ai: AiWorld) -> None:
    _stop_mid_job(ai, kill=True)


def test_a_study_still_unstable_when_orthanc_died_gets_its_job_after_the_restart(ai: AiWorld) -> None:
    # Orthanc keeps unstable studies in memory only: after a restart it never reports them
    # stable. The plugin recorded the study when it arrived (NEW_STUDY) and evaluates it once
    # StableAge has passed after the restart.
    datasets = head("ai-unstable-at-crash", slices=3)
    study = str(datasets[0].StudyInstanceUID)
    ai.upload(datasets)
    time.sleep(0.5)  # well within StableAge (2 s): not stable yet
    assert ai.call("GET", f"/studies/{ai.study_id(study)}", admin=True).json()["IsStable"] is False
    ai.restart(kill=True)
    job = wait_for(lambda: (js := ai.jobs(study, "stroke_risk")) and js[0]["status"] in ("succeeded", "failed")
                   and js[0], 30, "the job of the study seen before the crash")
    assert (job["status"], job["trigger"], job["attempts"]) == ("succeeded", "auto", 1)
    changes = ai.call("GET", "/changes?limit=10000", admin=True).json()["Changes"]
    assert not any(c["ChangeType"] == "StableStudy" and c["ID"] == ai.study_id(study) for c in changes)


def test_without_inference_url_ai_is_disabled_not_an_error(tmp_path: Path) -> None:
    server = start_orthanc(tmp_path / "orthanc", env={
        "NEURONOVA_INFERENCE_URL": "", "NEURONOVA_ADMIN_PASSWORD": ADMIN_PASSWORD, "NEURONOVA_STABLE_AGE": "1",
    })
    try:
        health = requests.get(server.base + "/neuronova/health", timeout=10)
        assert health.status_code == 200 and health.json()["gate"] == "armed"
        assert health.json()["ai"]["enabled"] is False
        assert "NEURONOVA_INFERENCE_URL" in health.json()["ai"]["reason"]
        datasets = head("ai-disabled", slices=2)
        for ds in datasets:
            assert requests.post(server.base + "/instances", data=part10(ds), auth=server.admin, timeout=30).ok
        answer = requests.post(server.base + "/neuronova/ai/jobs", auth=server.admin, timeout=30,
                               json={"study": str(datasets[0].StudyInstanceUID), "model": "stroke_risk"})
        assert answer.status_code == 503 and "disabled" in answer.json()["error"]
        time.sleep(2.5)  # the study became stable: nothing happens
        assert requests.get(server.base + "/neuronova/ai/jobs", auth=server.admin, timeout=30).json() == []
    finally:
        server.stop()
