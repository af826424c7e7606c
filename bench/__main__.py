"""``make bench``: start the three services as processes and measure the create path.

Prints a table and writes bench/results/latest.json. Each figure carries its conditions.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any

from bench.compute_builds import run_compute_builds
from bench.console import run_console
from bench.e2e import run_e2e
from bench.fairness import run_fairness
from bench.floating import run_floating
from bench.host_networks import run_host_networks
from bench.networking import run_networking
from bench.real_guest import run_real_guest
from bench.scale_out import run_scale_out
from bench.scheduler import run_scheduler
from bench.targets import judge
from bench.tls_cost import run_tls_cost
from tests.support import postgres


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__)
    parser.add_argument("--computes", type=int, default=20)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--workdir", default="var/bench")
    parser.add_argument(
        "--only", action="append",
        choices=("e2e", "compute", "guest", "console", "scheduler", "net", "fairness", "tls",
                 "scaleout", "floating"),
        help="run only these parts (default: all but floating, which needs root, libvirt and "
             "QEMU and boots a guest: ask for it)",
    )  # fmt: skip
    parser.add_argument(
        "--profile", choices=("api", "conductor", "compute"),
        help="sample this service with py-spy during the 50-client e2e run",
    )  # fmt: skip
    args = parser.parse_args(argv)
    parts = set(
        args.only
        or ("e2e", "compute", "guest", "console", "scheduler", "net", "fairness", "tls", "scaleout")
    )
    results = []
    if "tls" in parts:
        results += run_tls_cost(Path(args.workdir) / "tls")
    if "fairness" in parts:
        results += run_fairness(Path(args.workdir) / "fairness")
        results += run_fairness(Path(args.workdir) / "fairness-mixed", mix=True)
    if "scheduler" in parts:
        results += run_scheduler(Path(args.workdir) / "scheduler")
        results += _scheduler_on_postgres(Path(args.workdir) / "scheduler-pg")
    if "scaleout" in parts:
        results += run_scale_out(Path(args.workdir) / "scale-out")
    if "compute" in parts:
        results += run_compute_builds(Path(args.workdir) / "compute", count=args.instances)
    if "net" in parts:
        results += run_networking(Path(args.workdir) / "net")
        results += run_host_networks(Path(args.workdir) / "host-networks")
    if "guest" in parts:
        results += run_real_guest(Path(args.workdir) / "guest")
    if "console" in parts:
        results += run_console(Path(args.workdir) / "console")
    if "floating" in parts:
        results += run_floating(Path(args.workdir) / "floating")
    if "e2e" not in parts:
        return _report(results)
    results += run_e2e(
        Path(args.workdir) / "e2e",
        computes=args.computes,
        instances=args.instances,
        profile=args.profile,
    )
    return _report(results)


def _scheduler_on_postgres(workdir: Path) -> list[dict[str, Any]]:
    """The 5,000-host figure again with the claims in the local PostgreSQL (skipped, with a
    line saying why, where it cannot start)."""
    try:
        url = postgres.create_database()
    except postgres.PostgresUnavailable as exc:
        print(f"scheduler on PostgreSQL: skipped ({exc})")
        return []
    try:
        return run_scheduler(workdir, hosts=(5000,), url=url)
    finally:
        postgres.drop_database(url)


def _report(results: list[dict[str, Any]]) -> int:
    results = [judge(r) for r in results]
    if not results:  # every part asked for was skipped, each saying why above
        print("\nno figures")
        return 0
    width = max(len(r["figure"]) for r in results)
    print(f"\n{'figure'.ljust(width)}  {'value':>12}  {'target':<20}  conditions")
    for r in results:
        verdict = f"{r['target']} {'met' if r['met'] else 'MISSED'}" if "target" in r else ""
        print(
            f"{r['figure'].ljust(width)}  {r['value']:>12.2f}  {verdict:<20}  "
            f"{r['unit']}{' (rounds: ' + r['range'] + ')' if 'range' in r else ''}; "
            f"{r['conditions']}"
        )
    out = Path("bench/results/latest.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"machine": platform.platform(), "results": results}, indent=2) + "\n"
    )
    print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
