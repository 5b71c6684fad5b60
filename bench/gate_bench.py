"""Gate overhead: WADO-RS frames, study metadata and QIDO, bare Orthanc versus NeuroNova.

    .venv/bin/python -m bench.gate_bench [--seconds 8] [--slices 20] [--clients 4,32]
                                         [--allow-threads on|off] [--workloads QIDO,...] [--json]

Both servers run on this machine with the same study (512x512 16-bit CT slices built
from a real CT with fresh UIDs); wrk drives 4 (then 32) concurrent clients on loopback. The
gated server is called as a doctor with a grant (token verified once, then cached).
``--allow-threads off`` starts the gated Orthanc with ``"Python": {"AllowThreads": false}``
(the GIL held during SDK calls, as orthanc-python before 4.3 did). With ``--json`` the last
line is one JSON object: added p99 and throughput ratios per "<workload> <clients>".

"frames, any TS" lets each server choose (NeuroNova answers HTJ2K, bare Orthanc the stored
syntax); "frames, uncomp." asks both for Explicit VR Little Endian, like for like.
"""

from __future__ import annotations

import argparse
import json
import time

import jwt
import requests

from bench.common import start_bare, start_gated, wrk
from tests.support.dicom_factory import make_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--clients", default="4,32", help="comma-separated numbers of concurrent clients")
    parser.add_argument("--allow-threads", choices=("on", "off"), default="on")
    parser.add_argument("--run-script", default="scripts/run", help="scripts/run of another checkout, to compare")
    parser.add_argument("--workloads", default="", help="comma-separated names to run (default: all), e.g. QIDO")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    client_counts = [int(c) for c in args.clients.split(",")]
    secret = "bench-secret-0123456789abcdefghijklmnopq"
    study = make_study("693_UNCR.dcm", patient_id="BENCH", patient_name="BENCH^CT", slices=args.slices)
    bare = start_bare()
    gated, _ = start_gated({"NEURONOVA_JWT_SECRET": secret, "NEURONOVA_ADMIN_PASSWORD": "bench-admin"},
                           overlay={"Python": {"AllowThreads": args.allow_threads == "on"}}, script=args.run_script)
    added_p99: dict[str, float] = {}
    throughput: dict[str, float] = {}
    try:
        for blob in study.files():
            requests.post(bare.base + "/instances", data=blob, timeout=30).raise_for_status()
            requests.post(gated.base + "/instances", data=blob, auth=gated.admin, timeout=30).raise_for_status()
        requests.post(f"{gated.base}/neuronova/studies/{study.study_uid}/grants", auth=gated.admin,
                      json={"subject": "dr.bench", "relation": "reading"}, timeout=10).raise_for_status()
        token = jwt.encode({"sub": "dr.bench", "exp": int(time.time()) + 3600,
                            "realm_access": {"roles": ["doctor"]}}, secret, algorithm="HS256")
        s, se = study.study_uid, study.series_uids[0]
        frames = [f"/dicom-web/studies/{s}/series/{se}/instances/{i}/frames/1" for i in study.sop_uids]
        workloads = {
            "frames, any TS": frames,
            "frames, uncomp.": frames,
            "study metadata": [f"/dicom-web/studies/{s}/metadata"],
            "QIDO studies": ["/dicom-web/studies?PatientID=BENCH"],
        }
        chosen = [w.strip().lower() for w in args.workloads.split(",") if w.strip()]
        workloads = {k: v for k, v in workloads.items() if not chosen or any(c in k.lower() for c in chosen)}
        accept = {
            "frames, any TS": {"Accept": 'multipart/related; type="application/octet-stream"; transfer-syntax=*'},
            "frames, uncomp.": {"Accept": 'multipart/related; type="application/octet-stream"; '
                                          "transfer-syntax=1.2.840.10008.1.2.1"},
        }
        print(f"{args.slices} slices 512x512x16, {args.seconds} s per run (wrk), AllowThreads {args.allow_threads}\n")
        for clients in client_counts:
            print(f"-- {clients} concurrent clients")
            for name, paths in workloads.items():
                headers = accept.get(name, {})
                gated_headers = {**headers, "Authorization": f"Bearer {token}"}
                wrk(bare.base, paths, headers, seconds=2, connections=clients)  # warm both
                wrk(gated.base, paths, gated_headers, seconds=2, connections=clients)
                b = wrk(bare.base, paths, headers, seconds=args.seconds, connections=clients)
                g = wrk(gated.base, paths, gated_headers, seconds=args.seconds, connections=clients)
                ratio = g.requests_per_second / b.requests_per_second
                key = f"{name} {clients}"
                added_p99[key], throughput[key] = round(g.p99_ms - b.p99_ms, 2), round(ratio, 2)
                print(f"{name:16} bare   {b.line()}   non-2xx {b.errors}")
                print(f"{name:16} gated  {g.line()}   non-2xx {g.errors}")
                print(f"{name:16} ratio  {ratio:9.2f}x throughput   "
                      f"added p99 {g.p99_ms - b.p99_ms:+.2f} ms   added p50 {g.p50_ms - b.p50_ms:+.2f} ms\n")
    finally:
        bare.stop()
        gated.stop()
    if args.json:
        print(json.dumps({"added_p99_ms": added_p99, "throughput_vs_bare": throughput,
                          "allow_threads": args.allow_threads == "on"}))


if __name__ == "__main__":
    main()
