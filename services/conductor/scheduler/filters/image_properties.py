"""ImagePropertiesFilter: the image's ``hw_architecture`` and ``img_hv_type`` suit the host.

An x86_64 host also runs i686 guests; architectures are compared after normalising their
spellings (amd64 = x86_64, i386/i486/i586 = i686)."""

from __future__ import annotations

from services.common.domain import HostState
from services.conductor.scheduler.request import RequestSpec

_ARCH_ALIASES = {"amd64": "x86_64", "x64": "x86_64", "i386": "i686", "i486": "i686",
                 "i586": "i686", "x86": "i686"}  # fmt: skip
_RUNS = {"x86_64": {"x86_64", "i686"}}


def canonical_arch(arch: str) -> str:
    lowered = arch.strip().lower()
    return _ARCH_ALIASES.get(lowered, lowered)


class ImagePropertiesFilter:
    name = "ImagePropertiesFilter"

    def passes(self, host: HostState, spec: RequestSpec) -> bool:
        wanted_arch = spec.image_properties.get("hw_architecture")
        if wanted_arch:
            host_arch = canonical_arch(host.extra.get("cpu_arch", ""))
            if canonical_arch(wanted_arch) not in _RUNS.get(host_arch, {host_arch}):
                return False
        wanted_hv = spec.image_properties.get("img_hv_type")
        if wanted_hv:
            return wanted_hv.strip().lower() == host.extra.get("hypervisor_type", "").lower()
        return True
