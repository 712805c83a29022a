"""Which commands a person may run through the server, and where the path arguments of a
command line are (the client uploads inputs and the server places outputs by them)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest

from integrity.errors import InvalidInput
from integrity.remote import PERSON_COMMANDS, plan

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
from cli import main  # noqa: E402


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["review", "clear", "4", "--reason", "fine"], True),
        (["appeal", "file", "4", "--ground", "system_error", "--reason", "x"], True),
        (["audit", "pull", "1", "-o", "b.csv"], True),
        (["audit", "record", "1", "f.csv"], True),
        (["audit", "report"], True),
        (["report", "--by", "staff"], True),
        (["export", "ratings"], True),
        (["staff", "list"], True),
        (["staff", "token", "issue", "R1"], True),
        (["appeal", "--help"], True),
        (["init"], False),
        (["ingest", "ratings.jsonl"], False),
        (["serve"], False),
        (["ledger", "verify"], False),
        (["venues", "load", "v.json"], False),
        (["registry", "load", "r.json"], False),
        (["detect"], False),
        (["demo"], False),
        (["staff", "add", "X", "--role", "admin"], False),
        (["staff", "import", "s.csv"], False),
        (["staff", "map-os-user", "alice", "A1"], False),
        (["audit", "frame", "--period", "2026-10"], False),
        (["audit", "publish", "-o", "bundle"], False),
        (["--help"], False),
        (["nonsense"], False),
    ],
)
def test_only_person_commands_are_allowed(argv: list[str], allowed: bool) -> None:
    assert plan(main, argv).allowed is allowed


def test_the_allowlist_names_only_person_groups() -> None:
    operator = {"init", "ingest", "serve", "ledger", "venues", "registry", "detect", "demo"}
    assert not operator & set(PERSON_COMMANDS)


def test_inputs_and_outputs_are_found_with_clicks_own_parser() -> None:
    p = plan(main, ["audit", "pull", "1", "--format=csv", "-oout/b.csv", "--manifest", "m.json"])
    assert p.argv == ["audit", "pull", "1", "--format", "csv", "-o", "out/b.csv", "--manifest", "m.json"]  # fmt: skip
    assert [(s.index, s.direction, s.value) for s in p.slots] == [
        (6, "out", "out/b.csv"),
        (8, "out", "m.json"),
    ]
    p = plan(main, ["appeal", "file", "4", "--evidence", "a.png", "--reason", "a.png",
                    "--ground", "system_error", "--evidence=b.png"])  # fmt: skip
    # the same text as a reason is not a file: positions, not values, decide
    assert [(s.index, s.value) for s in p.slots] == [(4, "a.png"), (10, "b.png")]
    assert all(s.direction == "in" for s in p.slots)
    p = plan(main, ["audit", "record", "1", "findings.csv"])
    assert [(s.index, s.direction) for s in p.slots] == [(3, "in")]
    p = plan(main, ["export", "ratings", "-o", "-"])  # stdout is not a file to send back
    assert p.slots == []
    p = plan(main, ["export", "ratings", "--output", "r.csv"])
    assert [(s.index, s.direction) for s in p.slots] == [(3, "out")]


def test_a_path_the_plan_cannot_place_is_refused() -> None:
    """A path whose text is not on the command line (here an option's flag value) would be
    the server's own file: refused rather than run."""

    @click.group()
    def root() -> None:
        """A root."""

    @root.command("export")
    @click.option("--out", type=click.Path(), is_flag=False, flag_value="/etc/server.txt")
    def export(out: str | None) -> None:
        """An export."""

    with pytest.raises(InvalidInput, match="cannot send"):
        plan(root, ["export", "--out"])
    assert [s.value for s in plan(root, ["export", "--out", "mine.txt"]).slots] == ["mine.txt"]


def test_a_command_line_click_refuses_has_no_slots() -> None:
    p = plan(main, ["review", "clear", "--no-such-option"])
    assert p.path == ("review", "clear") and p.slots == []
