"""The fleet server's one schema (SQLAlchemy Core), for SQLite and PostgreSQL alike.

Times are epoch seconds (floats); structured values (configs, heartbeat bodies,
definitions) are JSON text. Progress is never a stored counter: a stage's figures are
counted from ``stage_devices`` rows, each updated idempotently by the heartbeats that
report on it, so racing server processes can neither lose nor double-count a result.
Changes go through Alembic migrations (``migrations/``); ``tests/test_fleet_store.py``
checks that the migrated database matches these tables.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()
# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
Serial = BigInteger().with_variant(Integer(), "sqlite")

fleets = Table(
    "fleets", metadata,
    Column("name", String(63), primary_key=True),
    Column("description", String(800)),
    Column("role_arn", String(2048)),
    Column("output_config", Text, nullable=False),
    Column("iot_role_alias", String(2048)),
    Column("created", Float, nullable=False),
    Column("modified", Float, nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("name", String(63), primary_key=True),
    Column("fleet", String(63), nullable=False, index=True),
    Column("registration", String(16), nullable=False),
    Column("description", String(40)),
    Column("iot_thing", String(128)),
    Column("created", Float, nullable=False),
    Column("last_heartbeat", Float),
    Column("agent_version", String(64)),
    Column("models", Text),  # the latest heartbeat's Models (JSON)
)

access_keys = Table(
    "access_keys", metadata,
    Column("akid", String(128), primary_key=True),
    Column("secret", String(128), nullable=False),
    Column("token", Text),
    Column("expiration", Float),
    Column("device", String(63), index=True),
    Column("role", String(16), nullable=False, server_default="device"),
    Column("created", Float, nullable=False),
)

packaging_jobs = Table(
    "packaging_jobs", metadata,
    Column("name", String(63), primary_key=True),
    Column("compilation_job", String(63)),
    Column("model_name", String(63), nullable=False),
    Column("model_version", String(64), nullable=False),
    Column("role_arn", String(2048)),
    Column("output_config", Text),
    Column("s3_url", String(1024), nullable=False),
    Column("sha1", String(40)),
    Column("size", BigInteger),
    Column("status", String(16), nullable=False),
    Column("message", Text),
    Column("created", Float, nullable=False),
    Column("modified", Float, nullable=False),
)

plans = Table(
    "plans", metadata,
    Column("name", String(63), primary_key=True),
    Column("fleet", String(63), nullable=False),
    Column("model_configs", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("modified", Float, nullable=False),
)

stages = Table(
    "stages", metadata,
    Column("plan", String(63), ForeignKey("plans.name", ondelete="CASCADE"),
           primary_key=True),
    Column("name", String(63), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("selection", Text, nullable=False),
    Column("policy", String(32), nullable=False),
    Column("status", String(16), nullable=False),
    Column("deployment_name", String(63), nullable=False, unique=True),
    Column("definitions", Text),  # resolved when the stage starts
    Column("started", Float),
    Column("message", Text),
)

stage_devices = Table(
    "stage_devices", metadata,
    Column("plan", String(63), primary_key=True),
    Column("stage", String(63), primary_key=True),
    Column("device", String(63), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("message", Text),
    Column("started", Float),
    Column("finished", Float),
    Index("ix_stage_devices_device", "device"),
)

deployments = Table(
    "deployments", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("fleet", String(63)),
    Column("device", String(63)),
    Column("policy", String(32), nullable=False),
    Column("definitions", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created", Float, nullable=False),
    Index("ix_deployments_target", "device", "fleet"),
)

heartbeats = Table(
    "heartbeats", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("device", String(63), nullable=False),
    Column("fleet", String(63), nullable=False),
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),
    Column("access_key_id", String(128)),
    Index("ix_heartbeats_device", "device"),
)

deployment_results = Table(
    "deployment_results", metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("heartbeat", BigInteger),
    Column("device", String(63), nullable=False),
    Column("deployment", String(63)),
    Column("status", String(63)),
    Column("received", Float, nullable=False),
    Column("body", Text, nullable=False),
    Index("ix_results_device", "device"),
)

iot_things = Table(
    "iot_things", metadata,
    Column("thing", String(128), primary_key=True),
    Column("device", String(63)),
)

iot_attachments = Table(
    "iot_attachments", metadata,
    Column("thing", String(128), primary_key=True),
    Column("fingerprint", String(64), primary_key=True),
    Index("ix_iot_attachments_fingerprint", "fingerprint"),
)

settings = Table(
    "settings", metadata,
    Column("name", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)
