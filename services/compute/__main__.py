"""``python -m services.compute`` (console script ``nova-grpc-compute``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.service import main_for
from services.compute.app import start_compute
from services.compute.settings import ComputeSettings


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        ComputeSettings,
        start_compute,
        prog="nova-grpc-compute",
        description="nova-grpc compute: builds and runs instances on one libvirt host.",
        log_name=lambda settings: f"compute[{settings.host}]",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
