"""``python -m services.conductor`` (console script ``nova-grpc-conductor``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.common.service import main_for
from services.conductor.app import start_conductor
from services.conductor.settings import ConductorSettings


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        ConductorSettings,
        start_conductor,
        prog="nova-grpc-conductor",
        description="nova-grpc conductor: schedules instances and drives their builds.",
        log_name=lambda _settings: "conductor",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
