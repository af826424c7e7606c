"""The one place a BuildSpec is made, from the instance and image rows the conductor read."""

from __future__ import annotations

from services.common.builds import BuildImage, BuildSpec
from services.common.domain import Image, Instance

# Admin passwords of recent casts, kept in memory only (never stored). A compute that
# reschedules a build hands its password back with the event (as Nova's does); these are the
# fallback for a build whose compute died with it (handed back by its restart, without the
# password) when this conductor took the cast. The oldest go first.
PASSWORDS_KEPT = 100_000


class RecentPasswords:
    """The admin passwords of the casts this conductor took, by instance uuid, bounded."""

    def __init__(self, *, keep: int = PASSWORDS_KEPT) -> None:
        self._keep = keep
        self._passwords: dict[str, str] = {}  # insertion-ordered: oldest first

    def remember(self, uuids: tuple[str, ...], password: str) -> None:
        if not password:
            return
        for uuid in uuids:
            self._passwords[uuid] = password
        while len(self._passwords) > self._keep:
            self._passwords.pop(next(iter(self._passwords)))

    def get(self, uuid: str) -> str:
        return self._passwords.get(uuid, "")

    def __len__(self) -> int:
        return len(self._passwords)


def build_spec(
    instance: Instance,
    image: Image,
    *,
    request_id: str = "",
    passwords: RecentPasswords | None = None,
) -> BuildSpec:
    """The build of ``instance``: its first placement, a move to an alternate and a resend
    of a placed build all describe it the same way."""
    return BuildSpec(
        uuid=instance.uuid,
        instance_id=instance.id or 0,
        display_name=instance.display_name,
        project_id=instance.project_id,
        flavor=instance.flavor,
        image=BuildImage(
            id=image.id,
            name=image.name,
            disk_format=image.disk_format,
            location=image.location,
            checksum=image.checksum,
            size_bytes=image.size_bytes,
            properties=dict(image.properties),
        ),
        created_at=instance.created_at,
        request_id=request_id or instance.request_id,
        metadata=dict(instance.metadata),
        networks=instance.networks,
        ports=instance.ports,
        address_sets=instance.address_sets,
        ephemeral_gb=instance.ephemeral_gb,
        config_drive=instance.config_drive,
        availability_zone=instance.availability_zone or "",
        key_name=instance.key_name or "",
        key_data=instance.key_data or "",
        user_data=instance.user_data or "",
        admin_password=passwords.get(instance.uuid) if passwords is not None else "",
    )
