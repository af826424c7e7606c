"""buf.yaml turns off a lint rule only with a reason, and make test runs buf lint and breaking."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(10)


def test_every_lint_exception_and_breaking_ignore_says_why() -> None:
    lines = (ROOT / "buf.yaml").read_text().splitlines()
    config = yaml.safe_load("\n".join(lines))
    assert config["lint"]["use"] == ["STANDARD"]
    excepted = config["lint"].get("except", [])
    ignored = list(config["breaking"].get("ignore_only", {}))
    entry = re.compile(r"\s*(- )?([A-Z_]+:?|protos/\S+|ignore_only:)$")  # a rule, or its files
    for rule in [*excepted, *ignored]:
        at = next(i for i, line in enumerate(lines) if re.match(rf"\s*(- )?{rule}:?$", line))
        while entry.match(lines[at - 1]):  # up through the group this rule belongs to
            at -= 1
        assert lines[at - 1].strip().startswith("#"), f"{rule}: no comment says why"
    allowed = {"RPC_RESPONSE_STANDARD_NAME", "RPC_REQUEST_RESPONSE_UNIQUE", "SERVICE_SUFFIX"}
    assert set(excepted) <= allowed, "a new lint exception: say why in buf.yaml, and here"


def test_make_test_runs_buf_lint_and_breaking() -> None:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", text, re.MULTILINE)
    assert recipe
    assert "$(BUF) lint" in recipe.group(1)
    assert "$(BUF) breaking --against" in recipe.group(1)
