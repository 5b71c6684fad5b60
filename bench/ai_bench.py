"""AI jobs: time from STABLE_STUDY to the inference request reaching the service, and jobs
per second against an instant stub service; or, with ``--seed``, STABLE_STUDY -> SEG + SR
stored against the reference service answering the seed's contract.

    .venv/bin/python -m bench.ai_bench [--studies 10] [--jobs 40] [--workers 2]
    .venv/bin/python -m bench.ai_bench --seed [--delay 0[,2,...]] [--studies 10] [--slices 10] [--concurrency 1]

``--seed``: the real reference service (``ai_client.reference_service``, ``answer="seed"``:
only job_id, risk_score, segmentation, confidence, processing_time) pulls each series through
the gate with its share token, analyses it, and waits ``--delay`` more seconds (a stand-in
for a real model's time). Studies are sent ``--concurrency`` at a time; for each, the bench
reports STABLE_STUDY (the job's ``triggered_at``) -> SEG + SR stored in Orthanc (the job's
``finished_at``, written after both ``POST /instances`` answered), and the inference itself
(request sent -> answer received, the job's ``inference_seconds``), as p50 and p99, against
the seed's target: inference answered in under 30 s at p99.

One Orthanc + NeuroNova (scripts/run, StableAge 1 s) and a stub inference service on
loopback that answers at once (a valid contract answer, optionally with one mask per frame)
and records when each request arrives.

Latency: studies are sent one at a time (POST /instances); for each, the stub's arrival time
minus the moment the plugin received STABLE_STUDY from Orthanc (the job's ``triggered_at``,
taken in the change callback; Orthanc's /changes log keeps only whole seconds, shown as a
cross-check). Split into intake (event -> job stored), queue (stored -> claimed by a worker)
and dispatch (claimed -> request at the service: Orthanc look-ups, share token, HTTP).

Throughput: ``--jobs`` studies are stored first (no rule matches them), then as many jobs
are submitted at once through the API; jobs/s = jobs / (first submit -> last finished).
Each job builds and stores a TID 1500 SR (and a SEG with masks) into Orthanc.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import numpy as np
import requests

from ai_client.png import mask_to_base64
from ai_client.testing import mr_head_series, part10
from bench.common import ROOT  # noqa: F401 - puts the repository and plugin/ on sys.path
from tests.support.orthanc_server import OrthancServer, start_orthanc


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.arrivals: dict[str, float] = {}  # study UID + model -> epoch seconds
        self.frames: dict[str, list[tuple[str, int, int]]] = {}  # series UID -> (SOP UID, rows, columns)
        self.masks = False
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        arrived = time.time()
        stub = cast(Stub, self.server)
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with stub.lock:
            stub.arrivals[request["study_instance_uid"] + "/" + request["model_type"]] = arrived
        answer: dict[str, Any] = {"job_id": uuid.uuid4().hex, "risk_score": 0.42, "confidence": 0.9,
                                  "processing_time": 0.0, "model_type": request["model_type"]}
        if stub.masks:
            frames = []
            for sop, rows, columns in stub.frames.get(request["series_instance_uid"], []):
                mask = np.zeros((rows, columns), dtype=np.bool_)
                mask[rows // 4: rows // 2, columns // 4: columns // 2] = True
                frames.append({"sop_instance_uid": sop, "frame_number": 1, "mask": mask_to_base64(mask)})
            answer["segmentation_frames"] = frames
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def upload(server: OrthancServer, study_description: str, seed: str, slices: int, stub: Stub) -> str:
    datasets = mr_head_series(seed=seed, slices=slices)
    for ds in datasets:
        ds.StudyDescription = study_description
        requests.post(server.base + "/instances", data=part10(ds), auth=server.admin, timeout=30).raise_for_status()
    stub.frames[str(datasets[0].SeriesInstanceUID)] = [(str(d.SOPInstanceUID), int(d.Rows), int(d.Columns))
                                                       for d in datasets]
    return str(datasets[0].StudyInstanceUID)


def wait_jobs(server: OrthancServer, study: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = requests.get(f"{server.base}/neuronova/ai/jobs?study={study}", auth=server.admin, timeout=30).json()
        if jobs and jobs[0]["status"] in ("succeeded", "failed"):
            return dict(jobs[0])
        time.sleep(0.05)
    raise RuntimeError(f"no finished job for {study}")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def latency(server: OrthancServer, stub: Stub, count: int) -> None:
    total, intake, queue, dispatch, changes_gap = [], [], [], [], []
    for _ in range(count):
        study = upload(server, "latency bench", f"bench-latency-{uuid.uuid4()}", 5, stub)
        job = wait_jobs(server, study)
        if job["status"] != "succeeded":
            raise RuntimeError(job)
        arrived = stub.arrivals[f"{study}/stroke_risk"]
        triggered, created, started = (epoch(job[k]) for k in ("triggered_at", "created_at", "started_at"))
        total.append((arrived - triggered) * 1000)
        intake.append((created - triggered) * 1000)
        queue.append((started - created) * 1000)
        dispatch.append((arrived - started) * 1000)
        found = requests.post(server.base + "/tools/lookup", data=study, auth=server.admin, timeout=10).json()
        study_id = found[0]["ID"]
        changes = requests.get(server.base + "/changes?limit=10000", auth=server.admin, timeout=10).json()["Changes"]
        stable = [c for c in changes if c["ChangeType"] == "StableStudy" and c["ID"] == study_id]
        when = datetime.strptime(stable[0]["Date"], "%Y%m%dT%H%M%S").timestamp()  # Orthanc: local time, whole s
        changes_gap.append(triggered - when)
    print(f"STABLE_STUDY -> inference request at the service ({count} studies, one at a time, 5 slices each)")
    print(f"  total     median {statistics.median(total):7.1f} ms   p90 {pct(total, 0.9):7.1f} ms   "
          f"max {max(total):7.1f} ms")
    for name, values in (("intake", intake), ("queue", queue), ("dispatch", dispatch)):
        print(f"  {name:9} median {statistics.median(values):7.1f} ms   max {max(values):7.1f} ms")
    print(f"  cross-check: triggered_at - /changes Date of StableStudy in [{min(changes_gap):.2f}, "
          f"{max(changes_gap):.2f}] s (the log keeps whole seconds)")


def throughput(server: OrthancServer, stub: Stub, count: int, masks: bool) -> None:
    stub.masks = masks
    studies = [upload(server, "throughput bench", f"bench-tp-{uuid.uuid4()}", 5, stub) for _ in range(count)]
    time.sleep(1.5)  # let them become stable (no rule matches them: nothing runs)
    started = time.time()
    ids = []
    for study in studies:
        answer = requests.post(server.base + "/neuronova/ai/jobs", auth=server.admin, timeout=30,
                               json={"study": study, "model": "stroke_risk"})
        answer.raise_for_status()
        ids.append(answer.json()["id"])
    submitted = time.time() - started
    jobs = [wait_jobs(server, study, timeout=300) for study in studies]
    failed = [j for j in jobs if j["status"] != "succeeded"]
    if failed:
        raise RuntimeError(failed[0])
    span = max(epoch(j["finished_at"]) for j in jobs) - started
    per_job = [epoch(j["finished_at"]) - epoch(j["started_at"]) for j in jobs]
    inference = [j["result"]["inference_seconds"] for j in jobs]
    stored = "SEG + SR" if masks else "SR"
    print(f"  {stored:8} {count / span:6.1f} jobs/s   ({count} jobs in {span:.2f} s; submitting took {submitted:.2f} s;"
          f" per job median {statistics.median(per_job) * 1000:.0f} ms, of which the service call "
          f"{statistics.median(inference) * 1000:.0f} ms)")


def seed_latency(server: OrthancServer, count: int, slices: int, concurrency: int, delay: float) -> dict[str, Any]:
    """STABLE_STUDY -> stored SEG + SR, and the inference time, against the seed mode."""
    stored, inference, failures = [], [], []
    sent = 0
    while sent < count:
        batch = min(concurrency, count - sent)
        studies = []
        for _ in range(batch):
            datasets = mr_head_series(seed=f"bench-seed-{uuid.uuid4()}", slices=slices)
            for ds in datasets:
                ds.StudyDescription = "seed bench"
                requests.post(server.base + "/instances", data=part10(ds), auth=server.admin,
                              timeout=30).raise_for_status()
            studies.append(str(datasets[0].StudyInstanceUID))
        for study in studies:
            job = wait_jobs(server, study, timeout=120 + 2 * delay * count)
            kinds = sorted(o["type"] for o in (job.get("result") or {}).get("objects", []))
            if job["status"] != "succeeded" or kinds != ["SEG", "SR"]:
                failures.append(job)
                continue
            stored.append(epoch(job["finished_at"]) - epoch(job["triggered_at"]))
            inference.append(float(job["result"]["inference_seconds"]))
        sent += batch
    if failures:
        raise RuntimeError(f"{len(failures)} job(s) without SEG + SR: {failures[0]}")
    figures = {
        "studies": count, "slices": slices, "concurrency": concurrency, "delay_seconds": delay,
        "stored_p50_s": round(pct(stored, 0.5), 3), "stored_p99_s": round(pct(stored, 0.99), 3),
        "inference_p50_s": round(pct(inference, 0.5), 3), "inference_p99_s": round(pct(inference, 0.99), 3),
    }
    figures["seed_target_met"] = figures["inference_p99_s"] < 30.0
    print(f"STABLE_STUDY -> SEG + SR stored, seed contract ({count} studies of {slices} slices, {concurrency} at a "
          f"time, service delay {delay:g} s)")
    print(f"  stored     p50 {figures['stored_p50_s'] * 1000:8.0f} ms   p99 {figures['stored_p99_s'] * 1000:8.0f} ms"
          f"   max {max(stored) * 1000:8.0f} ms")
    print(f"  inference  p50 {figures['inference_p50_s'] * 1000:8.0f} ms   p99 "
          f"{figures['inference_p99_s'] * 1000:8.0f} ms   (seed target: p99 < 30 s: "
          f"{'met' if figures['seed_target_met'] else 'NOT met'})")
    print(json.dumps(figures))
    return figures


def run_seed(args: argparse.Namespace) -> None:
    from ai_client.reference_service import ReferenceServer, ServiceConfig

    delays = [float(d) for d in str(args.delay).split(",") if d.strip()]
    service = ReferenceServer("127.0.0.1", 0, ServiceConfig(max_concurrent=max(args.workers, args.concurrency),
                                                            answer="seed", delay_seconds=delays[0]))
    service.start_background()
    folder = Path(tempfile.mkdtemp(prefix="ai-bench-seed-"))
    server = start_orthanc(folder, env={"NEURONOVA_INFERENCE_URL": service.url, "NEURONOVA_STABLE_AGE": "1",
                                        "NEURONOVA_ADMIN_PASSWORD": "bench-admin-password"},
                           overlay={"NeuroNova": {"Ai": {
                               "Workers": args.workers, "PollSeconds": 1,
                               "Rules": [{"Name": "bench", "ModalitiesInStudy": ["MR"], "StudyDescription": "^seed",
                                          "Models": ["stroke_risk"]}]}}})
    try:
        print(f"NeuroNova AI bench: Orthanc + plugin, reference service in seed mode, {args.workers} workers, "
              f"StableAge 1 s, loopback\n")
        for n, delay in enumerate(delays):
            if n:
                print()
            service.config = dataclasses.replace(service.config, delay_seconds=delay)  # read per request
            seed_latency(server, args.studies, args.slices, args.concurrency, delay)
    finally:
        server.stop()
        service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10, help="studies for the latency part")
    parser.add_argument("--jobs", type=int, default=40, help="jobs per throughput run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", action="store_true", help="STABLE_STUDY -> SEG + SR against the seed mode")
    parser.add_argument("--delay", default="0", help="--seed: seconds the service adds per analysis; a comma "
                        "list (0,2) runs each in turn on the same Orthanc")
    parser.add_argument("--slices", type=int, default=10, help="--seed: slices per study (at most 10)")
    parser.add_argument("--concurrency", type=int, default=1, help="--seed: studies sent at once")
    args = parser.parse_args()
    if args.seed:
        run_seed(args)
        return
    stub = Stub()
    folder = Path(tempfile.mkdtemp(prefix="ai-bench-"))
    server = start_orthanc(folder, env={"NEURONOVA_INFERENCE_URL": stub.url, "NEURONOVA_STABLE_AGE": "1",
                                        "NEURONOVA_ADMIN_PASSWORD": "bench-admin-password"},
                           overlay={"NeuroNova": {"Ai": {
                               "Workers": args.workers, "PollSeconds": 1,
                               "Rules": [{"Name": "bench", "ModalitiesInStudy": ["MR"], "StudyDescription": "^latency",
                                          "Models": ["stroke_risk"]}]}}})
    try:
        print(f"NeuroNova AI bench: Orthanc + plugin, instant stub service, {args.workers} workers, "
              f"StableAge 1 s, loopback\n")
        latency(server, stub, args.studies)
        print(f"\nThroughput, {args.jobs} jobs submitted at once through POST /neuronova/ai/jobs")
        throughput(server, stub, args.jobs, masks=False)
        throughput(server, stub, args.jobs, masks=True)
    finally:
        server.stop()
        stub.shutdown()


if __name__ == "__main__":
    main()
