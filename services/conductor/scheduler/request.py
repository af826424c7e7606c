"""What the scheduler is asked to place: one instance's needs."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.domain import Resources


@dataclass(frozen=True, slots=True)
class RequestSpec:
    instance_uuid: str
    project_id: str
    resources: Resources
