"""Every file the audit publishes, byte for byte, and how to read each back.

The steps write these and ``audit verify`` reads them; nothing else defines them.

**The frame file** (``integrity-audit-frame/v1``): the audited population, fixed and
published before any seed exists. A UTF-8 text file, hashed byte for byte (its
SHA-256 names it)::

    #{"checkpoint": "integrity-ledger/v1 size=57 root=...", "end": "...", "format": "integrity-audit-frame/v1", ...}
    rating_id,window_id,risk
    17,H1-W01,0.000000
    23,H1-W02,0.812500

Line 1 is ``#`` and the header as canonical JSON (sorted keys, no spaces): period,
time zone, its UTC bounds, the ledger checkpoint the population stands on, the
number of ratings and the size of every stratum (window). Then one row per rating
in canonical order (ascending rating id, each once), the window id percent-encoded
(``urllib.parse.quote(w, safe="")``, so commas and newlines cannot break a row) and
the detector risk at framing time with 6 decimals. Every line ends with ``\\n``.
:class:`FrameReader` streams a frame from byte chunks, hashing as it goes, and
checks the rows against the header; memory does not grow with the frame.

**The sample manifest** (``sample.json``, ``integrity-audit-sample/v1``): seed,
algorithm, rate and minimum, the frame's SHA-256 and checkpoint, every stratum with
its take history, the risk stratum, and every item with its ranks and ticket.

**A pull**: the export of one batch (``csv`` or ``jsonl``, pseudonymised fields only,
:data:`EXPORT_COLUMNS`, canonical bytes from :func:`render_rows`) and its manifest
(``integrity-audit-pull/v1``) naming the export's SHA-256.

**A bundle**: a folder (``sample.json``, the frame file it names, pull manifests
``*.manifest.json`` with their exports) or one JSON document
(``integrity-audit-bundle/v1``) holding the same.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain, islice
from operator import lt
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import quote

from integrity.errors import FieldError, InvalidInput
from integrity.model import StoredRating

if TYPE_CHECKING:
    from audit_sampling.records import BatchRecord, FrameRecord, SampleRecord, StratumRecord

FRAME_FORMAT = "integrity-audit-frame/v1"
SAMPLE_FORMAT = "integrity-audit-sample/v1"
PULL_FORMAT = "integrity-audit-pull/v1"
BUNDLE_FORMAT = "integrity-audit-bundle/v1"
COLUMNS_LINE = "rating_id,window_id,risk"
POPULATION = "counted (accepted) ratings whose service falls in the period, as of the checkpoint"
CHUNK = 1 << 20


# -- the frame file ------------------------------------------------------------------------


class FrameError(ValueError):
    """A frame that does not parse or contradicts its header; ``line`` is 1-based (0: whole file)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message
        super().__init__(f"line {line}: {message}" if line else message)


def encode_window(window_id: str) -> str:
    return quote(window_id, safe="")


@dataclass(frozen=True)
class FrameHeader:
    """What a frame is: period, checkpoint and stratum sizes (window id -> ratings)."""

    period: str
    timezone: str
    start: str  # ISO 8601 UTC, inclusive
    end: str  # ISO 8601 UTC, exclusive
    checkpoint: str
    strata: Mapping[str, int]
    population: str = POPULATION

    @property
    def ratings(self) -> int:
        return sum(self.strata.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": FRAME_FORMAT,
            "period": self.period,
            "timezone": self.timezone,
            "start": self.start,
            "end": self.end,
            "checkpoint": self.checkpoint,
            "population": self.population,
            "ratings": self.ratings,
            "strata": dict(sorted(self.strata.items())),
        }

    def line(self) -> str:
        return "#" + json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def parse(cls, line: str) -> FrameHeader:
        if not line.startswith("#"):
            raise FrameError(1, "the first line must be '#' and the frame header as JSON")
        try:
            doc = json.loads(line[1:])
        except json.JSONDecodeError as err:
            raise FrameError(1, f"the header is not valid JSON: {err}") from None
        if not isinstance(doc, dict) or doc.get("format") != FRAME_FORMAT:
            raise FrameError(1, f"not a {FRAME_FORMAT} frame header")
        try:
            strata = {str(k): int(v) for k, v in dict(doc["strata"]).items()}
            header = cls(
                period=str(doc["period"]),
                timezone=str(doc["timezone"]),
                start=str(doc["start"]),
                end=str(doc["end"]),
                checkpoint=str(doc["checkpoint"]),
                strata=strata,
                population=str(doc["population"]),
            )
            ratings = int(doc["ratings"])
        except (KeyError, TypeError, ValueError) as err:
            raise FrameError(1, f"header field missing or malformed: {err}") from None
        if any(n < 0 for n in strata.values()):
            raise FrameError(1, "a stratum size is negative")
        if ratings != header.ratings:
            raise FrameError(
                1, f"header says {ratings} ratings but its strata sum to {header.ratings}"
            )
        if header.line() != line:
            raise FrameError(1, "the header is not in canonical form (sorted keys, no spaces)")
        return header


