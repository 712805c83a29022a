"""How ``audit_sampling`` reaches the core: through its ports only, and with its steps and
``audit verify`` sharing one formats module instead of importing each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "audit_sampling"
MODULES = sorted(PACKAGE.rglob("*.py"))


def imports(path: Path) -> list[tuple[str, bool]]:
    """``(module, at top level)`` for every absolute import of a file (``TYPE_CHECKING``
    blocks count as top level: they never run)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # if TYPE_CHECKING:
            top.update(id(n) for n in node.body)
        top.add(id(node))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((a.name, id(node) in top) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, id(node) in top))
    return out


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_adapter_or_composition_root_imports(path: Path) -> None:
    bad = [m for m, _ in imports(path) if m.startswith("integrity.adapters") or m == "bootstrap"]
    assert not bad, f"{path.name} imports {bad}: use the ports (integrity.ports.Ledger)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_import_each_other_at_the_top_only(path: Path) -> None:
    lazy = [m for m, top in imports(path) if not top and m.startswith("audit_sampling")]
    assert not lazy, f"{path.name} imports {lazy} inside a function"


def test_the_test_factories_are_not_shipped() -> None:
    assert not (PACKAGE / "testing.py").exists()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_the_package_stands_alone(path: Path) -> None:
    """No citation of documents outside the repository (a contract's sections, issue numbers)."""
    cited = re.search(r"CONTRACT|§\s*\d|\bissue\s*#?\s*\d|\(issue\b", path.read_text(), re.I)
    assert cited is None, f"{path.name} cites {cited.group(0)!r}"
