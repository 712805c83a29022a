"""Dependencies point inwards: the core imports none of the outer packages (rules,
audit_sampling, appeals, simulation).

Only the composition root (``integrity/bootstrap.py``) and the migration environment
(which must see every package's tables) may; ``cli.py`` assembles the command groups.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OUTER = {"rules", "audit_sampling", "appeals", "simulation", "cli"}
ALLOWED = {"integrity/bootstrap.py", "integrity/migrations/env.py"}


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


CORE = sorted(
    p for p in (ROOT / "integrity").rglob("*.py") if str(p.relative_to(ROOT)) not in ALLOWED
)


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(ROOT)))
def test_core_module_does_not_import_outer_packages(path: Path) -> None:
    bad = imported_packages(path) & OUTER
    assert not bad, (
        f"{path.relative_to(ROOT)} imports {sorted(bad)}; wire it in integrity/bootstrap.py"
    )


@pytest.mark.parametrize("package", ["rules", "audit_sampling", "appeals", "simulation"])
def test_outer_packages_do_not_import_each_other_or_the_cli(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_packages(path) & (OUTER - {package})
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"
