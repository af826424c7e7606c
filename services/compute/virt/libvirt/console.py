"""The console port on libvirt: each guest's serial console log, and (interactive) its pty
serial device through virDomainOpenConsole."""

from __future__ import annotations

from pathlib import Path

from services.common.errors import NotFound, WrongState
from services.compute.virt.images import InstanceStorage
from services.compute.virt.libvirt.host import LibvirtHost

TEST_DRIVER_HAS_NO_CONSOLE = (
    "this server runs on libvirt's test hypervisor (virt_type test), which runs no guest: "
    "there is no serial console to read or attach to"
)


class LibvirtConsoles:
    def __init__(self, host: LibvirtHost, storage: InstanceStorage, *, virt_type: str) -> None:
        self._host = host
        self._storage = storage
        self._virt_type = virt_type

    def _check(self, uuid: str) -> None:
        if self._virt_type == "test":
            raise WrongState(TEST_DRIVER_HAS_NO_CONSOLE)
        if self._host.state(uuid) is None:
            raise NotFound("instance", uuid, field="instance_uuid")

    def console_log(self, uuid: str) -> Path:
        self._check(uuid)
        return self._storage.directory(uuid) / "console.log"
