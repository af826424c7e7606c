"""Networks, ports (IPAM: one row per address in use) and security groups.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "networks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cidr", sa.String(43), nullable=False),
        sa.Column("gateway", sa.String(39), nullable=True),
        sa.Column("dns_servers", sa.JSON(), nullable=False),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("is_default", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("segmentation_id", sa.Integer(), nullable=False),
        sa.Column("mtu", sa.Integer(), nullable=False, server_default="1500"),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_networks"),
        sa.UniqueConstraint("project_id", "name", name="uq_networks_project_id_name"),
        sa.UniqueConstraint("segmentation_id", name="uq_networks_segmentation_id"),
    )
    op.create_table(
        "ports",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("network_id", sa.String(36), nullable=False),
        sa.Column("device_index", sa.Integer(), nullable=False),
        sa.Column("mac", sa.String(17), nullable=False),
        sa.Column("fixed_ip", sa.String(39), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ports"),
        sa.ForeignKeyConstraint(
            ["network_id"], ["networks.id"], name="fk_ports_network_id_networks"
        ),
        sa.UniqueConstraint("network_id", "fixed_ip", name="uq_ports_network_id_fixed_ip"),
        sa.UniqueConstraint("mac", name="uq_ports_mac"),
    )
    op.create_index("ix_ports_instance_uuid", "ports", ["instance_uuid"])
    op.create_index("ix_ports_network_id", "ports", ["network_id"])
    op.create_table(
        "security_groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_groups"),
        sa.UniqueConstraint("project_id", "name", name="uq_security_groups_project_id_name"),
    )
    op.create_table(
        "security_group_rules",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("port_min", sa.Integer(), nullable=True),
        sa.Column("port_max", sa.Integer(), nullable=True),
        sa.Column("remote_cidr", sa.String(43), nullable=True),
        sa.Column("remote_group_id", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_security_group_rules"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["security_groups.id"],
            name="fk_security_group_rules_group_id_security_groups",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_security_group_rules_group_id", "security_group_rules", ["group_id"])
    op.create_index(
        "ix_security_group_rules_remote_group_id", "security_group_rules", ["remote_group_id"]
    )
    op.create_table(
        "instance_security_groups",
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.PrimaryKeyConstraint("instance_uuid", "group_id", name="pk_instance_security_groups"),
    )
    op.create_index(
        "ix_instance_security_groups_group_id", "instance_security_groups", ["group_id"]
    )


def downgrade() -> None:
    op.drop_table("instance_security_groups")
    op.drop_table("security_group_rules")
    op.drop_table("security_groups")
    op.drop_table("ports")
    op.drop_table("networks")
