"""Tables of the plugin store."""

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
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
    Column("created_at", Float, nullable=False),
    Column("created_by", String(255), nullable=False),
)

shares = Table(
    "shares",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("created_by", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Float, nullable=False),  # UTC epoch seconds
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
    Index("ix_audit_time", "time"),
    Index("ix_audit_user", "user"),
    Index("ix_audit_study", "study_uid"),
)

htj2k_renditions = Table(
    "htj2k_renditions",
    metadata,
    Column("instance_id", String(64), primary_key=True),  # Orthanc identifier
    Column("status", String(16), nullable=False),  # done | failed | skipped
    Column("original_bytes", Integer, nullable=False),
    Column("rendition_bytes", Integer, nullable=False),
    Column("frames_index", LargeBinary, nullable=True),
    Column("error", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

ai_jobs = Table(
    "ai_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("study_uid", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("content_key", String(128), nullable=False, unique=True),  # idempotency
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("last_error", Text, nullable=False),
    Column("result", Text, nullable=False),  # JSON
    Index("ix_ai_jobs_study", "study_uid"),
    Index("ix_ai_jobs_status", "status", "next_attempt_at"),
)