@dataclass
class FrameDigest:
    """What writing or reading a whole frame measured."""

    sha256: str
    bytes: int
    ratings: int


class FrameWriter:
    """Writes a frame to ``sink`` (called with byte chunks), hashing as it goes."""

    def __init__(self, header: FrameHeader, sink: Callable[[bytes], Any]) -> None:
        self.header = header
        self.sink = sink
        self.hash = hashlib.sha256()
        self.size = 0
        self.rows = 0
        self.prev = -1
        self._enc: dict[str, str] = {w: encode_window(w) for w in header.strata}
        self._buf: list[str] = [header.line(), COLUMNS_LINE + "\n"]
        self._buffered = 0

    def write(self, rows: Iterable[tuple[int, str, float]]) -> None:
        """Append rows ``(rating_id, window_id, risk)`` in ascending rating id."""
        enc = self._enc
        buf = self._buf
        prev = self.prev
        n = 0
        for rid, win, risk in rows:
            if rid <= prev:
                raise ValueError(f"rating ids must ascend: {rid} after {prev}")
            prev = rid
            w = enc.get(win)
            if w is None:
                raise ValueError(f"window {win!r} is not in the frame header")
            if risk == 0:
                buf.append(f"{rid},{w},0.000000\n")
            elif 0 < risk <= 1:
                buf.append(f"{rid},{w},{risk:.6f}\n")
            else:
                raise ValueError(f"risk {risk!r} of rating {rid} is outside [0, 1]")
            n += 1
            if len(buf) >= 20000:
                self._flush()
        self.prev = prev
        self.rows += n

    def _flush(self) -> None:
        if self._buf:
            data = "".join(self._buf).encode("utf-8")
            self._buf.clear()
            self.hash.update(data)
            self.size += len(data)
            self.sink(data)

    def close(self) -> FrameDigest:
        """Flush; check the row count against the header; return the digest."""
        self._flush()
        if self.rows != self.header.ratings:
            raise ValueError(f"wrote {self.rows} rows but the header says {self.header.ratings}")
        return FrameDigest(self.hash.hexdigest(), self.size, self.rows)


