"""Print a JWT that an instance started by scripts/run (same data folder) accepts.

The key is NEURONOVA_JWT_SECRET, or the one scripts/run generated in the data folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import jwt

ROLES = ("admin", "doctor", "radiologist", "patient", "nurse", "lab")


def secret(data_dir: Path) -> str:
    if os.environ.get("NEURONOVA_JWT_SECRET"):
        return os.environ["NEURONOVA_JWT_SECRET"]
    path = data_dir / "secrets" / "jwt-secret"
    if not path.exists():
        sys.exit(f"mint-token: no NEURONOVA_JWT_SECRET and no {path}; start scripts/run once first")
    return path.read_text().strip()


def main() -> None:
    parser = argparse.ArgumentParser(prog="mint-token", description=__doc__)
    parser.add_argument("--sub", required=True, help="subject (user id)")
    parser.add_argument("--role", required=True, choices=ROLES)
    parser.add_argument("--patient-id", default="", help="PatientID a patient may see")
    parser.add_argument("--name", default="", help='DICOM person name, e.g. "SMITH^JOHN"')
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (default 3600)")
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[2]
    data_dir = Path(os.environ.get("NEURONOVA_DATA_DIR") or root / "var")
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": args.sub, "preferred_username": args.sub, "iat": now, "nbf": now, "exp": now + args.ttl,
        "realm_access": {"roles": [args.role]},
    }
    if args.name:
        claims["name"] = args.name
    if args.patient_id:
        claims["patient_id"] = args.patient_id
    if os.environ.get("NEURONOVA_JWT_ISSUER"):
        claims["iss"] = os.environ["NEURONOVA_JWT_ISSUER"]
    if os.environ.get("NEURONOVA_JWT_AUDIENCE"):
        claims["aud"] = os.environ["NEURONOVA_JWT_AUDIENCE"]
    print(jwt.encode(claims, secret(data_dir), algorithm="HS256"))


if __name__ == "__main__":
    main()
