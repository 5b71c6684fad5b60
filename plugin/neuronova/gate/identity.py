"""Who is calling: the result of authentication."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .claims import claim_text

# Highest privilege first: a token that carries several roles acts with the first one listed.
ROLE_PRIORITY = ("admin", "radiologist", "doctor", "patient", "nurse", "lab")
IMAGE_ROLES = frozenset({"admin", "radiologist", "doctor", "patient"})


class Method(StrEnum):
    TOKEN = "token"  # noqa: S105 - bearer JWT from the identity provider (or scripts/mint-token)
    BASIC = "basic"  # admin basic auth
    SESSION = "session"  # admin session cookie from the login page
    SHARE = "share"  # plugin-signed share link


@dataclass(frozen=True)
class Identity:
    subject: str
    role: str  # one of ROLE_PRIORITY, "share", or "" (no known role: sees nothing)
    method: Method
    expires_at: float
    name: str = ""
    patient_id: str = ""
    share_study: str = ""  # for share links: the one study they open
    share_id: str = ""
    session_id: str = ""  # for admin sessions: the server-side session (gate/sessions.py)
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def claims_value(self, path: str) -> str:
        """A text claim by dotted path ("" when absent): used by attribute matches."""
        return claim_text(self.claims, path)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def pick_role(roles: object) -> str:
    """The effective role among the token's roles; unknown roles count as none."""
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list | tuple):
        return ""
    names = {r for r in roles if isinstance(r, str)}
    for role in ROLE_PRIORITY:
        if role in names:
            return role
    return ""
