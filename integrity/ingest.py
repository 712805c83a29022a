"""Batch intake from JSON Lines: read, judge in order, summarise."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from integrity.errors import FieldError, InvalidInput
from integrity.hook import IngestItem, ValidationHook


class _BadLine:
    """A line that is not JSON: refused like a rating with a field error."""

    def __init__(self, message: str) -> None:
        self.message = message


def read_jsonl(stream: TextIO) -> Iterator[Any]:
    """Decoded objects, one per non-blank line; a bad line yields a :class:`_BadLine`."""
    for raw in stream:
        line = raw.strip()
        if not line:
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            yield _BadLine(f"not valid JSON: {err.msg} at column {err.colno}")


@dataclass
class IngestSummary:
    lines: int = 0
    written: int = 0
    replayed: int = 0
    refused: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    errors: list[tuple[int, InvalidInput]] = field(default_factory=list)

    def add(self, item: IngestItem) -> None:
        self.lines += 1
        if item.error is not None:
            self.refused += 1
            if len(self.errors) < 1000:
                self.errors.append((item.line, item.error))
            return
        d = item.decision
        assert d is not None
        if d.replayed:
            self.replayed += 1
            return
        self.written += 1
        self.statuses[d.status.value] += 1
        self.reasons.update(d.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "written": self.written,
            "identical_retries": self.replayed,
            "refused": self.refused,
            "statuses": dict(sorted(self.statuses.items())),
            "reasons": dict(self.reasons.most_common()),
        }


def ingest(
    hook: ValidationHook,
    objs: Iterable[Any],
    *,
    replay: bool = True,
    on_progress: Callable[[int], None] | None = None,
    client_id: str | None = None,
    chunk: int = 5000,
) -> IngestSummary:
    """Run every object through the hook in order; refused lines are counted, not written.

    ``client_id`` is recorded with every rating as the client that sent it; ``chunk``
    ratings are judged and written together (one transaction)."""

    summary = IngestSummary()
    pending_bad: dict[int, str] = {}

    def objects() -> Iterator[Any]:
        for n, obj in enumerate(objs, start=1):
            if isinstance(obj, _BadLine):
                pending_bad[n] = obj.message
                yield {"__bad_line__": obj.message}
            else:
                yield obj

    for item in hook.validate_stream(
        objects(),
        replay=replay,
        on_progress=on_progress,
        client_id=client_id,
        chunk=chunk,
        receipts=False,  # a summary: no rater reads these decisions
    ):
        if item.line in pending_bad:
            item = IngestItem(
                item.line, error=InvalidInput([FieldError("(line)", pending_bad.pop(item.line))])
            )
        summary.add(item)
    return summary
