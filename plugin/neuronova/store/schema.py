"""Tables of the plugin store.

Times are ``Double`` (epoch seconds): MySQL/MariaDB's FLOAT is single precision, which would
round today's epoch to about two minutes.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    Double,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

grants = Table(
    "grants",
    metadata,
    Column("study_uid", String(64), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("relation", String(16), primary_key=True),
    Column("created_at", Double, nullable=False),
    Column("created_by", String(255), nullable=False),
)

shares = Table(
    "shares",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Double, nullable=False),  # UTC epoch seconds
    Column("user", String(255), nullable=False),
    Column("role", String(32), nullable=False),
    Column("ip", String(64), nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(64), nullable=False),
    Column("uri", Text, nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("decision", String(8), nullable=False),  # allow | deny
    Column("reason", Text, nullable=False),
    Column("event_type", String(8), nullable=False),  # DICOM PS3.15 event ID (DCM code)
    Column("node", String(64), nullable=False, server_default=""),  # NeuroNova.NodeName of the writer
    Index("ix_audit_time", "time"),
    Index("ix_audit_user", "user"),
    Index("ix_audit_study", "study_uid"),
)

htj2k_renditions = Table(
    "htj2k_renditions",
    metadata,
    Column("instance_id", String(64), primary_key=True),  # Orthanc identifier
    Column("sop_uid", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # done | failed | skipped
    Column("transfer_syntax", String(64), nullable=False),  # of the original
    Column("original_bytes", BigInteger, nullable=False),  # decoded pixel bytes
    Column("rendition_bytes", BigInteger, nullable=False),  # codestream bytes
    Column("frames_index", Text, nullable=False),  # JSON [[offset, length], ...] in the rendition file
    Column("encode_seconds", Double, nullable=False),
    Column("error", Text, nullable=False),
    Column("updated_at", Double, nullable=False),
    Index("ix_htj2k_sop", "sop_uid"),
    Index("ix_htj2k_status", "status"),
)

# Which node owns the rendition of an instance still to be encoded (htj2k/claims.py): the
# owner renews its lease; an expired lease (its node died) is taken over by another node.
htj2k_claims = Table(
    "htj2k_claims",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("node", String(255), nullable=False),
    Column("lease_until", Double, nullable=False),
    Index("ix_htj2k_claims_lease", "lease_until"),
)

ai_jobs = Table(
    "ai_jobs",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("study_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),  # the series analysed
    Column("patient_id", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("content_key", String(160), nullable=False, unique=True),  # idempotency: model + study content
    Column("trigger", String(16), nullable=False),  # auto | manual
    Column("rule", String(64), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("status", String(16), nullable=False),  # queued | running | succeeded | failed
    Column("attempts", Integer, nullable=False),
    Column("triggered_at", Double, nullable=False),  # STABLE_STUDY seen, or the API request
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("started_at", Double, nullable=True),  # first attempt
    Column("finished_at", Double, nullable=True),
    Column("lease_owner", String(80), nullable=False),  # "<node>/<attempt token>" while running
    Column("lease_until", Double, nullable=False),
    Column("last_error", Text, nullable=False),
    Column("result", Text, nullable=False),  # JSON
    Index("ix_ai_jobs_study", "study_uid"),
    Index("ix_ai_jobs_status", "status", "next_attempt_at"),
)

# What happened to each job, one row per finished attempt or administrative event (insert-only).
ai_job_events = Table(
    "ai_job_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(32), nullable=False),
    Column("time", Double, nullable=False),
    Column("attempt", Integer, nullable=False),  # 0 for events outside an attempt
    Column("event", String(16), nullable=False),  # succeeded | retry | failed | interrupted | requeued
    Column("duration", Double, nullable=True),  # seconds the attempt took
    Column("retry_in", Double, nullable=True),  # backoff chosen after a transient failure
    Column("detail", Text, nullable=False),  # error, or who asked
    Index("ix_ai_job_events_job", "job_id", "id"),
)

# Studies Orthanc reported (NEW_STUDY / NEW_SERIES) that have not been evaluated against the
# rules yet: if Orthanc stops before they become stable, they are evaluated after the restart.
ai_pending = Table(
    "ai_pending",
    metadata,
    Column("study_id", String(64), primary_key=True),  # Orthanc identifier
    Column("seen_at", Double, nullable=False),
)

# When each node last stored an instance of a study (NEW_INSTANCE; ai/arrivals in jobs.py).
# Orthanc's STABLE_STUDY is per node: it fires on a node StableAge after *that node's* last
# instance of the study. A study whose instances come through several nodes is stable for the
# cluster only when no node has stored one for StableAge: the newest last_arrival here says so.
ai_arrivals = Table(
    "ai_arrivals",
    metadata,
    Column("study_id", String(64), primary_key=True),  # Orthanc identifier (the same on every node)
    Column("node", String(64), primary_key=True),  # NeuroNova.NodeName of the receiving node
    Column("last_arrival", Double, nullable=False),
)

# Instances that arrived with a StudyInstanceUID already filed under another PatientID
# (gate/collisions.py). They are stored as Orthanc received them; while a row is
# "quarantined" its study is hidden from every non-admin answer.
quarantine = Table(
    "quarantine",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("sop_uid", String(64), nullable=False),
    Column("series_uid", String(64), nullable=False),
    Column("study_uid", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),  # of the arriving instance
    Column("existing_patient_ids", Text, nullable=False),  # JSON list: whom the study belonged to
    Column("origin", String(32), nullable=False),  # DICOM_PROTOCOL | REST_API | PLUGIN | ...
    Column("received_at", Double, nullable=False),
    Column("status", String(16), nullable=False),  # quarantined | released | deleted
    Column("resolved_by", String(255), nullable=False),
    Column("resolved_at", Double, nullable=True),
    Index("ix_quarantine_study", "study_uid"),
    Index("ix_quarantine_status", "status"),
)

# Admin sessions of the login page (gate/sessions.py): the cookie carries the id, signed;
# logout marks the row revoked, which every node honours.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user", String(255), nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
    Column("revoked_at", Double, nullable=True),
    Index("ix_sessions_expires", "expires_at"),
)

# One counter per kind of shared plugin state ("grants", "shares", "sessions"): a change bumps
# its counter in the same transaction, and every node polls this small table to know when to
# reload its in-memory copy (store/versions.py).
state_versions = Table(
    "state_versions",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# Which (study, subject) pairs each change of the "grants" counter touched (seq = the counter's
# value after the change, written in its transaction): a node re-reads only those pairs, not the
# whole grants table. The last GRANT_CHANGES_KEPT rows are kept (gate/grants.py).
grant_changes = Table(
    "grant_changes",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("study_uid", String(64), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("time", Double, nullable=False),
)

# StudyInstanceUID -> Orthanc study identifier, for the order of permitted-study searches
# (gate/study_ids.py): written by the node that receives a study (NEW_STUDY), removed when the
# study is deleted, backfilled once for the studies stored before the table existed. The
# identifier is the key: the same StudyInstanceUID under two PatientIDs (a collision,
# gate/collisions.py) is two studies for Orthanc, two rows here.
study_ids = Table(
    "study_ids",
    metadata,
    Column("orthanc_id", String(64), primary_key=True),  # SHA-1 of PatientID|StudyInstanceUID
    Column("study_uid", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Index("ix_study_ids_uid", "study_uid", "orthanc_id"),
)

# Progress of that backfill, one row ("studies"): the next position in Orthanc's /studies list
# (``since``) and when it finished (NULL while it has not). Shared: one node's finished
# backfill is every node's.
study_ids_backfill = Table(
    "study_ids_backfill",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("since", BigInteger, nullable=False),
    Column("finished_at", Double, nullable=True),
)
