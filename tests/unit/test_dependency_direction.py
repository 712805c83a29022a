"""Dependencies point inwards, and the ledger has one writer.

- The core (``integrity/``) imports none of the outer packages, the composition root
  or the CLI.
- The engine's outer packages (``rules``, ``audit_sampling``, ``appeals``, ``followup``,
  ``publishing``) do not
  import each other, the composition root (``bootstrap.py``) or the CLI.
- ``simulation`` is a client of the whole engine (its demo opens an instance through
  the composition root, like ``bench/``); no engine package imports it.
- No package imports ``integrity.adapters`` (the ledger's tables and its SQL
  adapter): packages write and read the ledger through the core's ports.
- Only ``cli.py`` imports the composition root; only the root imports every package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("rules", "audit_sampling", "appeals", "followup", "publishing")
TOP = {*PACKAGES, "simulation", "cli", "bootstrap"}


def imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports (``a.b.c`` for ``from a.b import c``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


def tops(names: set[str]) -> set[str]:
    return {n.split(".")[0] for n in names}


def files(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)


def rel(p: Path) -> str:
    return str(p.relative_to(ROOT))


@pytest.mark.parametrize("path", files("integrity"), ids=rel)
def test_core_module_does_not_import_outwards(path: Path) -> None:
    bad = tops(imports(path)) & TOP
    assert not bad, f"{rel(path)} imports {sorted(bad)}; wire it in bootstrap.py"


OUTER_FILES = [p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in files(pkg)]


@pytest.mark.parametrize("path", OUTER_FILES, ids=rel)
def test_outer_package_imports_only_the_core(path: Path) -> None:
    package = path.relative_to(ROOT).parts[0]
    bad = tops(imports(path)) & (TOP - {package})
    assert not bad, f"{rel(path)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", [*OUTER_FILES, ROOT / "cli.py"], ids=rel)
def test_only_the_core_touches_the_ledger_adapters(path: Path) -> None:
    """The ledger's tables and SQL adapter are the core's; packages use its ports.

    (The composition root builds the adapter; tests and benchmarks of the adapter itself
    may look underneath it.)
    """
    bad = {n for n in imports(path) if n.split(".")[:2] == ["integrity", "adapters"]}
    assert not bad, f"{rel(path)} imports {sorted(bad)}; use integrity.ports / integrity.sqlkit"


@pytest.mark.parametrize("path", [*files("integrity"), *OUTER_FILES], ids=rel)
def test_only_the_cli_and_scripts_import_the_composition_root(path: Path) -> None:
    assert "bootstrap" not in tops(imports(path)), f"{rel(path)} imports bootstrap"
