"""``python -m ai_client.reference_service --host 127.0.0.1 --port 8900``"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from types import FrameType

from .faults import FaultError, parse_faults
from .inference import FetchOptions
from .server import ReferenceServer, ServiceConfig


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ai_client.reference_service",
        description="NeuroNova reference inference service (integration reference, NOT a clinical model).",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8900, help="0 picks a free port (printed on start)")
    p.add_argument("--max-concurrent", type=int, default=2, help="analyses at once; more get 503")
    p.add_argument(
        "--api-key",
        default=os.environ.get("NEURONOVA_REFERENCE_API_KEY"),
        help="require 'Authorization: Bearer KEY' on /inference and /control (env NEURONOVA_REFERENCE_API_KEY)",
    )
    p.add_argument("--dicomweb-connect-timeout", type=float, default=5.0)
    p.add_argument("--dicomweb-read-timeout", type=float, default=120.0)
    p.add_argument("--max-voxels", type=int, default=FetchOptions().max_voxels)
    p.add_argument(
        "--enable-fault-control",
        action="store_true",
        help="expose GET/POST/DELETE /control/faults (tests only)",
    )
    p.add_argument(
        "--faults",
        help="faults for the next /inference requests: a JSON list or @file, "
        'e.g. \'[{"kind": "status", "status": 500}]\'',
    )
    p.add_argument("--max-fault-sleep", type=float, default=30.0)
    p.add_argument("--answer", choices=("full", "seed"), default="full",
                   help="seed: answer only the seed's job_id, risk_score, segmentation (the mask of the "
                   "instance named by instance_id), confidence, processing_time")
    p.add_argument("--delay", type=float, default=0.0,
                   help="seconds each analysis takes on top of its own time (a stand-in for a real model)")
    p.add_argument("--quiet", action="store_true", help="log warnings only")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    faults = []
    if args.faults:
        text = args.faults
        if text.startswith("@"):
            with open(text[1:], encoding="utf-8") as f:
                text = f.read()
        try:
            faults = parse_faults(json.loads(text), max_sleep=args.max_fault_sleep)
        except (ValueError, FaultError) as exc:
            print(f"--faults: {exc}", file=sys.stderr)
            return 2
    config = ServiceConfig(
        fetch_options=FetchOptions(
            connect_timeout=args.dicomweb_connect_timeout,
            read_timeout=args.dicomweb_read_timeout,
            max_voxels=args.max_voxels,
        ),
        max_concurrent=args.max_concurrent,
        api_key=args.api_key or None,
        enable_fault_control=args.enable_fault_control,
        max_fault_sleep=args.max_fault_sleep,
        answer=args.answer,
        delay_seconds=args.delay,
    )
    server = ReferenceServer(args.host, args.port, config, faults=faults)
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server.start_background()
    # one parseable line for scripts and tests (the port matters with --port 0)
    print(f"NeuroNova reference inference service listening on {server.url}", flush=True)
    print("NOT a clinical model: a reference for integration only.", file=sys.stderr, flush=True)
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
