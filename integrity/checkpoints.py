"""Checkpoints kept outside the database: a file of lines, and HTTP witnesses.

A checkpoint (log size and root hash) proves something only if it is kept where a
forger with write access to the database cannot rewrite it: on paper, in a file on
another host, at a witness (any HTTP endpoint that keeps what it is sent), or signed
by the operator's own tool. ``integrity ledger checkpoint --out FILE`` appends one
line per checkpoint to FILE::

    integrity-ledger/v1 size=120 root=<64 hex> at=2026-10-15T02:00:00+00:00

``--witness URL`` POSTs the same as JSON (``{"checkpoint", "origin", "size", "root",
"at"}``), and ``integrity ledger verify --checkpoints FILE`` checks the ledger against
every line of such a file (blank lines and ``#`` comments are skipped; a plain
checkpoint line without ``at=`` is accepted too).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from integrity import merkle
from integrity.errors import BackendUnavailable, FieldError, InvalidInput

if TYPE_CHECKING:
    from integrity.log import Head, MerkleLog

WITNESS_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Kept:
    """A checkpoint recorded in the ledger, and where else it was kept."""

    head: Head
    file: Path | None
    witnesses: tuple[tuple[str, int], ...]  # (URL, HTTP status)


def checkpoint_and_keep(
    log: MerkleLog, now: datetime, out: Path | None = None, witnesses: Sequence[str] = ()
) -> Kept:
    """Record a checkpoint (``MerkleLog.checkpoint``), append it to ``out`` and send it
    to each witness. A witness that fails raises ``BackendUnavailable`` naming the
    checkpoint, which is recorded (and appended to ``out``) all the same."""
    for url in witnesses:
        _check_url(url)
    head = log.checkpoint(now)
    if out is not None:
        append_line(out, checkpoint_line(head.size, head.root, now))
    sent = []
    for url in witnesses:
        try:
            sent.append((url, post_witness(url, witness_document(head.size, head.root, now))))
        except BackendUnavailable as err:
            raise BackendUnavailable(f"{err} ({head.checkpoint()} is recorded)") from None
    return Kept(head, out, tuple(sent))


def checkpoint_line(size: int, root: bytes, at: datetime) -> str:
    """One line of a checkpoint file (no newline)."""
    return f"{merkle.format_checkpoint(size, root)} at={at.isoformat()}"


def append_line(path: Path, line: str) -> None:
    """Append ``line`` to the checkpoint file at ``path`` (created if missing), flushed
    to disk before returning."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def witness_document(size: int, root: bytes, at: datetime) -> dict[str, object]:
    """What a witness is sent."""
    return {
        "checkpoint": merkle.format_checkpoint(size, root),
        "origin": merkle.CHECKPOINT_ORIGIN,
        "size": size,
        "root": root.hex(),
        "at": at.isoformat(),
    }


def post_witness(url: str, doc: dict[str, object], timeout: float = WITNESS_TIMEOUT_S) -> int:
    """POST ``doc`` as JSON to a witness; returns the HTTP status (2xx).

    ``InvalidInput`` for a URL that is not http(s); ``BackendUnavailable`` when the
    witness does not answer or answers with an error status.
    """
    _check_url(url)
    body = json.dumps(doc, sort_keys=True).encode()
    req = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        raise BackendUnavailable(f"witness {url} refused the checkpoint: HTTP {err.code}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise BackendUnavailable(f"witness {url} did not take the checkpoint: {reason}") from None


def _check_url(url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise InvalidInput(
            [FieldError("witness", f"{url!r}: an http:// or https:// URL is required")],
            what="option",
        )


def read_checkpoint_file(path: Path) -> list[tuple[str, str]]:
    """``(label, checkpoint text)`` for every checkpoint line of a file.

    ``InvalidInput`` names every malformed line (nothing is checked then).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise InvalidInput(
            [FieldError("checkpoints", f"cannot read {path}: {err.strerror or err}")],
            what="checkpoint file",
        ) from None
    return parse_checkpoint_lines(text.splitlines(), str(path))


def parse_checkpoint_lines(lines: Iterable[str], name: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    errors: list[FieldError] = []
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        text = line.split(" at=", 1)[0]
        try:
            merkle.parse_checkpoint(text)
        except ValueError as err:
            errors.append(FieldError(f"{name} line {n}", str(err)))
            continue
        out.append((f"the checkpoint on line {n} of {name}", text))
    if errors:
        raise InvalidInput(errors, what="checkpoint file")
    return out
