"""What the gate's unit tests share: settings with one HS256 key and one admin, and tokens."""

from __future__ import annotations

import time
from typing import Any

import jwt

from neuronova.gate import settings as gate_settings
from neuronova.gate.passwords import hash_password

SECRET = "unit-test-secret-0123456789abcdefghijkl"
READING_MATCH = {"Attribute": "NameOfPhysiciansReadingStudy", "Claim": "name", "Relation": "reading"}
ORDERING_MATCH = {"Attribute": "ReferringPhysicianName", "Claim": "name", "Relation": "ordering"}


def gate_settings_for_tests(*matches: dict[str, str]) -> gate_settings.Settings:
    """Gate settings: HS256 tokens signed with SECRET, admin "admin" / "pw" (cheap scrypt)."""
    return gate_settings.parse({
        "Keys": [{"Kind": "secret", "Secret": SECRET, "Algorithms": ["HS256"]}],
        "SigningSecret": "s" * 40,
        "AdminUsers": {"admin": hash_password("pw", n=2**10)},
        "StudyAttributeMatches": list(matches),
    })


def bearer(role: str, **claims: Any) -> dict[str, str]:
    """An Authorization header with a token for ``role`` (``sub`` defaults to the role)."""
    payload = {"sub": claims.pop("sub", role), "exp": int(time.time()) + 60, "realm_access": {"roles": [role]},
               **claims}
    return {"authorization": "Bearer " + jwt.encode(payload, SECRET, algorithm="HS256")}
