"""Configuration tables: the one list of them, and the digest that seals their content.

A *configuration table* holds what decides or who may act (the rule sets, people,
venues, the service registry, the audit's frames, samples and batches), as opposed to
the append-only ratings and events. Its rows are edited in place, so the Merkle log
cannot cover them row by row; instead every change ends with a ``config.sealed``
event (subject ``table:<name>``) carrying the SHA-256 of the table's whole canonical
content and its row count, in the same unit of work as the change
(:meth:`integrity.ports.UnitOfWork.seal_tables`). ``integrity ledger verify``
recomputes each table's digest and compares it with its latest seal, so an edit made
behind the engine's back is named by table.

The list lives here: :data:`CORE_CONFIG_TABLES` for the core's own tables, and
:meth:`ConfigTables.register` for a package's (the composition root registers them).
A unit of work that writes a registered table and ends without sealing it refuses to
commit, so a writer cannot forget.

Canonical content (format v1): the header ``["config-table/v1", name, [columns]]``,
then one line per row, sorted by primary key in Python (so the database's collation
does not matter), each the JSON array of the row's values: times as ISO 8601, dates
as ``YYYY-MM-DD``, binary values as ``"sha256:<hex>"`` of their bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from integrity.sqlkit import metadata

#: The core's configuration tables (the ledger's own schema).
CORE_CONFIG_TABLES: tuple[str, ...] = (
    "rule_sets",
    "people",
    "venues",
    "venue_addresses",
    "kiosks",
    "halls",
    "windows",
    "roster",
)

DIGEST_FORMAT = "config-table/v1"


def config_subject(name: str) -> str:
    """The subject of a table's ``config.sealed`` events: ``table:<name>``."""
    return f"table:{name}"


class ConfigTables:
    """The configuration tables of one ledger: the core's, plus those registered.

    Iterates in a fixed (sorted) order, the order in which seals take their locks.
    """

    def __init__(self, names: Iterable[str] = CORE_CONFIG_TABLES) -> None:
        self._names: set[str] = set()
        self.register(*names)

    def register(self, *names: str) -> None:
        """Add tables (declared on :data:`integrity.sqlkit.metadata`, with a primary key).

        Idempotent. ``ValueError`` for a table that is not declared or has no key: a
        programming error in whoever registers it.
        """
        for name in names:
            table = metadata.tables.get(name)
            if table is None:
                raise ValueError(f"configuration table {name!r} is not declared on sqlkit.metadata")
            if not list(table.primary_key.columns):
                raise ValueError(f"configuration table {name!r} has no primary key")
            self._names.add(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._names))

    def __len__(self) -> int:
        return len(self._names)


@dataclass(frozen=True)
class TableDigest:
    """A table's content as sealed: SHA-256 (hex), row count, and the columns covered."""

    sha256: str
    rows: int
    columns: tuple[str, ...]

    def evidence(self) -> dict[str, Any]:
        """The ``config.sealed`` event's evidence (besides the table's name)."""
        return {
            "format": DIGEST_FORMAT,
            "sha256": self.sha256,
            "rows": self.rows,
            "columns": list(self.columns),
        }


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=True).encode


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Decimal):
        return str(value)
    return value


def table_digest(conn: Connection, name: str, columns: Sequence[str] | None = None) -> TableDigest:
    """The digest of table ``name`` as ``conn`` sees it (in its transaction).

    ``columns`` (default: every column the table declares now) are the columns
    covered; a seal records them, so verify recomputes over the same ones after a
    migration adds a column.
    """
    table = metadata.tables[name]
    cols = tuple(columns) if columns is not None else tuple(c.name for c in table.columns)
    key = [c.name for c in table.primary_key.columns]
    wanted = list(dict.fromkeys([*key, *cols]))
    at = {c: i for i, c in enumerate(wanted)}
    lines: list[tuple[tuple[Any, ...], bytes]] = []
    q = sa.select(*[table.c[c] for c in wanted])
    for row in conn.execute(q):
        pk = tuple(row[at[c]] for c in key)
        lines.append((pk, _ENCODE([_plain(row[at[c]]) for c in cols]).encode()))
    lines.sort(key=lambda x: x[0])
    h = hashlib.sha256(_ENCODE([DIGEST_FORMAT, name, list(cols)]).encode() + b"\n")
    for _, line in lines:
        h.update(line)
        h.update(b"\n")
    return TableDigest(h.hexdigest(), len(lines), cols)


def current_columns(name: str) -> tuple[str, ...]:
    """The columns table ``name`` declares in this version of the code."""
    return tuple(c.name for c in metadata.tables[name].columns)
