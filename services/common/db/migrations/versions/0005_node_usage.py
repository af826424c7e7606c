"""Compute nodes carry their usage: what their allocations add up to, kept by every claim
and free in the same transaction, so that loading host states reads one row per host
instead of summing every allocation of the deployment on each scheduling pass.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

USAGE = ("used_vcpus", "used_memory_mb", "used_disk_gb", "used_instances")


def upgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        for column in USAGE:
            batch.add_column(sa.Column(column, sa.BigInteger(), nullable=False, server_default="0"))
    # Existing allocations, added up once.
    op.execute(
        """
        UPDATE compute_nodes SET
          used_vcpus = COALESCE((SELECT SUM(a.vcpus) FROM allocations a
                                 WHERE a.compute_node_id = compute_nodes.id), 0),
          used_memory_mb = COALESCE((SELECT SUM(a.memory_mb) FROM allocations a
                                     WHERE a.compute_node_id = compute_nodes.id), 0),
          used_disk_gb = COALESCE((SELECT SUM(a.disk_gb) FROM allocations a
                                   WHERE a.compute_node_id = compute_nodes.id), 0),
          used_instances = (SELECT COUNT(*) FROM allocations a
                            WHERE a.compute_node_id = compute_nodes.id)
        """
    )


def downgrade() -> None:
    with op.batch_alter_table("compute_nodes") as batch:
        for column in USAGE:
            batch.drop_column(column)
