"""What an audit event holds, and the time formats of the trail."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

ALLOW, DENY = "allow", "deny"


@dataclass(frozen=True)
class AuditEvent:
    time: float
    user: str
    role: str
    ip: str
    method: str
    route: str
    uri: str
    study_uid: str
    decision: str
    reason: str
    event_type: str
    # The node that decided (NeuroNova.NodeName); "" lets the writer fill in its own node.
    node: str = ""

    def as_row(self) -> dict[str, Any]:
        """The fields by name: what ``dataclasses.asdict`` gives, without its deep copy (15 us
        an event, on the audit writer's thread, which shares the GIL with the requests)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def as_json(self) -> dict[str, Any]:
        row = self.as_row()
        row["time"] = iso_utc(self.time)
        return row


_FIELDS = tuple(f.name for f in fields(AuditEvent))


def iso_utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> float:
    """Accept epoch seconds or ISO 8601 (``Z`` or offset; naive means UTC)."""
    try:
        return float(text)
    except ValueError:
        pass
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
