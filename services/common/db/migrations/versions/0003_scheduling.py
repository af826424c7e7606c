"""Scheduling: request specs, server groups, build-failure counts, instance actions.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instances") as batch:
        batch.add_column(sa.Column("availability_zone", sa.String(255), nullable=True))
        batch.add_column(sa.Column("request_spec", sa.JSON(), nullable=True))
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(
            sa.Column("failed_builds", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "server_groups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("policy", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_server_groups"),
        sa.UniqueConstraint("uuid", name="uq_server_groups_uuid"),
    )
    op.create_index("ix_server_groups_project_id", "server_groups", ["project_id"])
    op.create_table(
        "server_group_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_uuid", sa.String(36), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_server_group_members"),
        sa.UniqueConstraint("instance_uuid", name="uq_server_group_members_instance_uuid"),
    )
    op.create_index("ix_server_group_members_group_uuid", "server_group_members", ["group_uuid"])
    op.create_table(
        "instance_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.Column("message", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instance_actions"),
    )
    op.create_index("ix_instance_actions_instance_uuid", "instance_actions", ["instance_uuid"])
    op.create_table(
        "instance_action_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(64), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("start_time", sa.DateTime(), nullable=False),
        sa.Column("finish_time", sa.DateTime(), nullable=True),
        sa.Column("result", sa.String(16), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["instance_actions.id"],
            name="fk_instance_action_events_action_id_instance_actions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_instance_action_events"),
    )
    op.create_index("ix_instance_action_events_action_id", "instance_action_events", ["action_id"])


def downgrade() -> None:
    op.drop_table("instance_action_events")
    op.drop_table("instance_actions")
    op.drop_table("server_group_members")
    op.drop_table("server_groups")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("failed_builds")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("request_spec")
        batch.drop_column("availability_zone")
