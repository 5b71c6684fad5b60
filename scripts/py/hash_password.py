"""Print the scrypt hash of a password (stdin or argument) for Gate.AdminUsers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugin"))

from neuronova.gate.passwords import hash_password

if __name__ == "__main__":
    password = sys.argv[1] if len(sys.argv) > 1 else sys.stdin.readline().rstrip("\n")
    if not password:
        sys.exit("hash-password: empty password")
    print(hash_password(password))
