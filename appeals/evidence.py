"""Content-addressed evidence files: ``<home>/evidence/<sha256>``.

A file is stored once however many appeals cite it; its name is the SHA-256 of its
bytes, so a stored file that was altered no longer matches its name (:meth:`check`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from integrity.errors import FieldError, InvalidInput, NotFound

CHUNK = 1 << 16


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    name: str  # the original file name (no folders)
    size: int  # bytes


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class EvidenceStore:
    """Evidence files under one folder, named by their SHA-256."""

    def __init__(self, folder: Path, max_bytes: int = 20_000_000) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise NotFound(f"{sha256!r} is not a SHA-256 hex digest")
        return self.folder / sha256

    def put(self, source: Path) -> StoredFile:
        """Copy ``source`` in (hashing as it streams); idempotent for identical content."""
        source = Path(source)
        if not source.is_file():
            raise InvalidInput([FieldError("evidence", f"{source}: not a file")], what="evidence")
        size = source.stat().st_size
        if size > self.max_bytes:
            raise InvalidInput(
                [
                    FieldError(
                        "evidence", f"{source.name}: {size} bytes; the limit is {self.max_bytes}"
                    )
                ],
                what="evidence",
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            digest = h.hexdigest()
            target = self.folder / digest
            if target.exists():
                os.unlink(tmp)
            else:
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return StoredFile(digest, source.name, size)

    def check(self, sha256: str) -> str:
        """``ok``, ``missing`` or ``altered`` for one stored file."""
        p = self.path(sha256)
        if not p.is_file():
            return "missing"
        return "ok" if sha256_of(p) == sha256 else "altered"
