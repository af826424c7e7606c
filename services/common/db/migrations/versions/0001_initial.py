"""Initial schema: flavors, images, compute nodes, instances, allocations, faults; seed data.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Nova's classic default flavors, so that a new user can create a server at once.
SEED_FLAVORS = [
    ("1", "m1.tiny", 1, 512, 1),
    ("2", "m1.small", 1, 2048, 20),
    ("3", "m1.medium", 2, 4096, 40),
    ("4", "m1.large", 4, 8192, 80),
    ("5", "m1.xlarge", 8, 16384, 160),
]
# The project's analogue of CirrOS. The record exists from the start; the file behind it is
# built by `make guest-image` for real hypervisors (libvirt's test driver needs no disk).
SEED_IMAGE_ID = "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"
SEED_IMAGE_NAME = "nova-tiny"


def _timestamps() -> list[sa.Column[datetime]]:
    return [sa.Column("created_at", sa.DateTime(), nullable=False)]


def upgrade() -> None:
    flavors = op.create_table(
        "flavors",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_flavors"),
        sa.UniqueConstraint("name", name="uq_flavors_name"),
    )
    images = op.create_table(
        "images",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("disk_format", sa.String(32), nullable=False),
        sa.Column("container_format", sa.String(32), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(128), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("properties", sa.JSON(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_images"),
    )
    op.create_index("ix_images_name", "images", ["name"])
    op.create_table(
        "compute_nodes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("hypervisor_hostname", sa.String(255), nullable=False),
        sa.Column("rpc_address", sa.String(255), nullable=False),
        sa.Column("hypervisor_type", sa.String(32), nullable=False),
        sa.Column("cpu_arch", sa.String(32), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.BigInteger(), nullable=False),
        sa.Column("local_gb", sa.BigInteger(), nullable=False),
        sa.Column("cpu_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("ram_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("disk_allocation_ratio", sa.Float(), nullable=False),
        sa.Column("availability_zone", sa.String(255), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(255), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("last_heartbeat_at", sa.DateTime(), nullable=False),
        *_timestamps(),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_compute_nodes"),
        sa.UniqueConstraint("host", name="uq_compute_nodes_host"),
    )
    op.create_table(
        "instances",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uuid", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(255), nullable=False),
        sa.Column("project_id", sa.String(255), nullable=False),
        sa.Column("flavor_id", sa.String(36), nullable=False),
        sa.Column("flavor_name", sa.String(255), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("root_gb", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.String(36), nullable=False),
        sa.Column("reservation_id", sa.String(64), nullable=False),
        sa.Column("vm_state", sa.String(32), nullable=False),
        sa.Column("task_state", sa.String(32), nullable=True),
        sa.Column("power_state", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("node", sa.String(255), nullable=True),
        sa.Column("server_metadata", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        *_timestamps(),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.Column("launched_at", sa.DateTime(), nullable=True),
        sa.Column("terminated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_instances"),
        sa.UniqueConstraint("uuid", name="uq_instances_uuid"),
    )
    op.create_index("ix_instances_reservation_id", "instances", ["reservation_id"])
    op.create_index("ix_instances_host", "instances", ["host"])
    op.create_index("ix_instances_project_id_created_at", "instances", ["project_id", "created_at"])
    op.create_index("ix_instances_vm_state_task_state", "instances", ["vm_state", "task_state"])
    op.create_table(
        "allocations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("compute_node_id", sa.Integer(), nullable=False),
        sa.Column("vcpus", sa.Integer(), nullable=False),
        sa.Column("memory_mb", sa.Integer(), nullable=False),
        sa.Column("disk_gb", sa.Integer(), nullable=False),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["compute_node_id"],
            ["compute_nodes.id"],
            name="fk_allocations_compute_node_id_compute_nodes",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_allocations"),
        sa.UniqueConstraint("instance_uuid", name="uq_allocations_instance_uuid"),
    )
    op.create_index("ix_allocations_compute_node_id", "allocations", ["compute_node_id"])
    op.create_table(
        "instance_faults",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("instance_uuid", sa.String(36), nullable=False),
        sa.Column("code", sa.Integer(), nullable=False),
        sa.Column("message", sa.String(255), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("host", sa.String(255), nullable=True),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_instance_faults"),
    )
    op.create_index("ix_instance_faults_instance_uuid", "instance_faults", ["instance_uuid"])

    now = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        flavors,
        [
            {
                "id": fid,
                "name": name,
                "vcpus": vcpus,
                "memory_mb": ram,
                "root_gb": disk,
                "is_public": True,
                "created_at": now,
            }
            for fid, name, vcpus, ram, disk in SEED_FLAVORS
        ],
    )
    op.bulk_insert(
        images,
        [
            {
                "id": SEED_IMAGE_ID,
                "name": SEED_IMAGE_NAME,
                "disk_format": "raw",
                "container_format": "bare",
                "location": "",
                "checksum": "",
                "size_bytes": 0,
                "status": "active",
                "properties": {"hw_architecture": "x86_64"},
                "created_at": now,
            }
        ],
    )


def downgrade() -> None:
    for table in ("instance_faults", "allocations", "instances", "compute_nodes", "images"):
        op.drop_table(table)
    op.drop_table("flavors")
