"""The Makefile installs every Debian package the tests rely on."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.libvirtd import DEBIAN_PACKAGES

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


def _make_list(name: str) -> set[str]:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(rf"^{name} :=(.*)$", text, re.MULTILINE)
    assert match, name
    return set(match.group(1).split())


def test_make_test_installs_the_hypervisor_packages() -> None:
    assert set(DEBIAN_PACKAGES) <= _make_list("TEST_PACKAGES")
    assert "postgresql" in _make_list("TEST_PACKAGES")
    assert {"libvirt-dev", "pkg-config"} <= _make_list("RUN_PACKAGES")
