from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.libvirtd import ensure_libvirtd

REPO = Path(__file__).resolve().parents[2]
GUEST_DIR = REPO / "var" / "images" / "tiny-guest"


@pytest.fixture(scope="session")
def libvirtd() -> str:
    """qemu:///system with libvirtd and virtlogd running (started here when they are not)."""
    ensure_libvirtd()
    return "qemu:///system"


@pytest.fixture(scope="session")
def tiny_guest() -> dict[str, str]:
    """The tiny guest (kernel + initramfs), built from Debian packages; cached in var/."""
    result = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "guest" / "build_guest_image.py"),
         "--out", str(GUEST_DIR)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    manifest: dict[str, str] = json.loads((GUEST_DIR / "manifest.json").read_text())
    return manifest
