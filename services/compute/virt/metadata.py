"""What the guest learns about itself from its config drive (``openstack/latest/meta_data.json``
and ``network_data.json``): a plain value of the virt driver port. Writing it onto a volume is
``configdrive.py``'s job (it runs xorriso), so the port does not import that module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ConfigDriveContent:
    uuid: str
    name: str
    hostname: str
    project_id: str
    availability_zone: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    key_name: str = ""
    key_data: str = ""
    # Base64 as the user sent it.
    user_data: str = ""
    admin_password: str = ""
    # openstack/latest/network_data.json (services/compute/virt/network_data.py)
    network_data: Mapping[str, Any] = field(default_factory=dict)

    def meta_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "uuid": self.uuid,
            "name": self.name,
            "hostname": self.hostname,
            "launch_index": 0,
            "project_id": self.project_id,
            "availability_zone": self.availability_zone or "nova",
            "meta": dict(self.metadata),
            "devices": [],
        }
        if self.key_name and self.key_data:
            data["public_keys"] = {self.key_name: self.key_data}
            data["keys"] = [{"name": self.key_name, "type": "ssh", "data": self.key_data}]
        if self.admin_password:
            data["admin_pass"] = self.admin_password
        return data
