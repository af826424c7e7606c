"""Reproducible installs: the Makefile (so `.ci/run`, which runs `make test`) and the image
install from the lock files `make lock` writes, hash-checked, and the locks cover pyproject."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
IMAGE_LOCK = ROOT / "requirements.lock"
DEV_LOCK = ROOT / "requirements-dev.lock"
# python:3.11-slim-bookworm as docker-library/repo-info recorded it (see deploy/README.md)
DIGEST = re.compile(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: str
    marker: str
    hashes: tuple[str, ...]


def parse_lock(path: Path) -> dict[str, list[Pin]]:
    """name -> its pins (a package may be pinned twice, under exclusive markers)."""
    pins: dict[str, list[Pin]] = {}
    text = path.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line or line.startswith(("#", " ")):
            continue
        requirement, _, options = line.partition(" --hash=")
        head, _, marker = requirement.partition(";")
        name, sep, version = head.strip().partition("==")
        assert sep, f"{path.name}: {line[:60]!r} is not an exact pin"
        hashes = tuple(re.findall(r"sha256:[0-9a-f]{64}", " --hash=" + options))
        pins.setdefault(canonicalize_name(name), []).append(
            Pin(version.strip(), marker.strip(), hashes)
        )
    return pins


def _pyproject() -> dict[str, object]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]  # type: ignore[no-any-return]


def _requirements(*extras: str) -> list[Requirement]:
    project = _pyproject()
    optional = project["optional-dependencies"]
    assert isinstance(optional, dict)
    names = list(project["dependencies"])  # type: ignore[call-overload]
    for extra in extras:
        names += optional[extra]
    return [Requirement(r) for r in names]


@pytest.mark.parametrize(
    ("lock", "extras"), [(IMAGE_LOCK, ("build",)), (DEV_LOCK, ("dev",))], ids=["image", "dev"]
)
def test_the_lock_pins_every_dependency_of_pyproject_within_its_range(
    lock: Path, extras: tuple[str, ...]
) -> None:
    pins = parse_lock(lock)
    for requirement in _requirements(*extras):
        found = pins.get(canonicalize_name(requirement.name))
        assert found, f"{lock.name} lacks {requirement.name} (run `make lock`)"
        for pin in found:
            assert requirement.specifier.contains(pin.version, prereleases=True), (
                f"{lock.name}: {requirement.name}=={pin.version} is outside {requirement} "
                "(run `make lock`)"
            )


@pytest.mark.parametrize("lock", [IMAGE_LOCK, DEV_LOCK], ids=["image", "dev"])
def test_every_pin_carries_hashes(lock: Path) -> None:
    pins = parse_lock(lock)
    assert len(pins) > 10
    for name, found in pins.items():
        for pin in found:
            assert pin.hashes, f"{lock.name}: {name}=={pin.version} has no --hash"


def test_tests_run_on_the_versions_the_image_ships() -> None:
    image, dev = parse_lock(IMAGE_LOCK), parse_lock(DEV_LOCK)
    for name, pins in image.items():
        assert name in dev, f"{name} is in the image's lock but not in the dev lock"
        assert {p.version for p in pins} == {p.version for p in dev[name]}, name


def _recipe(makefile: str, target: str) -> tuple[str, str]:
    """(prerequisites, recipe) of a Makefile rule."""
    text = makefile.replace("\\\n", " ")
    match = re.search(rf"^{re.escape(target)}:(.*)\n((?:\t.*\n)*)", text, re.MULTILINE)
    assert match, target
    return match.group(1), match.group(2)


def test_make_installs_the_dev_lock_hash_checked_and_nothing_else() -> None:
    makefile = (ROOT / "Makefile").read_text()
    prerequisites, recipe = _recipe(makefile, "$(INSTALLED)")
    assert "requirements-dev.lock" in prerequisites.split()  # a new lock reinstalls
    installs = [line for line in recipe.splitlines() if "pip install" in line]
    assert any("--require-hashes -r requirements-dev.lock" in line for line in installs)
    for line in installs:
        # the project itself goes in without resolving; only pip upgrades itself
        assert "-r requirements-dev.lock" in line or "--no-deps" in line or "--upgrade pip" in line
    # .ci/run runs `make test`, and `make test` installs through deps
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "deps" in _recipe(makefile, "test")[0].split()
    assert "$(INSTALLED)" in _recipe(makefile, "deps")[0].split()


def test_make_lock_writes_both_locks_from_pyproject() -> None:
    _, recipe = _recipe((ROOT / "Makefile").read_text(), "lock")
    assert "-o requirements.lock" in recipe
    assert "--constraint requirements.lock -o requirements-dev.lock" in recipe
    for lock in (IMAGE_LOCK, DEV_LOCK):
        assert "#    make lock" in lock.read_text()


def test_the_image_installs_the_image_lock_hash_checked_and_nothing_else() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY requirements.lock ./" in dockerfile
    steps = dockerfile.replace("\\\n", " ")
    installs = re.findall(r"pip install ([^&\n]*)", steps)
    assert "--require-hashes -r requirements.lock " in [i.rstrip() + " " for i in installs]
    for arguments in installs:
        assert (
            "-r requirements.lock" in arguments
            or "--no-deps" in arguments
            or arguments.strip() == "--upgrade pip"
        ), arguments
    assert "requirements.lock" not in (ROOT / ".dockerignore").read_text()


def test_the_base_image_is_pinned_by_digest_in_the_image_and_production_docs() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert default and DIGEST.fullmatch(default.group(1)), "the base image has no digest"
    production = (ROOT / "deploy/kubernetes/overlays/production/README.md").read_text()
    assert default.group(1) in production
