"""``python -m services.common.db`` (console script ``nova-grpc-migrate``): upgrade the schema."""

from __future__ import annotations

import argparse
import os
import sys

from services.common.db.migrate import current_revision, head_revision, upgrade

DEFAULT_URL = "sqlite:///var/nova.sqlite"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nova-grpc-migrate", description="Create or upgrade the nova-grpc database schema."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("NOVA_GRPC_DATABASE_URL", DEFAULT_URL),
        help="SQLAlchemy URL [env NOVA_GRPC_DATABASE_URL; default %(default)s]",
    )
    parser.add_argument("--revision", default="head", help="target revision (default: head)")
    parser.add_argument("--check", action="store_true", help="exit 1 unless at the head revision")
    args = parser.parse_args(argv)
    if args.check:
        current = current_revision(args.database_url)
        head = head_revision()
        print(f"current {current}, head {head}")
        return 0 if current == head else 1
    upgrade(args.database_url, args.revision)
    print(f"database at revision {current_revision(args.database_url)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
