from __future__ import annotations

from pathlib import Path

from bench.e2e import summarise_profile
from bench.targets import highest_rate_within_latency, judge


def _row(figure: str, value: float) -> dict[str, object]:
    return {"figure": figure, "value": value, "unit": "x", "conditions": "c"}


def test_latency_target_applies_to_the_closed_loop_figure_only() -> None:
    assert judge(_row("CreateServer p50, 50 clients", 2.9))["met"] is True
    assert judge(_row("CreateServer p50, 50 clients", 3.1))["met"] is False
    assert "target" not in judge(_row("CreateServer p50, 50 clients at 50/s", 1.0))


def test_throughput_and_memory_targets() -> None:
    assert judge(_row("end-to-end to ACTIVE, single creates", 499))["met"] is False
    assert judge(_row("end-to-end to ACTIVE, creates of 100", 501))["met"] is True
    # 120 MB is 114.4 MiB
    assert judge(_row("RSS api, idle", 114.0))["met"] is True
    assert judge(_row("RSS api, idle", 115.0))["met"] is False


def test_figures_without_a_target_pass_through() -> None:
    row = _row("compute builds/s, max_concurrent_builds=4", 1000)
    assert judge(row) == row


def test_profile_summary_counts_busy_samples_under_project_functions(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        "run (services/api/create.py:10);execute (sqlalchemy/engine.py:1) 3\n"
        "run (services/api/create.py:10);validate (services/api/validation.py:5) 1\n"
        "loop (asyncio/base_events.py:1);select (selectors.py:468) 96\n"
    )
    summary = summarise_profile(raw)
    assert summary.splitlines()[0] == "4 busy samples; by package of the innermost frame:"
    assert " 75.0%  sqlalchemy" in summary
    assert "100.0%  run (services/api/create.py:10)" in summary
    assert " 25.0%  validate (services/api/validation.py:5)" in summary
    assert "selectors" not in summary


def test_the_highest_load_within_the_latency_target_stops_at_the_first_miss() -> None:
    sweep = {50.0: (2.0, 7.0), 100.0: (2.5, 9.0), 150.0: (3.2, 10.0), 200.0: (2.9, 14.0)}
    assert highest_rate_within_latency(sweep) == 100.0
    assert highest_rate_within_latency({50.0: (2.0, 16.0)}) == 0.0
    assert highest_rate_within_latency({100.0: (3.0, 15.0), 50.0: (1.0, 2.0)}) == 100.0
