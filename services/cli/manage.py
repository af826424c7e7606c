"""nova-grpc-manage: operator commands that act on the database directly (as nova-manage).

nova-grpc-manage db sync                      create or upgrade the schema
nova-grpc-manage db archive-deleted --before WHEN [--batch-size N] [--purge]
                 move servers deleted before WHEN (and their actions, events, faults, tags,
                 allocations, group membership) to the shadow tables; --purge deletes instead
nova-grpc-manage db purge (--before WHEN | --all) [--batch-size N]
                 delete archived servers from the shadow tables
                 WHEN: an ISO 8601 time (UTC unless it says) or an age: 90d, 12h, 30m
nova-grpc-manage pki create --dir D [--compute-host H ...]   a throwaway CA, a certificate per role
nova-grpc-manage pki issue --dir D --role compute --host H   one more (a new compute host)
nova-grpc-manage image register --name N --file F [--disk-format qcow2|raw|kernel]
                 [--initrd F] [--cmdline "..."] [--property k=v ...]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection

from services.common.db import archive, catalog, tokens
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.domain import DISK_FORMATS, Image, utcnow
from services.common.files import image_record
from services.common.identity import ServiceIdentity, ServiceRole
from services.common.pki import ROLES, create_pki, issue_certificate

DEFAULT_URL = "sqlite:///var/nova.sqlite"


def image_from_files(
    name: str,
    file: Path,
    *,
    disk_format: str,
    initrd: Path | None = None,
    cmdline: str = "",
    properties: dict[str, str] | None = None,
) -> Image:
    """An image record for local files (sha256 and size measured now)."""
    if disk_format not in DISK_FORMATS:
        raise ValueError(f"disk_format {disk_format!r}: use qcow2, raw or kernel")
    if not file.is_file():
        raise ValueError(f"file {file} does not exist")
    if disk_format == "kernel" and initrd is not None and not initrd.is_file():
        raise ValueError(f"initrd {initrd} does not exist")
    return image_record(
        name, file.resolve(), disk_format=disk_format,
        initrd=initrd.resolve() if initrd is not None else None, cmdline=cmdline,
        properties=properties or {},
    )  # fmt: skip


def _same_files(a: Image, b: Image) -> bool:
    keys = ("initrd_checksum", "kernel_cmdline")
    return (a.checksum, a.disk_format, *(a.properties.get(k) for k in keys)) == (
        b.checksum,
        b.disk_format,
        *(b.properties.get(k) for k in keys),
    )


def register_image(database_url: str, image: Image, *, replace: bool = False) -> Image:
    """Register ``image``; the same files under the same name again is a no-op (returns the
    existing record). Different files under a taken name need ``replace``, which retires the
    old record (instances built from it keep working)."""
    db = Database(database_url)
    try:
        with db.begin() as connection:
            existing = catalog.images_named(connection, image.name)
            for old in existing:
                if _same_files(old, image):
                    return old
            if existing and not replace:
                raise ValueError(
                    f"an image named {image.name!r} with other files exists; use --replace"
                )
            catalog.retire_images(connection, [old.id for old in existing])
            catalog.add_image(connection, image, utcnow())
            return image
    finally:
        db.close()


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d`` (or plain seconds)."""
    text = text.strip().lower()
    unit = _UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise ValueError(f"duration {text!r}: use e.g. 90s, 15m, 12h or 30d") from None
    if not 0 < value <= 10 * 365 * 86400:
        raise ValueError(f"duration {text!r}: must be positive and at most ten years")
    return timedelta(seconds=value)


def issue_token(
    database_url: str,
    project_id: str,
    *,
    admin: bool = False,
    reader: bool = False,
    description: str = "",
    expires_days: float | None = None,
    expires_in: timedelta | None = None,
) -> tuple[tokens.TokenRecord, str]:
    """A new bearer token for ``project_id``; the secret is returned once, stored hashed.
    ``reader`` makes a read-only token; ``expires_in`` (or ``expires_days``) ends it."""
    if not project_id or len(project_id) > 255:
        raise ValueError("project must be 1 to 255 characters")
    if admin and reader:
        raise ValueError("a token is admin or reader, not both")
    now = utcnow()
    if expires_in is None and expires_days:
        expires_in = timedelta(days=expires_days)
    expires = now + expires_in if expires_in else None
    roles = ["member", "admin"] if admin else ["reader"] if reader else ["member"]
    db = Database(database_url)
    try:
        with db.begin() as connection:
            return tokens.create_token(
                connection,
                project_id=project_id,
                roles=roles,
                description=description,
                now=now,
                expires_at=expires,
            )
    finally:
        db.close()


