"""Write docs/commands.md from the CLI's own help: every command, its usage and options.

    .venv/bin/python scripts/cli_reference.py          # rewrite docs/commands.md
    .venv/bin/python scripts/cli_reference.py --check  # exit 1 if it is out of date

``tests/cli/test_docs.py`` runs the check, so the reference never drifts from ``--help``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "commands.md"


def commands(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    """``(path, command)`` for every command under ``group``, depth first, sorted by name."""
    ctx = click.Context(group, info_name="integrity")
    for name in sorted(group.list_commands(ctx)):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        path = (*prefix, name)
        yield " ".join(path), cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, path)


def help_text(path: str, cmd: click.Command) -> str:
    """The ``--help`` output of ``integrity PATH``, as a user sees it (80 columns)."""
    ctx = click.Context(
        cmd,
        info_name=f"integrity {path}",
        terminal_width=80,
        max_content_width=80,
        help_option_names=["-h", "--help"],  # as the root group sets for every command
    )
    return cmd.get_help(ctx)


def render() -> str:
    from cli import main

    out = [
        "# Commands",
        "",
        "Generated from `--help` by `scripts/cli_reference.py`; do not edit by hand.",
        "Every command also takes `--home DIR`, `--db URL` and `--redis URL` (or",
        "`INTEGRITY_HOME`, `INTEGRITY_DB`, `INTEGRITY_REDIS`), before or after its name.",
        "Before the command, `--server URL` (`INTEGRITY_SERVER`) runs a person command on a",
        "running `integrity serve` with your personal token, and `--token-file FILE` names it.",
        "",
    ]
    for path, cmd in commands(main):
        out += [f"## integrity {path}", "", "```text", help_text(path, cmd).rstrip(), "```", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text() != text:
            print(f"{TARGET} is out of date: run scripts/cli_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
