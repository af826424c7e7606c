"""The README's settings reference is the one the code would generate."""

from __future__ import annotations

from pathlib import Path

from services.cli.settings_doc import render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_reference_is_current() -> None:
    text = README.read_text()
    assert render(text) == text, "run: python -m services.cli.settings_doc --write README.md"
