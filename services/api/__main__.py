"""``python -m services.api`` (console script ``nova-grpc-api``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from services.api.app import start_api
from services.api.settings import ApiSettings
from services.common.service import main_for


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(
        ApiSettings,
        start_api,
        prog="nova-grpc-api",
        description="nova-grpc public API: CreateServer, GetServer, ListServers.",
        log_name=lambda _settings: "api",
        argv=argv,
    )


if __name__ == "__main__":
    sys.exit(main())
