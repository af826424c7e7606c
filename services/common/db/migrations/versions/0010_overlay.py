"""Networks across hosts and to the outside: each compute node's underlay address (the VXLAN
endpoint its peers send to), admin-defined external networks, a project network's connection
to one, and the external addresses taken from their pools (floating addresses of projects
and each host's gateway address per connected network).

Revision ID: 0010_overlay
Revises: 0009_shadow_tables
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_overlay"
down_revision = "0009_shadow_tables"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        batch.add_column(sa.Column("underlay_address", sa.String(39), nullable=True))
    op.create_table(
        "external_networks",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("cidr", sa.String(43), nullable=False),
        sa.Column("gateway", sa.String(39), nullable=True),
        sa.Column("allocation_pools", sa.JSON(), nullable=False),
        sa.Column("bridge", sa.String(15), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_external_networks"),
        sa.UniqueConstraint("name", name="uq_external_networks_name"),
    )
    with op.batch_alter_table("networks") as batch:
        batch.add_column(sa.Column("external_network_id", sa.String(36), nullable=True))
        batch.create_foreign_key(
            "fk_networks_external_network_id_external_networks",
            "external_networks",
            ["external_network_id"],
            ["id"],
        )
    op.create_table(
        "external_addresses",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("external_network_id", sa.String(36), nullable=False),
        sa.Column("address", sa.String(39), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=True),
        sa.Column("port_id", sa.String(36), nullable=True),
        sa.Column("network_id", sa.String(36), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_external_addresses"),
        sa.ForeignKeyConstraint(
            ["external_network_id"],
            ["external_networks.id"],
            name="fk_external_addresses_external_network_id_external_networks",
        ),
        sa.ForeignKeyConstraint(
            ["port_id"],
            ["ports.id"],
            name="fk_external_addresses_port_id_ports",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["network_id"],
            ["networks.id"],
            name="fk_external_addresses_network_id_networks",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "external_network_id",
            "address",
            name="uq_external_addresses_external_network_id_address",
        ),
        sa.UniqueConstraint("port_id", name="uq_external_addresses_port_id"),
    )
    op.create_index("ix_external_addresses_project_id", "external_addresses", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_external_addresses_project_id", "external_addresses")
    op.drop_table("external_addresses")
    with op.batch_alter_table("networks") as batch:
        batch.drop_constraint(
            "fk_networks_external_network_id_external_networks", type_="foreignkey"
        )
        batch.drop_column("external_network_id")
    op.drop_table("external_networks")
    with op.batch_alter_table("compute_nodes") as batch:
        batch.drop_column("underlay_address")
