"""What each service loads: only what it runs with (memory is a benchmarked target)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Needed only to make certificates (services/common/pki.py), never by a running service;
# loading it cost each service about 10 MiB of resident memory.
NOT_AT_RUN_TIME = ("cryptography",)


@pytest.mark.parametrize("role", ["api", "conductor", "compute"])
def test_a_service_does_not_load_what_only_tools_need(role: str) -> None:
    check = (
        f"import sys, services.{role}.app, services.{role}.__main__\n"
        f"print(sorted(m for m in {NOT_AT_RUN_TIME!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60,
        check=True,
    ).stdout  # fmt: skip
    assert out.strip() == "[]"
