"""Audit trail: one event per decision on a study and per denial anywhere, one trail for the
cluster (each event names the node that wrote it).

- ``events``: what an event holds, and its time formats;
- ``settings``: ``NeuroNova.Audit`` (retention, fail-closed, queue);
- ``writer``: the bounded queue and the one writer thread that inserts in batches;
- ``retention``: purging old events by age and count, a bounded chunk at a time;
- ``queries``: reading the trail back (``/neuronova/audit``).
"""

from .events import ALLOW, DENY, AuditEvent, iso_utc, parse_time
from .queries import as_json_lines, query
from .settings import DEFAULT_AUDIT, AuditSettings, parse_settings
from .writer import AuditWriter

__all__ = ["ALLOW", "DEFAULT_AUDIT", "DENY", "AuditEvent", "AuditSettings", "AuditWriter", "as_json_lines",
           "iso_utc", "parse_settings", "parse_time", "query"]
