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
commit, so a writer cannot forget; and before its first write to a table it takes the
one configuration lock and checks the table against its latest seal, refusing
(``ConfigError``) to change a table edited behind the engine's back, so an honest
change never seals over such an edit.

Canonical content (format v1): the JSON header ``["config-table/v1", name, [columns]]``
and a newline, then one JSON array of the rows, sorted by primary key in Python (so
the database's collation does not matter), each the array of the row's values in the
header's column order: times as ISO 8601, dates as ``YYYY-MM-DD``, binary values as
``"sha256:<hex>"`` of their bytes. The SHA-256 of those bytes is the table's digest.

Partitioned tables. A table that grows by one independent group of rows per operation
(``audit_items``: the sample of every period) declares a *partition column*, the
first column of its primary key, in ``Table.info[PARTITION_INFO]``; it is then sealed
one partition at a time: each ``config.sealed`` event (subject
``table:<name>/<column>=<value>``) carries the digest of the rows with that value
(format ``config-partition/v1``: the header
``["config-partition/v1", name, column, value, [columns]]``, then the rows as above).
A unit of work checks and seals only the partitions its writes name (an INSERT's
values of the column, an UPDATE's or DELETE's ``column = v`` / ``column IN (...)``
condition; a write that names none counts as a write to every partition), so its cost
follows the partition, not the table. ``ledger verify`` checks every partition
against its latest seal and names the partition that differs, and a partition with
rows but no seal. A table sealed whole before it was partitioned (format
``config-table/v1``, an older instance) keeps being checked whole until it is
converted (``integrity init``, or the first change through the engine): if it still
matches its whole-table seal, a ``config.sealed`` event of format
``config-partitioned/v1`` (subject ``table:<name>``) marks the switch, followed by
one seal per partition; partition seals older than that marker count for nothing.
"""

from __future__ import annotations

import hashlib
import json
import operator
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
    "credentials",
    "os_users",
    "periods",
    "intake_clients",
)

#: Columns a configuration table may change without a seal, because they record use,
#: not configuration (a token's last use). The digest leaves them out.
VOLATILE_COLUMNS: dict[str, tuple[str, ...]] = {"credentials": ("last_used_at",)}

DIGEST_FORMAT = "config-table/v1"
#: The digest of one partition of a partitioned table.
PARTITION_FORMAT = "config-partition/v1"
#: The evidence of the event that switches a table sealed whole to per-partition seals.
PARTITIONED_FORMAT = "config-partitioned/v1"

#: ``Table.info`` key naming a configuration table's partition column.
PARTITION_INFO = "config_partition"


def config_subject(name: str, partition: tuple[str, Any] | None = None) -> str:
    """The subject of a table's ``config.sealed`` events: ``table:<name>``; a partition's
    is ``table:<name>/<column>=<value>``."""
    if partition is None:
        return f"table:{name}"
    return f"table:{name}/{partition[0]}={partition[1]}"


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
            key = [c.name for c in table.primary_key.columns]
            if not key:
                raise ValueError(f"configuration table {name!r} has no primary key")
            column = table.info.get(PARTITION_INFO)
            if column is not None and column != key[0]:
                raise ValueError(
                    f"configuration table {name!r}: its partition column {column!r} must be "
                    "the first column of its primary key"
                )
            self._names.add(name)

    def partition_column(self, name: str) -> str | None:
        """The column a table is sealed by (one seal per value), or ``None``: sealed whole."""
        column = metadata.tables[name].info.get(PARTITION_INFO)
        return None if column is None else str(column)

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
    #: (column, value) of the partition digested, or ``None``: the whole table
    partition: tuple[str, Any] | None = None

    def evidence(self) -> dict[str, Any]:
        """The ``config.sealed`` event's evidence (besides the table's name)."""
        if self.partition is None:
            return {
                "format": DIGEST_FORMAT,
                "sha256": self.sha256,
                "rows": self.rows,
                "columns": list(self.columns),
            }
        column, value = self.partition
        return {
            "format": PARTITION_FORMAT,
            "partition": {"column": column, "value": value},
            "sha256": self.sha256,
            "rows": self.rows,
            "columns": list(self.columns),
        }


def _plain(value: Any) -> Any:
    """What the JSON encoder calls for a value it cannot encode itself."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "sha256:" + hashlib.sha256(bytes(value)).hexdigest()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot seal a value of type {type(value).__name__}")


_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_plain).encode


def table_digest(
    conn: Connection,
    name: str,
    columns: Sequence[str] | None = None,
    partition: tuple[str, Any] | None = None,
) -> TableDigest:
    """The digest of table ``name`` as ``conn`` sees it (in its transaction), or of its
    rows whose column ``partition[0]`` equals ``partition[1]``.

    ``columns`` (default: every column the table declares now) are the columns
    covered; a seal records them, so verify recomputes over the same ones after a
    migration adds a column. About 0.3 s per 100,000 narrow rows (SQLite).
    """
    table = metadata.tables[name]
    cols = tuple(columns) if columns is not None else current_columns(name)
    key = [c.name for c in table.primary_key.columns]
    nkey = len(key)
    q = sa.select(*[table.c[c] for c in key], *[table.c[c] for c in cols])
    if partition is None:
        header: list[Any] = [DIGEST_FORMAT, name, list(cols)]
    else:
        q = q.where(table.c[partition[0]] == partition[1])
        header = [PARTITION_FORMAT, name, partition[0], partition[1], list(cols)]
    rows = list(conn.execute(q).all())
    rows.sort(key=operator.itemgetter(*range(nkey)))
    h = hashlib.sha256(_ENCODE(header).encode() + b"\n")
    h.update(_ENCODE([r[nkey:] for r in rows]).encode())
    return TableDigest(h.hexdigest(), len(rows), cols, partition)


def current_columns(name: str) -> tuple[str, ...]:
    """The columns table ``name`` declares in this version of the code."""
    skip = VOLATILE_COLUMNS.get(name, ())
    return tuple(c.name for c in metadata.tables[name].columns if c.name not in skip)
