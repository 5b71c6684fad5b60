"""Reading claims by dotted path (``realm_access.roles``) from decoded tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    node: Any = claims
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def claim_text(claims: Mapping[str, Any], path: str) -> str:
    value = claim_at(claims, path)
    return value if isinstance(value, str) else ""