def token_is_valid(database_url: str, secret: str) -> bool:
    db = Database(database_url)
    try:
        with db.begin_read() as connection:
            record = tokens.find_by_secret(connection, secret)
        return record is not None and record.usable(utcnow())
    finally:
        db.close()


def _token_command(args: argparse.Namespace) -> int:
    if args.action == "create":
        record, secret = issue_token(
            args.database_url, args.project, admin=args.admin, reader=args.reader,
            description=args.description, expires_days=args.expires_days,
            expires_in=parse_duration(args.expires_in) if args.expires_in else None,
        )  # fmt: skip
        until = f", expires {record.expires_at:%Y-%m-%dT%H:%M:%SZ}" if record.expires_at else ""
        print(
            f"token {record.id} for project {record.project_id} ({','.join(record.roles)}{until}):"
        )
        print(secret)
        print("shown once: keep it (novactl --token or NOVACTL_TOKEN)", file=sys.stderr)
        return 0
    db = Database(args.database_url)
    try:
        if args.action == "list":
            with db.begin_read() as connection:
                for r in tokens.list_tokens(connection):
                    state = (
                        "revoked" if r.revoked_at else "expired" if not r.usable(utcnow())
                        else "active"
                    )  # fmt: skip
                    print(f"{r.id}  {r.project_id}  {','.join(r.roles)}  {state}  {r.description}")
            return 0
        with db.begin() as connection:
            revoked = tokens.revoke(connection, args.id, utcnow())
        print("revoked" if revoked else "no such active token")
        return 0 if revoked else 1
    finally:
        db.close()


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([dhm])$")
_AGE_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_when(text: str, *, now: datetime) -> datetime:
    """``--before``: an age (``90d``, ``12h``, ``30m``: that long before ``now``) or an ISO
    8601 time (UTC when it names no offset)."""
    age = _AGE.match(text.strip())
    if age is not None:
        return now - timedelta(**{_AGE_UNITS[age.group(2)]: float(age.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"--before {text!r}: give an ISO 8601 time or an age such as 90d, 12h or 30m"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def archive_deleted(
    database_url: str, *, before: datetime, batch_size: int = 1000, purge: bool = False
) -> archive.ArchiveCounts:
    """Archive (``purge``: delete) every server deleted before ``before``, ``batch_size``
    servers per transaction; rows moved per table."""
    return _in_batches(
        database_url,
        lambda c: archive.archive_batch(c, before=before, batch_size=batch_size, purge=purge),
    )


def purge_archived(
    database_url: str, *, before: datetime | None, batch_size: int = 1000
) -> archive.ArchiveCounts:
    """Delete archived servers (deleted before ``before``; None: all) from the shadow tables."""
    return _in_batches(
        database_url, lambda c: archive.purge_batch(c, before=before, batch_size=batch_size)
    )


def _in_batches(
    database_url: str, batch: Callable[[Connection], archive.ArchiveCounts]
) -> archive.ArchiveCounts:
    total: archive.ArchiveCounts = {}
    db = Database(database_url)
    try:
        while True:
            with db.begin() as connection:  # one short transaction per batch
                counts = batch(connection)
            if not counts:
                return total
            archive.add_counts(total, counts)
    finally:
        db.close()


def _db_command(args: argparse.Namespace) -> int:
    if args.action == "sync":
        upgrade(args.database_url)
        print("database schema is current")
        return 0
    if args.batch_size < 1:
        raise ValueError("--batch-size must be >= 1")
    before: datetime | None
    if args.action == "archive-deleted":
        before = parse_when(args.before, now=utcnow())
        counts = archive_deleted(
            args.database_url, before=before, batch_size=args.batch_size, purge=args.purge
        )
        verb = "purged" if args.purge else "archived"
    else:
        before = None if args.all else parse_when(args.before, now=utcnow())
        counts = purge_archived(args.database_url, before=before, batch_size=args.batch_size)
        verb = "purged from the shadow tables"
    servers = counts.get("instances", 0)
    shown = before.isoformat(timespec="seconds") if before is not None else "any time"
    print(f"{verb} {servers} servers deleted before {shown}")
    for table in sorted(counts):
        print(f"  {table}: {counts[table]}")
    return 0


def _pki_command(args: argparse.Namespace) -> int:
    try:
        if args.action == "create":
            create_pki(
                args.dir, days=args.days, extra_names=tuple(args.name),
                compute_hosts=tuple(args.compute_host),
            )  # fmt: skip
            print(f"CA and api/conductor/compute certificates written to {args.dir}")
            return 0
        identity = ServiceIdentity(ServiceRole(args.role), args.host)
        written = issue_certificate(args.dir, identity, days=args.days)
    except (ValueError, OSError) as exc:
        print(f"nova-grpc-manage: {exc}", file=sys.stderr)
        return 2
    print(f"{identity.uri}: {written}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nova-grpc-manage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("NOVA_GRPC_DATABASE_URL", DEFAULT_URL),
        help="SQLAlchemy URL [env NOVA_GRPC_DATABASE_URL; default %(default)s]",
    )
    groups = parser.add_subparsers(dest="group", required=True)
    db = groups.add_parser("db").add_subparsers(dest="action", required=True)
    db.add_parser("sync", help="create or upgrade the schema")
    archive_parser = db.add_parser(
        "archive-deleted", help="move servers deleted before --before to the shadow tables"
    )
    archive_parser.add_argument(
        "--before", required=True, help="ISO 8601 time or an age (90d, 12h, 30m)"
    )
    archive_parser.add_argument(
        "--purge", action="store_true", help="delete the rows instead of keeping them in shadow"
    )
    purge = db.add_parser("purge", help="delete archived servers from the shadow tables")
    which = purge.add_mutually_exclusive_group(required=True)
    which.add_argument("--before", help="ISO 8601 time or an age (90d, 12h, 30m)")
    which.add_argument("--all", action="store_true", help="everything archived")
    for parser_ in (archive_parser, purge):
        parser_.add_argument(
            "--batch-size", type=int, default=1000, help="servers per transaction (default 1000)"
        )
    image = groups.add_parser("image").add_subparsers(dest="action", required=True)
    register = image.add_parser("register", help="register a local file as an image")
    register.add_argument("--name", required=True)
    register.add_argument("--file", required=True, type=Path, help="disk, or kernel")
    register.add_argument("--disk-format", default="qcow2", choices=DISK_FORMATS)
    register.add_argument("--initrd", type=Path, help="initrd (kernel images)")
    register.add_argument("--cmdline", default="", help="kernel command line (kernel images)")
    register.add_argument("--property", action="append", default=[], metavar="KEY=VALUE")
    register.add_argument(
        "--replace", action="store_true", help="retire an image of that name with other files"
    )
    token = groups.add_parser("token").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a bearer token (printed once)")
    create.add_argument("--project", required=True)
    create.add_argument("--admin", action="store_true", help="grant the admin role")
    create.add_argument("--description", default="")
    create.add_argument("--reader", action="store_true", help="read-only (Get, List, Watch)")
    create.add_argument("--expires-in", metavar="DURATION", help="e.g. 90s, 15m, 12h, 30d")
    create.add_argument("--expires-days", type=float, default=None, help="(as --expires-in Nd)")
    token.add_parser("list", help="list tokens (never their secrets)")
    pki = groups.add_parser("pki").add_subparsers(dest="action", required=True)
    pki_create = pki.add_parser("create", help="a throwaway CA and a certificate per role")
    pki_create.add_argument("--dir", required=True, type=Path)
    pki_create.add_argument("--days", type=int, default=365)
    pki_create.add_argument("--name", action="append", default=[], help="extra DNS name")
    pki_create.add_argument(
        "--compute-host", action="append", default=[], metavar="HOST",
        help="a compute host to issue compute-HOST.pem for (repeat; the first is also "
        "compute.pem; default: this machine's name). Each compute may act for its host only.",
    )  # fmt: skip
    pki_issue = pki.add_parser("issue", help="one more certificate from the CA in --dir")
    pki_issue.add_argument("--dir", required=True, type=Path)
    pki_issue.add_argument("--role", required=True, choices=ROLES)
    pki_issue.add_argument("--host", default="", help="the compute host (role compute)")
    pki_issue.add_argument("--days", type=int, default=365)
    revoke = token.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.group == "pki":
        return _pki_command(args)
    if args.group in ("db", "token"):
        try:
            return _db_command(args) if args.group == "db" else _token_command(args)
        except ValueError as exc:
            print(f"nova-grpc-manage: {exc}", file=sys.stderr)
            return 2
    try:
        properties = dict(p.split("=", 1) for p in args.property)
        image = image_from_files(
            args.name, args.file, disk_format=args.disk_format, initrd=args.initrd,
            cmdline=args.cmdline, properties=properties,
        )  # fmt: skip
    except ValueError as exc:
        print(f"nova-grpc-manage: {exc}", file=sys.stderr)
        return 2
    register_image(args.database_url, image)
    print(
        f"registered image {image.name} ({image.id}), {image.disk_format}, sha256 {image.checksum}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
