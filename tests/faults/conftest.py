from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import Report

REPORTS: list[Report] = []


@pytest.fixture
def record() -> Iterator[list[Report]]:
    yield REPORTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not REPORTS:
        return
    columns = ("fault", "accepted", "ACTIVE", "ERROR", "lost", "duplicated", "leaked")
    rows = [
        (r.fault, r.accepted, r.active, r.error, r.lost, r.duplicated, r.leaked) for r in REPORTS
    ]
    widths = [max(len(str(c)), *(len(str(row[i])) for row in rows)) for i, c in enumerate(columns)]
    terminalreporter.section("fault injection")
    terminalreporter.write_line("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in rows:
        terminalreporter.write_line(
            "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True))
        )
    for report in REPORTS:
        for note in report.notes:
            terminalreporter.write_line(f"{report.fault}: {note}")
