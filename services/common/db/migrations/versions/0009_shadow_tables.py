"""Shadow tables for archived servers (``nova-grpc-manage db archive-deleted``): one per table
a server owns rows in, with that table's columns, without defaults, foreign keys or unique
constraints, and an index on the column archive and purge join on.

The columns are read from the live tables as they are when this runs, so the shadows match
whatever revisions came before this one. A later revision that adds a column to one of these
tables must add it to its shadow too (the models derive the shadows, so the schema test
fails until it does).

Revision ID: 0009_shadow_tables
Revises: 0007_console
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_shadow_tables"
down_revision = "0007_console"
branch_labels = None
depends_on = None

# live table -> the columns its shadow indexes (as SHADOW_INDEXES in models.py)
SHADOWED = {
    "instances": ("uuid", "terminated_at"),
    "instance_actions": ("instance_uuid",),
    "instance_action_events": ("action_id",),
    "instance_faults": ("instance_uuid",),
    "instance_tags": ("instance_uuid",),
    "allocations": ("instance_uuid",),
    "server_group_members": ("instance_uuid",),
}


def upgrade() -> None:
    bind = op.get_bind()
    for name, indexed in SHADOWED.items():
        live = sa.Table(name, sa.MetaData(), autoload_with=bind)
        shadow = f"shadow_{name}"
        op.create_table(
            shadow,
            *(
                sa.Column(c.name, c.type, nullable=c.nullable, autoincrement=False)
                for c in live.columns
            ),
            sa.PrimaryKeyConstraint(*live.primary_key.columns.keys(), name=f"pk_{shadow}"),
        )
        for column in indexed:
            op.create_index(f"ix_{shadow}_{column}", shadow, [column])


def downgrade() -> None:
    for name in reversed(list(SHADOWED)):
        op.drop_table(f"shadow_{name}")
