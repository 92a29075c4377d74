"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-12-03 07:58:56.520209
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "access_keys",
        sa.Column("akid", sa.String(length=128), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("token", sa.Text(), nullable=True),
        sa.Column("expiration", sa.Float(), nullable=True),
        sa.Column("device", sa.String(length=63), nullable=True),
        sa.Column("role", sa.String(length=16), server_default="device", nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("akid"),
    )
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_keys_device"), ["device"], unique=False)

    op.create_table(
        "deployment_results",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("heartbeat", sa.BigInteger(), nullable=True),
        sa.Column("device", sa.String(length=63), nullable=False),
        sa.Column("deployment", sa.String(length=63), nullable=True),
        sa.Column("status", sa.String(length=63), nullable=True),
        sa.Column("received", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("deployment_results", schema=None) as batch_op:
        batch_op.create_index("ix_results_device", ["device"], unique=False)

    op.create_table(
        "deployments",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("fleet", sa.String(length=63), nullable=True),
        sa.Column("device", sa.String(length=63), nullable=True),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("definitions", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.create_index("ix_deployments_target", ["device", "fleet"], unique=False)

    op.create_table(
        "devices",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("fleet", sa.String(length=63), nullable=False),
        sa.Column("registration", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=40), nullable=True),
        sa.Column("iot_thing", sa.String(length=128), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("last_heartbeat", sa.Float(), nullable=True),
        sa.Column("agent_version", sa.String(length=64), nullable=True),
        sa.Column("models", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_devices_fleet"), ["fleet"], unique=False)

    op.create_table(
        "fleets",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.String(length=800), nullable=True),
        sa.Column("role_arn", sa.String(length=2048), nullable=True),
        sa.Column("output_config", sa.Text(), nullable=False),
        sa.Column("iot_role_alias", sa.String(length=2048), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("modified", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "heartbeats",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("device", sa.String(length=63), nullable=False),
        sa.Column("fleet", sa.String(length=63), nullable=False),
        sa.Column("received", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("access_key_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.create_index("ix_heartbeats_device", ["device"], unique=False)

    op.create_table(
        "iot_attachments",
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("thing", "fingerprint"),
    )
    with op.batch_alter_table("iot_attachments", schema=None) as batch_op:
        batch_op.create_index("ix_iot_attachments_fingerprint", ["fingerprint"], unique=False)

    op.create_table(
        "iot_things",
        sa.Column("thing", sa.String(length=128), nullable=False),
        sa.Column("device", sa.String(length=63), nullable=True),
        sa.PrimaryKeyConstraint("thing"),
    )
    op.create_table(
        "packaging_jobs",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("compilation_job", sa.String(length=63), nullable=True),
        sa.Column("model_name", sa.String(length=63), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("role_arn", sa.String(length=2048), nullable=True),
        sa.Column("output_config", sa.Text(), nullable=True),
        sa.Column("s3_url", sa.String(length=1024), nullable=False),
        sa.Column("sha1", sa.String(length=40), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("modified", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "plans",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("fleet", sa.String(length=63), nullable=False),
        sa.Column("model_configs", sa.Text(), nullable=False),
        sa.Column("created", sa.Float(), nullable=False),
        sa.Column("modified", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "settings",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "stage_devices",
        sa.Column("plan", sa.String(length=63), nullable=False),
        sa.Column("stage", sa.String(length=63), nullable=False),
        sa.Column("device", sa.String(length=63), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("started", sa.Float(), nullable=True),
        sa.Column("finished", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("plan", "stage", "device"),
    )
    with op.batch_alter_table("stage_devices", schema=None) as batch_op:
        batch_op.create_index("ix_stage_devices_device", ["device"], unique=False)

    op.create_table(
        "stages",
        sa.Column("plan", sa.String(length=63), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("selection", sa.Text(), nullable=False),
        sa.Column("policy", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("deployment_name", sa.String(length=63), nullable=False),
        sa.Column("definitions", sa.Text(), nullable=True),
        sa.Column("started", sa.Float(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["plan"], ["plans.name"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("plan", "name"),
        sa.UniqueConstraint("deployment_name"),
    )


def downgrade():
    op.drop_table("stages")
    with op.batch_alter_table("stage_devices", schema=None) as batch_op:
        batch_op.drop_index("ix_stage_devices_device")

    op.drop_table("stage_devices")
    op.drop_table("settings")
    op.drop_table("plans")
    op.drop_table("packaging_jobs")
    op.drop_table("iot_things")
    with op.batch_alter_table("iot_attachments", schema=None) as batch_op:
        batch_op.drop_index("ix_iot_attachments_fingerprint")

    op.drop_table("iot_attachments")
    with op.batch_alter_table("heartbeats", schema=None) as batch_op:
        batch_op.drop_index("ix_heartbeats_device")

    op.drop_table("heartbeats")
    op.drop_table("fleets")
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_devices_fleet"))

    op.drop_table("devices")
    with op.batch_alter_table("deployments", schema=None) as batch_op:
        batch_op.drop_index("ix_deployments_target")

    op.drop_table("deployments")
    with op.batch_alter_table("deployment_results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_device")

    op.drop_table("deployment_results")
    with op.batch_alter_table("access_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_keys_device"))

    op.drop_table("access_keys")
