"""The public API's data: server details, tags, keypairs, quotas, idempotent creates.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("description", sa.String(255), nullable=True))
        batch.add_column(sa.Column("key_name", sa.String(255), nullable=True))
        batch.add_column(sa.Column("key_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("user_data", sa.Text(), nullable=True))
        batch.add_column(sa.Column("security_groups", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("networks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("block_devices", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("config_drive", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_instances_updated_at", "instances", ["updated_at"])
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("owner", sa.String(255), nullable=True))
    op.create_table(
        "instance_tags",
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("tag", sa.String(60), nullable=False),
        sa.PrimaryKeyConstraint("instance_uuid", "tag", name="pk_instance_tags"),
    )
    op.create_index("ix_instance_tags_tag", "instance_tags", ["tag"])
    op.create_table(
        "keypairs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_keypairs"),
        sa.UniqueConstraint("project_id", "name", name="uq_keypairs_project_id_name"),
    )
    op.create_table(
        "quotas",
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("resource", sa.String(32), nullable=False),
        sa.Column("hard_limit", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "resource", name="pk_quotas"),
    )
    op.create_table(
        "create_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("client_request_id", sa.String(255), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("server_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_create_requests"),
        sa.UniqueConstraint(
            "project_id",
            "client_request_id",
            name="uq_create_requests_project_id_client_request_id",
        ),
    )


def downgrade() -> None:
    op.drop_table("create_requests")
    op.drop_table("quotas")
    op.drop_table("keypairs")
    op.drop_table("instance_tags")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("owner")
    op.drop_index("ix_instances_updated_at", "instances")
    with op.batch_alter_table("instances") as batch:
        for column in ("config_drive", "block_devices", "networks", "security_groups",
                       "user_data", "key_data", "key_name", "description"):  # fmt: skip
            batch.drop_column(column)
