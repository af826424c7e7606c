"""novactl shows whole lists however the api pages them: with one item per call
(--chunk-size 1) every list is what one call gives, filters kept on every page."""

from __future__ import annotations

import pytest

from tests.functional.conftest import System
from tests.functional.test_cli_coverage import as_json, ctl

pytestmark = pytest.mark.timeout(120)


def test_every_list_follows_the_pages(system: System) -> None:
    made = as_json(ctl(system, "server", "create", "paged", "--flavor", "m1.tiny", "--image",
                       "nova-tiny", "--count", "3", "--tag", "paged", "-o", "json"))  # fmt: skip
    ids = sorted(made["server_ids"])  # type: ignore[index]
    for i in range(3):
        assert (
            ctl(system, "server", "group", "create", f"pg{i}", "--policy", "affinity").returncode
            == 0
        )
    for listing in (("flavor", "list"), ("server", "group", "list"), ("image", "list"),
                    ("server", "list", "--tag", "paged")):  # fmt: skip
        whole = as_json(ctl(system, *listing, "-o", "json"))
        paged = as_json(ctl(system, "--chunk-size", "1", *listing, "-o", "json"))
        assert paged == whole, listing
    tagged = ctl(system, "--chunk-size", "1", "server", "list", "--tag", "paged", "-o", "value",
                 "-c", "id").stdout.split()  # fmt: skip
    assert sorted(tagged) == ids
    # a filter that keeps fewer than a page on the first call (name resolution pages too)
    shown = as_json(
        ctl(system, "--chunk-size", "1", "server", "group", "show", "pg2", "-o", "json")
    )
    assert shown["name"] == "pg2"  # type: ignore[index]
    # --limit: one page of at most that many
    limited = ctl(system, "server", "list", "--tag", "paged", "--limit", "2", "-o", "value",
                  "-c", "id").stdout.split()  # fmt: skip
    assert len(limited) == 2 and set(limited) <= set(ids)
    assert ctl(system, "server", "delete", *ids).returncode == 0
