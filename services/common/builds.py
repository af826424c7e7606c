"""What the conductor sends compute for one build: the instance plus what it needs to spawn."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.domain import Image, Instance


@dataclass(frozen=True, slots=True)
class BuildRequest:
    instance: Instance
    image: Image
    attempt: int = 1
    request_id: str = ""
    # One NIC per entry ("auto": the host's default network); empty: no NIC.
    networks: tuple[str, ...] = ()

    @property
    def uuid(self) -> str:
        return self.instance.uuid
