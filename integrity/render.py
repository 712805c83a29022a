"""One render function so every read command speaks table, CSV and JSON alike."""

from __future__ import annotations

import csv
import dataclasses
import enum
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any, TextIO

FORMATS = ("table", "csv", "json")


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def render(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: str, out: TextIO) -> int:
    """Write ``rows`` to ``out`` as ``table`` (aligned text), ``csv`` or ``json``.

    Machine formats keep 6 decimals (the reference promises at least 4); the table shows 3.
    Returns the number of rows written. CSV streams; table and JSON buffer.
    """
    n = 0
    if fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for row in rows:
            w.writerow([_cell(row.get(c), 6) for c in columns])
            n += 1
        return n
    if fmt == "json":
        items = [{c: _json_value(row.get(c)) for c in columns} for row in rows]
        json.dump(items, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return len(items)
    if fmt == "table":
        cells = [[_cell(row.get(c), 3) for c in columns] for row in rows]
        widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
        out.write(
            "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip() + "\n"
        )
        out.write("  ".join("-" * w for w in widths) + "\n")
        for r in cells:
            out.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() + "\n")
        return len(cells)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data: dataclasses and mappings as objects, times as ISO 8601,
    enums as their values, sets and tuples as lists, floats to 6 decimals."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6) if value == value and abs(value) != float("inf") else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def dump_json(value: Any, out: TextIO) -> None:
    """Write ``value`` (see :func:`jsonable`) as indented JSON and a newline."""
    json.dump(jsonable(value), out, ensure_ascii=False, indent=2)
    out.write("\n")


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, tuple):
        return list(value)
    return value


def render_to_string(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], fmt: str) -> str:
    buf = io.StringIO()
    render(rows, columns, fmt, buf)
    return buf.getvalue()