def chunks_of(stream: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """Byte chunks of an open binary file."""
    while True:
        data = stream.read(size)
        if not data:
            return
        yield data


@dataclass
class FrameReader:
    """Stream a frame's rows from byte chunks; hash, count and check them.

    ``header`` is read at construction. Iterate once over the reader for
    ``(rating_id, window_id, risk)`` text triples (window ids decoded); then
    :meth:`finish` checks the counts and returns the :class:`FrameDigest`. Problems
    raise :class:`FrameError` with the line number.
    """

    chunks: Iterable[bytes]
    header: FrameHeader = field(init=False)
    counts: dict[str, int] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._hash = hashlib.sha256()
        self._size = 0
        self._done = False
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._chunks = iter(self.chunks)
        self._rest = ""
        self._pending: tuple[str, int] | None = None  # complete lines read ahead
        self._line = 2  # lines consumed so far (the header and the column line)
        first = self._next_block()
        if first is None:
            raise FrameError(0, "the frame is empty")
        text, n = first
        while n < 2:
            more = self._next_block()
            if more is None:
                break
            text, n = text + "\n" + more[0], n + more[1]
        parts = text.split("\n", 2)
        self.header = FrameHeader.parse(parts[0] + "\n")
        if len(parts) < 2 or parts[1] != COLUMNS_LINE:
            raise FrameError(2, f"expected the column line {COLUMNS_LINE!r}")
        if len(parts) == 3:
            self._pending = (parts[2], n - 2)
        self._decode = {encode_window(w): w for w in self.header.strata}
        self.counts = dict.fromkeys(self.header.strata, 0)

    def _next_block(self) -> tuple[str, int] | None:
        """The next chunk's complete lines as one text (no final newline) and their count.

        ``None`` at the end. Hashes the bytes as they are read.
        """
        for chunk in self._chunks:
            self._hash.update(chunk)
            self._size += len(chunk)
            try:
                text = self._rest + self._decoder.decode(chunk)
            except UnicodeDecodeError as err:
                raise FrameError(0, f"the frame is not UTF-8: {err}") from None
            cut = text.rfind("\n")
            if cut < 0:
                self._rest = text
                continue
            self._rest = text[cut + 1 :]
            return text[:cut], text.count("\n", 0, cut) + 1
        try:
            self._rest += self._decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise FrameError(0, f"the frame is not UTF-8: {err}") from None
        if self._rest:
            raise FrameError(0, "the frame does not end with a newline (truncated?)")
        return None

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return chain.from_iterable(self.batches())

    def raw_blocks(self) -> Iterator[tuple[str, int, int]]:
        """The unchecked chunks: ``(text, lines, lines before it)``; hashes as it reads.

        For :mod:`audit_sampling.parallel`, which checks chunks in worker processes
        with :func:`parse_block` and the order across chunks itself.
        """
        if self._done:
            raise RuntimeError("a FrameReader can be iterated once")
        self._done = True
        line = self._line
        block, self._pending = self._pending, None
        if block is None:
            block = self._next_block()
        while block is not None:
            yield block[0], block[1], line
            line += block[1]
            block = self._next_block()
        self._line = line

    def batches(self) -> Iterator[Iterator[tuple[str, str, str]]]:
        """The rows chunk by chunk, each chunk checked as a whole at C speed."""
        prev = -1
        for text, n, line in self.raw_blocks():
            block = parse_block(text, n, line, prev, self._decode)
            self.add_counts(block.seen)
            prev = block.ids[-1]
            yield block.rows()

    def add_counts(self, seen: Mapping[str, int]) -> None:
        """Count rows per window (``seen`` keyed by the encoded window id)."""
        for enc, k in seen.items():
            self.counts[self._decode[enc]] += k

    @property
    def decode(self) -> Mapping[str, str]:
        """Encoded window id -> window id, for the header's strata."""
        return self._decode

    def finish(self) -> FrameDigest:
        """After iterating: compare stratum counts with the header; return the digest."""
        if self._pending is not None or self._next_block() is not None:
            raise FrameError(0, "rows were left unread")
        for w, n in sorted(self.header.strata.items()):
            if self.counts.get(w, 0) != n:
                raise FrameError(
                    0, f"window {w!r} has {self.counts.get(w, 0)} rows but the header says {n}"
                )
        return FrameDigest(self._hash.hexdigest(), self._size, sum(self.counts.values()))


@dataclass
class Block:
    """One checked chunk of rows, as columns."""

    rids: list[str]
    encs: list[str]
    risks: list[str]
    ids: list[int]
    seen: Counter[str]
    decode: Mapping[str, str]

    def rows(self) -> Iterator[tuple[str, str, str]]:
        """``(rating_id, window_id, risk)`` text triples, window ids decoded."""
        decode = self.decode
        if all(decode.get(e) == e for e in self.seen):
            return zip(self.rids, self.encs, self.risks, strict=True)
        wins = list(map(decode.__getitem__, self.encs))
        return zip(self.rids, wins, self.risks, strict=True)


def parse_block(text: str, n: int, line: int, prev: int, decode: Mapping[str, str]) -> Block:
    """Check ``n`` complete lines (after ``line`` lines) whose ids must exceed ``prev``.

    The checks run on whole columns at C speed; a chunk that fails them is read line
    by line, which raises :class:`FrameError` at the first wrong line.
    """
    fields = text.replace("\n", ",").split(",")
    rids, encs, risks = fields[0::3], fields[1::3], fields[2::3]
    ok = len(fields) == 3 * n
    if ok:
        digits = "," + ",".join(rids)
        # ascii digits only, and no leading zero (",0" only where the id is 0 itself)
        ok = digits.replace(",", "").isdigit() and digits.isascii()
        ok = ok and (",0" not in digits or _LEADING_ZERO.search(digits) is None)
    if ok:
        ids = list(map(int, rids))
        joined = "".join(risks)
        seen = Counter(encs)
        ok = (
            ids[0] > prev
            and all(map(lt, ids, islice(ids, 1, None)))
            and len(joined) == 8 * n
            and joined[1::8] == "." * n
            and joined.replace(".", "").isdigit()
            and joined.isascii()
            and all(e in decode for e in seen)
            # every line holds exactly its three fields
            and "\n".join(map(",".join, zip(rids, encs, risks, strict=True))) == text
        )
    if not ok:
        rids, encs, risks, ids = _parse_lines(text.split("\n"), line, prev, decode)
        seen = Counter(encs)
    return Block(rids, encs, risks, ids, seen, decode)


_LEADING_ZERO = re.compile(r",0[0-9]")
_RISKS = re.compile(r"[0-9]\.[0-9]{6}")


def _parse_lines(
    lines: list[str], line: int, prev: int, decode: Mapping[str, str]
) -> tuple[list[str], list[str], list[str], list[int]]:
    """Check a chunk line by line (the slow path); return its columns or raise where it fails."""
    rids, encs, risks, ids = [], [], [], []
    for text in lines:
        line += 1
        parts = text.split(",")
        if len(parts) != 3:
            raise FrameError(line, f"expected 3 fields, found {len(parts)}")
        rid, enc, risk = parts
        if not (rid.isascii() and rid.isdigit()) or (rid[0] == "0" and len(rid) > 1):
            raise FrameError(line, f"rating id {rid!r} is not a canonical decimal")
        if int(rid) <= prev:
            raise FrameError(
                line, f"rating id {rid} does not ascend (after {prev}): duplicated or moved"
            )
        prev = int(rid)
        if enc not in decode:
            raise FrameError(line, f"window {enc!r} is not a stratum of the header")
        if _RISKS.fullmatch(risk) is None:
            raise FrameError(line, f"risk {risk!r} is not a number with 6 decimals")
        rids.append(rid)
        encs.append(enc)
        risks.append(risk)
        ids.append(prev)
    return rids, encs, risks, ids


def frame_sha256(chunks: Iterable[bytes]) -> str:
    """SHA-256 of a frame's bytes (no parsing)."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


# -- the sample manifest -------------------------------------------------------------------

TICKET_RULE = (
    "consistent_sampler first_fraction(str(rating_id), 'integrity-audit/v1|' + seed); "
    "per window the take smallest tickets"
)
#: The file name the manifest gives the frame inside a bundle folder.
FRAME_FILE = "frame.csv"
SAMPLE_FILE = "sample.json"


def item_order(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Sample order: uniform items by window and rank, then risk-only items by risk rank."""
    if row["rank"] is not None:
        return (0, row["window_id"], row["rank"], 0)
    return (1, "", row["risk_rank"] or 0, 0)


def sample_manifest(
    sample: SampleRecord,
    frame: FrameRecord,
    strata: Mapping[str, StratumRecord],
    items: Sequence[Mapping[str, Any]],
    not_applicable: str,
) -> dict[str, Any]:
    """The public record of a sample: everything ``audit verify`` needs besides the frame.

    ``items`` in sample order (:func:`item_order`), each with its finding ``code``; an
    item found ``not_applicable`` is marked ``replaced``.
    """
    return {
        "format": SAMPLE_FORMAT,
        "algorithm": sample.algorithm,
        "ticket_rule": TICKET_RULE,
        "sample_id": sample.sample_id,
        "seed": sample.seed,
        "seed_note": sample.seed_note,
        "drawn_at": sample.drawn_at.isoformat(),
        "drawn_by": sample.drawn_by,
        "frame": {
            "frame_id": frame.frame_id,
            "sha256": frame.frame_hash,
            "period": frame.period,
            "checkpoint": frame.checkpoint,
            "ratings": frame.ratings,
            "created_at": frame.created_at.isoformat(),
            "created_by": frame.created_by,
            "file": FRAME_FILE,
        },
        "rate": sample.rate,
        "min_per_stratum": sample.min_per_stratum,
        "strata": [
            {
                "window_id": s.window_id,
                "population": s.population,
                "base_take": s.base_take,
                "take": s.take,
                "history": s.history,
            }
            for s in strata.values()
        ],
        "risk": {
            "extra": sample.risk_extra,
            "min": sample.risk_min,
            "take": sample.risk_take,
            "history": sample.risk_history,
        },
        "items": [
            {
                "rating_id": int(r["rating_id"]),
                "window_id": r["window_id"],
                "rank": r["rank"],
                "risk_rank": r["risk_rank"],
                "ticket": r["ticket"],
                "added": r["added"],
                "replaced": r["code"] == not_applicable,
            }
            for r in items
        ],
    }


def manifest_text(doc: Mapping[str, Any]) -> str:
    """A manifest as it is written to a file (indented JSON, UTF-8, final newline)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


# -- pulls: the export and its manifest ----------------------------------------------------

PULL_FORMATS = ("csv", "jsonl")
EXPORT_COLUMNS = (
    "rating_id",
    "ticket_id",
    "window_id",
    "staff_id",
    "service_type",
    "channel",
    "served_at",
    "submitted_at",
    "received_at",
    "scores",
    "composite",
    "ip_hash",
    "prefix_hash",
    "device_hash",
    "stratum",
    "rank",
    "risk_rank",
    "ticket",
)


def check_pull_format(fmt: str) -> None:
    if fmt not in PULL_FORMATS:
        raise InvalidInput(
            [FieldError("format", f"expected one of {', '.join(PULL_FORMATS)}")], what="pull"
        )


def export_row(rating: StoredRating, item: Mapping[str, Any]) -> dict[str, Any]:
    """One export row: the stored (pseudonymised) rating and its place in the sample."""

    def iso(at: datetime | None) -> str | None:
        return at.isoformat() if at is not None else None

    row = {
        "rating_id": rating.rating_id,
        "ticket_id": rating.ticket_id,
        "window_id": rating.window_id,
        "staff_id": rating.staff_id,
        "service_type": rating.service_type,
        "channel": rating.channel,
        "served_at": iso(rating.served_at),
        "submitted_at": iso(rating.submitted_at),
        "received_at": iso(rating.received_at),
        "scores": dict(rating.scores),
        "composite": rating.composite,
        "ip_hash": rating.ip_hash,
        "prefix_hash": rating.prefix_hash,
        "device_hash": rating.device_hash,
        "stratum": "uniform" if item["rank"] is not None else "risk",
        "rank": item["rank"],
        "risk_rank": item["risk_rank"],
        "ticket": item["ticket"],
    }
    return {k: row[k] for k in EXPORT_COLUMNS}


def render_rows(rows: Sequence[Mapping[str, Any]], fmt: str) -> bytes:
    """Canonical bytes of an export: CSV (scores as JSON text) or JSON Lines."""
    check_pull_format(fmt)
    if fmt == "jsonl":
        return "".join(
            json.dumps(r, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
            for r in rows
        ).encode("utf-8")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(EXPORT_COLUMNS)
    for r in rows:
        cells = []
        for c in EXPORT_COLUMNS:
            v = r[c]
            if c == "scores":
                v = json.dumps(v, sort_keys=True, separators=(",", ":"))
            cells.append("" if v is None else (repr(v) if isinstance(v, float) else str(v)))
        w.writerow(cells)
    return buf.getvalue().encode("utf-8")


def export_ids(data: bytes, fmt: str) -> list[int] | None:
    """The rating ids of an export, in order; ``[]`` if unreadable, ``None`` for an unknown format."""
    text = data.decode("utf-8", errors="replace")
    try:
        if fmt == "jsonl":
            return [
                int(json.loads(line)["rating_id"]) for line in text.splitlines() if line.strip()
            ]
        if fmt == "csv":
            return [int(r["rating_id"]) for r in csv.DictReader(io.StringIO(text))]
    except (ValueError, KeyError, TypeError):
        return []
    return None


def pull_manifest(
    *,
    batch: BatchRecord,
    sample: SampleRecord,
    frame: FrameRecord,
    auditor: str,
    pulled_at: datetime,
    event_id: int | None,
    rows: Sequence[Mapping[str, Any]],
    data: bytes,
    fmt: str,
    file_name: str | None,
) -> dict[str, Any]:
    """The manifest of a pull: it ties the export's bytes to the sample and the frame."""
    return {
        "format": PULL_FORMAT,
        "batch_id": batch.batch_id,
        "batch_seq": batch.seq,
        "sample_id": sample.sample_id,
        "auditor": auditor,
        "pulled_at": pulled_at.isoformat(),
        "pull_event_id": event_id,
        "algorithm": sample.algorithm,
        "seed": sample.seed,
        "rate": sample.rate,
        "min_per_stratum": sample.min_per_stratum,
        "frame_sha256": frame.frame_hash,
        "period": frame.period,
        "checkpoint": frame.checkpoint,
        "items": [
            {
                "rating_id": r["rating_id"],
                "window_id": r["window_id"],
                "stratum": r["stratum"],
                "rank": r["rank"],
                "risk_rank": r["risk_rank"],
                "ticket": r["ticket"],
            }
            for r in rows
        ],
        "file": {
            "name": file_name,
            "format": fmt,
            "rows": len(rows),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    }


# -- bundles -------------------------------------------------------------------------------


@dataclass
class PullDoc:
    name: str
    manifest: Mapping[str, Any]
    data: bytes | None


@dataclass
class Bundle:
    """A loaded bundle; ``frame`` opens the frame's bytes afresh each call."""

    frame: Callable[[], Iterator[bytes]]
    frame_name: str
    sample: Mapping[str, Any]
    pulls: list[PullDoc] = field(default_factory=list)


def bundle_document(
    frame_text: str,
    sample: Mapping[str, Any],
    pulls: Iterable[tuple[Mapping[str, Any], str | None]] = (),
) -> dict[str, Any]:
    """A single-file bundle."""
    return {
        "format": BUNDLE_FORMAT,
        "frame": frame_text,
        "sample": dict(sample),
        "pulls": [{"manifest": dict(m), "data": d} for m, d in pulls],
    }


def load_bundle(path: Path) -> Bundle:
    """Read a bundle folder or single JSON file; ``ValueError`` says what is missing."""
    if path.is_dir():
        sample_path = path / SAMPLE_FILE
        if not sample_path.is_file():
            raise ValueError(f"{path}: no {SAMPLE_FILE} in the bundle folder")
        sample = _json_file(sample_path)
        name = str((sample.get("frame") or {}).get("file") or FRAME_FILE)
        frame_path = path / Path(name).name
        if not frame_path.is_file():
            raise ValueError(f"{path}: the frame file {frame_path.name} is missing")

        def frame() -> Iterator[bytes]:
            with open(frame_path, "rb") as f:
                yield from chunks_of(f)

        pulls = []
        for mpath in sorted(path.glob("*.manifest.json")):
            doc = _json_file(mpath)
            fname = (doc.get("file") or {}).get("name")
            data_path = path / Path(str(fname)).name if fname else None
            data = data_path.read_bytes() if data_path and data_path.is_file() else None
            pulls.append(PullDoc(mpath.name, doc, data))
        return Bundle(frame, frame_path.name, sample, pulls)
    doc = _json_file(path)
    if doc.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"{path}: not a {BUNDLE_FORMAT} document nor a bundle folder")
    text = doc.get("frame")
    if not isinstance(text, str):
        raise ValueError(f"{path}: 'frame' must hold the frame file's text")
    raw = text.encode("utf-8")

    def frame_bytes() -> Iterator[bytes]:
        for i in range(0, len(raw), CHUNK):
            yield raw[i : i + CHUNK]

    pulls = [
        PullDoc(
            f"pulls[{i}]",
            p.get("manifest") or {},
            p["data"].encode("utf-8") if isinstance(p.get("data"), str) else None,
        )
        for i, p in enumerate(doc.get("pulls") or [])
    ]
    return Bundle(frame_bytes, "frame", doc.get("sample") or {}, pulls)


def _json_file(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: {err}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a JSON object")
    return doc
