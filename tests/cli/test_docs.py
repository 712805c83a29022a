"""The documentation tells the truth: every command has help and is in docs/commands.md as
its --help says; the README's catalogue tables list exactly the catalogue's codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from integrity.catalogue import KINDS, REASONS
from scripts.cli_reference import TARGET, commands, render

ROOT = Path(__file__).resolve().parents[2]


def test_every_command_has_help_text() -> None:
    from cli import main

    missing = [path for path, cmd in commands(main) if not (cmd.help or "").strip()]
    assert not missing, f"commands without help: {missing}"


def test_the_command_reference_is_current() -> None:
    assert TARGET.read_text() == render(), (
        "docs/commands.md is out of date: run .venv/bin/python scripts/cli_reference.py"
    )


def _codes_in_section(text: str, heading: str) -> set[str]:
    """Backticked codes in the first column of the table under ``heading``."""
    m = re.search(rf"^#+ {re.escape(heading)}\n(.*?)(?=^#+ |\Z)", text, re.M | re.S)
    assert m, f"README has no section {heading!r}"
    return set(re.findall(r"^\| `([^`]+)` \|", m.group(1), re.M))


@pytest.mark.parametrize(
    ("heading", "catalogue"),
    [("Reason codes", set(map(str, REASONS))), ("Event kinds", set(map(str, KINDS)))],
)
def test_the_readme_lists_exactly_the_catalogue(heading: str, catalogue: set[str]) -> None:
    documented = _codes_in_section((ROOT / "README.md").read_text(), heading)
    assert documented == catalogue, (
        f"in the catalogue, not the README: {sorted(catalogue - documented)}; "
        f"in the README, not the catalogue: {sorted(documented - catalogue)}"
    )
