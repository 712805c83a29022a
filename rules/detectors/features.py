"""Feature frames for the detectors, read from the ledger in time partitions.

:func:`load_frame` reads the columns detection needs (never the raw scores JSON: a
rating is straight-lined at the top of the scale exactly when its weighted composite
equals the scale's maximum) in partitions of ``occurred_at`` (indexed), so memory is
bounded by the partition, not by a query cursor, and the times come back as epoch
seconds computed by the database. :func:`prepare` adds the derived columns every
detector shares. Tests build frames directly with :func:`prepare`.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from integrity.model import Rubric, VenueRegistry
from integrity.ports import (
    LIMITED_BITS,
    SCAN_COLUMNS,
    STATE_BITS,
    STATE_LIMITED_SHIFT,
    Ledger,
    ScanSpec,
)

#: Columns :func:`load_frame` reads (the ledger's scan read model). A raw frame for
#: :func:`prepare` may carry ``counted``, ``dup`` and ``limited``, or ``status`` and
#: ``reasons`` (as stored), instead of ``state``.
RAW_COLUMNS = SCAN_COLUMNS


@dataclass
class Frame:
    """Ratings as one pandas frame, with what the detectors need to interpret them.

    ``in_scope`` marks ratings of the run's time range (``--since/--until``); the
    rest is context (baselines). Only ``status == accepted`` ratings in scope can be
    held by a run.
    """

    frame: pd.DataFrame
    rubric: Rubric
    tz: ZoneInfo
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)


def load_frame(
    ledger: Ledger,
    *,
    rubric: Rubric,
    tz: ZoneInfo,
    registry: VenueRegistry | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    context_days: int = 35,
    partition_days: int = 7,
    chunk: int = 50_000,
    on_progress: Callable[[int], None] | None = None,
    base: pa.Table | None = None,
) -> Frame:
    """Ratings whose ``occurred_at`` is in ``[since - context_days, until)``, as a :class:`Frame`.

    ``base``: a :func:`read_snapshot` of an earlier whole-ledger read (ignored with a
    range): only the ratings above it, and the ``state`` of those in it, are read from
    the ledger; the frame is the same as a full read's (rows, values, categories, codes).

    Ratings before ``since`` are context only (``in_scope`` false). The ledger's scan
    read model yields Arrow tables per slice (time partitions with a range, rating-id
    chunks over the whole ledger); text is dictionary-encoded per slice, so no Python
    object per value is ever made (see :mod:`integrity.adapters.columnar`). ``chunk``
    rating ids make a slice: a reader helper process holds one slice at a time as its
    driver returns it, so it bounds that process's memory (on the 1M benchmark ledger
    its peak is 243 MB with 50,000, 283 MB with 100,000, the read no slower).
    """
    registry = registry if registry is not None else ledger.venue_registry()
    spec = ScanSpec(
        low_below=rubric.low_score_below,
        since=since,
        until=until,
        context_days=context_days,
        partition_days=partition_days,
        chunk=chunk,
    )
    with _lean_heap():
        slices: Iterable[pa.Table] = ()
        if base is not None and since is None and until is None:
            slices = _with_base(ledger, spec, base, on_progress)
        raw = _frame_of(slices or ledger.scan(spec, on_progress))
    since_s = since.timestamp() if since else -np.inf
    until_s = until.timestamp() if until else np.inf
    return prepare(
        raw, rubric=rubric, tz=tz, registry=registry, scope=(since_s, until_s), copy=False
    )


_NUMERIC = {
    "rating_id": np.int64,
    "served_s": float,  # None (no served_at) becomes NaN
    "submitted_s": float,
    "composite": float,
    "state": np.int64,
}


#: Text columns kept as categoricals: integer codes per row, each distinct value once.
_STRINGS = (
    "window_id",
    "staff_id",
    "service_type",
    "ip_hash",
    "prefix_hash",
    "device_hash",
)


def _with_base(
    ledger: Ledger,
    spec: ScanSpec,
    base: pa.Table,
    on_progress: Callable[[int], None] | None,
) -> list[pa.Table]:
    """The snapshot ``base`` with today's ``state`` of its ratings, then the ratings above
    it, as scan slices; empty (read everything) if the ledger no longer has exactly the
    snapshot's ratings below its highest id."""
    ids = base.column("rating_id").to_numpy()
    upto = int(ids[-1]) if len(ids) else 0
    states = list(ledger.scan(replace(spec, ids_upto=upto, state_only=True)))
    got_ids = (
        np.concatenate([t.column("rating_id").to_numpy() for t in states])
        if states
        else np.zeros(0, np.int64)
    )
    if len(got_ids) != len(ids) or not np.array_equal(got_ids, ids):
        return []
    state = (
        # the slices' arrays (a ChunkedArray given whole is read value by value)
        pa.chunked_array([c for t in states for c in t.column("state").chunks], type=pa.int64())
        if states
        else pa.chunked_array([], type=pa.int64())
    )
    head = base.append_column("state", state).select(list(RAW_COLUMNS))
    if on_progress is not None:
        on_progress(head.num_rows)
    return [head, *ledger.scan(replace(spec, ids_above=upto), on_progress)]


#: Rows per record batch of the snapshot file.
_SNAPSHOT_BATCH = 1 << 17


def write_snapshot(path: Path, frame: Frame) -> str:
    """Keep what a whole-ledger read gave (the raw columns but ``state``: a rating's row
    never changes) in an Arrow file at ``path``, written whole or not at all; returns its
    SHA-256, which the caller records where the file cannot change it (the ledger)."""
    df = frame.frame
    names = [name for name in RAW_COLUMNS if name != "state"]
    # each text column's values once, shared by every batch (the file's one dictionary)
    values = {n: _string_values(df[n].array.categories) for n in names if n in _STRINGS}

    def batch(lo: int, hi: int) -> pa.RecordBatch:
        arrays = []
        for name in names:
            col = df[name]
            if name in _STRINGS:
                codes = np.asarray(col.array.codes[lo:hi], dtype=np.int32)
                arrays.append(
                    pa.DictionaryArray.from_arrays(pa.array(codes, mask=codes < 0), values[name])
                )
            elif name in _NUMERIC:
                arrays.append(pa.array(col.to_numpy()[lo:hi]))
            else:
                arrays.append(pa.array(col.iloc[lo:hi].to_numpy(dtype=object), type=pa.string()))
        return pa.record_batch(arrays, names=names)

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    first = batch(0, _SNAPSHOT_BATCH)
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, first.schema) as w:
        # a batch at a time: what is built beside the run's writes stays small
        w.write_batch(first)
        del first
        for lo in range(_SNAPSHOT_BATCH, len(df), _SNAPSHOT_BATCH):
            w.write_batch(batch(lo, lo + _SNAPSHOT_BATCH))
    os.chmod(tmp, 0o600)
    digest = _sha256(tmp)
    os.replace(tmp, path)
    return digest


def _string_values(index: pd.Index) -> pa.Array:
    """A text index as an Arrow ``string`` array: categories kept in Arrow buffers (the
    pseudonyms, :data:`_ARROW_CATEGORIES`) are cast as they are, with no Python string
    per value; the same values as converting them one by one."""
    if isinstance(index.array, pd.arrays.ArrowStringArray):
        got = pa.array(index.array)
        if isinstance(got, pa.ChunkedArray):
            got = got.combine_chunks()
        return got.cast(pa.string())
    return pa.array(np.asarray(index.astype(object)), type=pa.string())


def read_snapshot(path: Path, sha256: str) -> pa.Table | None:
    """The snapshot at ``path`` if its SHA-256 is ``sha256`` (else ``None``: read all)."""
    try:
        if _sha256(path) != sha256:
            return None
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid):
        return None
    ids = table.column("rating_id").to_numpy()
    if len(ids) and not bool(np.all(ids[1:] > ids[:-1])):
        return None
    return table


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


#: Text columns with a distinct value for most ratings (pseudonyms): their categories stay
#: in Arrow buffers (about half the memory of Python strings, and one copy to pickle).
_ARROW_CATEGORIES = frozenset({"ip_hash", "prefix_hash", "device_hash"})


@contextmanager
def _lean_heap() -> Iterator[None]:
    """Give memory freed while reading back to the system (glibc, Arrow's pool).

    The read allocates and frees a slice's buffers again and again; glibc then raises its
    mmap threshold and keeps the freed blocks in the heap, and Arrow's allocator keeps
    its pages: hundreds of MB the frame does not use. A fixed threshold (large blocks
    are mapped and returned on free) and a trim at the end leave the process the size
    of what it keeps; inside :func:`working_heap` its policy is then put back.
    Elsewhere than glibc: no change.
    """
    libc = _libc()
    if libc is not None:
        _malloc_policy(libc, working=False)
    try:
        yield
    finally:
        pa.default_memory_pool().release_unused()
        if libc is not None:
            libc.malloc_trim(0)
            if _working[0]:
                _malloc_policy(libc, working=True)


@contextmanager
def working_heap() -> Iterator[None]:
    """glibc's heap while a detection run works on its frame: the detectors allocate and
    free large temporaries (sorts, group codes, joins) again and again, and each block
    mapped afresh for them is paid again in page faults. Inside, blocks up to 32 MB come
    from the heap and up to 64 MB freed at its top are kept for the next ones (at
    987,682 ratings: the first run 13.1-13.3 -> 11.6-12.4 s, lockstep alone 1.6 -> 0.9 s;
    its main process 60-90 MB larger at its peak); the read inside (:func:`load_frame`)
    stays lean. On leaving: glibc's default thresholds, and a trim. Elsewhere than
    glibc: no change."""
    libc = _libc()
    if libc is None:
        yield
        return
    _working[0] = True
    _malloc_policy(libc, working=True)
    try:
        yield
    finally:
        _working[0] = False
        _malloc_policy(libc, working=False)
        libc.malloc_trim(0)


def release_heap() -> None:
    """Give the heap's free memory back to the system now (glibc; elsewhere nothing):
    inside :func:`working_heap`, between the analysis and the writes, the blocks the
    detectors freed (at 987,682 ratings the run's peak 20-40 MB lower)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _libc() -> Any:
    """glibc, or ``None`` where there is none (``mallopt`` is glibc's)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 - glibc has it
    except (OSError, AttributeError):
        return None
    return libc


def _malloc_policy(libc: Any, *, working: bool) -> None:
    """The thresholds of :func:`working_heap` (``working``) or glibc's defaults, fixed."""
    libc.mallopt(_M_MMAP_THRESHOLD, (32 << 20) if working else (128 << 10))
    libc.mallopt(_M_TRIM_THRESHOLD, (64 << 20) if working else (128 << 10))


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Whether a :func:`working_heap` is open (the read inside it puts its policy back).
_working = [False]


def _slice_columns(table: pa.Table) -> dict[str, Any]:
    """One scan slice as columns of its own: numbers copied into numpy arrays, text
    dictionary-encoded (each distinct value once). Nothing refers to the slice's buffers
    afterwards (a driver's batch is freed whole), so only the encoded slice stays."""
    out: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        col = table.column(name)
        if name in _STRINGS:
            col = col.combine_chunks()
            out[name] = col if pa.types.is_dictionary(col.type) else pc.dictionary_encode(col)
        elif name in _NUMERIC:
            out[name] = np.array(col.to_numpy(), dtype=_NUMERIC[name], copy=True)
        else:  # comment: text of low ratings only, NULL elsewhere
            out[name] = np.array(col.to_numpy(zero_copy_only=False), dtype=object)
    return out


def _frame_of(slices: Iterable[pa.Table]) -> pd.DataFrame:
    """Scan slices (Arrow tables, see ``Ledger.scan``) as one raw frame: text columns as
    categoricals whose categories follow the order of first appearance (so the same rows
    give the same codes however they were sliced), numbers as numpy arrays."""
    parts = [_slice_columns(tab) for tab in slices]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in RAW_COLUMNS})
    data: dict[str, Any] = {}
    for name in RAW_COLUMNS:
        chunks = [p.pop(name) for p in parts]
        if name in _STRINGS:
            # one dictionary for every slice: the first slice's values first, then each
            # later slice's new values in order
            unified = pa.chunked_array(chunks).unify_dictionaries()
            del chunks
            dictionary = unified.chunks[0].dictionary
            codes = np.concatenate(
                [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in unified.chunks]
            ).astype(np.int32)
            if name in _ARROW_CATEGORIES:  # many distinct values: kept in Arrow buffers
                # of their own (a concatenation allocates them): never a view of the
                # snapshot's memory map, which then goes with the read's tables, and
                # with it every page of the file the read touched
                own = pa.concat_arrays([dictionary.slice(0, 0), dictionary])
                cats = pd.Index(pd.arrays.ArrowStringArray(own.cast(pa.large_string())))
            else:
                cats = pd.Index(dictionary.to_numpy(zero_copy_only=False), dtype=object)
            del unified
            data[name] = pd.Categorical.from_codes(
                codes, dtype=pd.CategoricalDtype(cats), validate=False
            )
        elif name in _NUMERIC:
            data[name] = np.concatenate(chunks)
        else:
            data[name] = pd.Series(np.concatenate(chunks), dtype=object)
    return pd.DataFrame(data, copy=False)


def _aware(value: datetime | str) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def prepare(
    raw: pd.DataFrame,
    *,
    rubric: Rubric,
    tz: ZoneInfo,
    registry: VenueRegistry | None = None,
    scope: tuple[float, float] = (-np.inf, np.inf),
    copy: bool = True,
) -> Frame:
    """Add the shared derived columns to a raw frame (see :data:`RAW_COLUMNS`).

    Adds: ``delay_s`` (seconds from service to rating, NaN when unknown), ``kiosk``
    (the device is a registered rating pad), ``venue`` (the address is a registered
    hall network), ``crowd`` (kiosk or venue: an honest crowd, never a brushing key
    by itself), ``top`` / ``bottom`` (every dimension at the scale's max / min),
    ``low`` (composite below the rubric's low mark), ``day`` (local day number),
    ``hour`` (local hour, float), ``counted`` (accepted), ``dup`` (a repeated ticket),
    ``limited`` (bits of :data:`~integrity.ports.LIMITED_BITS`: which rate limits decided
    it), ``in_scope``, and integer
    codes ``win``, ``dev``, ``ipc``, ``pfx``, ``stf`` for fast grouping.
    """
    registry = registry or VenueRegistry()
    df = raw.copy() if copy else raw
    df["rating_id"] = pd.to_numeric(df["rating_id"]).astype(np.int64)
    for col in ("served_s", "submitted_s", "composite"):
        if df[col].dtype != np.float64:
            df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "state" in df:  # the scan's one integer: counted, repeated ticket, rate limits
        state = df.pop("state").to_numpy(dtype=np.int64)
        df["counted"] = (state & STATE_BITS["counted"]) > 0
        df["dup"] = (state & STATE_BITS["dup"]) > 0
        df["limited"] = state >> STATE_LIMITED_SHIFT
    df = df.reset_index(drop=True)
    df["delay_s"] = df["submitted_s"] - df["served_s"]
    # integer codes first: every later test works on them, never on the strings
    for col, name in (
        ("window_id", "win"),
        ("device_hash", "dev"),
        ("ip_hash", "ipc"),
        ("prefix_hash", "pfx"),
        ("staff_id", "stf"),
        ("service_type", "stype"),
    ):
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            codes = df[col].cat.codes.to_numpy()
        else:
            codes, uniq = pd.factorize(df[col], use_na_sentinel=True)
            df[col] = pd.Categorical.from_codes(codes, categories=pd.Index(uniq, dtype=object))
        df[name] = np.asarray(codes, dtype=np.int64)
    df["kiosk"] = _member(df, "device_hash", "dev", set(registry.kiosks))
    df["venue"] = _member(df, "ip_hash", "ipc", set(registry.ip_hashes)) | _member(
        df, "prefix_hash", "pfx", set(registry.prefix_hashes)
    )
    df["crowd"] = df["kiosk"] | df["venue"]
    eps = 1e-9
    df["top"] = df["composite"] >= rubric.scale_max - eps
    df["bottom"] = df["composite"] <= rubric.scale_min + eps
    df["low"] = df["composite"] < rubric.low_score_below
    w = np.array(list(rubric.weights.values()), dtype=float)
    step = float(w.max() / w.sum())
    # near-straight-lined at the top: every dimension at the maximum but at most one, one step lower
    df["topbox"] = df["composite"] >= rubric.scale_max - step - eps
    local = _local_seconds(df["submitted_s"].to_numpy(), tz)
    df["day"] = np.floor(local / 86400).astype(np.int64)
    df["hour"] = (local % 86400) / 3600.0
    if "counted" in df:
        df["counted"] = df["counted"].astype(bool)
    else:
        df["counted"] = (df["status"] == "accepted").to_numpy()
    # a repeated ticket is the attacker's or a retry: never part of any window's traffic
    if "dup" in df:
        df["dup"] = df["dup"].astype(bool)
    else:
        df["dup"] = df["reasons"].fillna("").str.contains("duplicate_ticket").to_numpy()
    # which rate limits (or the limiter's absence) decided it: bits of LIMITED_BITS
    if "limited" in df:
        df["limited"] = pd.to_numeric(df["limited"]).fillna(0).astype(np.int64)
    else:
        codes = df["reasons"].fillna("").astype(str).str.split(";")
        df["limited"] = np.array(
            [sum(LIMITED_BITS.get(c, 0) for c in set(cs)) for cs in codes], dtype=np.int64
        )
    # who a low score is aimed at: the staff member when named, else the window
    n_win = int(df["win"].max()) + 1 if len(df) else 0
    df["tgt"] = np.where(df["stf"] >= 0, df["stf"] + n_win, df["win"]).astype(np.int64)
    lo, hi = scope
    df["in_scope"] = (df["submitted_s"] >= lo) & (df["submitted_s"] < hi)
    return Frame(df, rubric, tz)


def _member(df: pd.DataFrame, col: str, code: str, wanted: set[str]) -> np.ndarray:
    """Rows whose ``col`` is in ``wanted``, decided once per distinct value."""
    if not wanted or df.empty:
        return np.zeros(len(df), dtype=bool)
    hit = np.append(np.asarray(df[col].cat.categories.isin(list(wanted)), dtype=bool), False)
    return hit[df[code].to_numpy()]  # code -1 (no value) reads the False appended


def nunique_by(df: pd.DataFrame, keys: list[str], col: str) -> pd.Series:
    """Distinct ``col`` values per ``keys`` group (faster than ``groupby().nunique()``).

    Only the columns it counts are copied (the distinct rows of the whole frame would
    copy every column of a large frame only to count them)."""
    return df[[*keys, col]].drop_duplicates().groupby(keys).size()


def rows_of(df: pd.DataFrame, units: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of ``df`` whose ``keys`` are those of some unit (a hash join), index kept."""
    u = units[keys].drop_duplicates()
    out = df.reset_index().merge(u, on=keys, how="inner")
    return out.set_index("index")


def pair_key(a: np.ndarray | pd.Series, b: np.ndarray | pd.Series) -> np.ndarray:
    """One int64 per (a, b) pair of non-negative codes (b < 2**31)."""
    return np.asarray(a, dtype=np.int64) * (1 << 31) + np.asarray(b, dtype=np.int64)


def target_name(df: pd.DataFrame, tgt: int) -> str:
    """The staff id, or ``window:<id>``, that a ``tgt`` code stands for."""
    row = df.loc[df["tgt"] == tgt].iloc[0]
    return str(row["staff_id"]) if row["stf"] >= 0 else f"window:{row['window_id']}"


def _local_seconds(epoch: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Epoch seconds -> seconds since the local epoch in ``tz`` (offset per hour bucket)."""
    if len(epoch) == 0:
        return epoch.astype(float)
    hours = np.floor(epoch / 3600).astype(np.int64)
    uniq, inv = np.unique(hours, return_inverse=True)
    offs = np.array(
        [
            (datetime.fromtimestamp(int(h) * 3600, tz).utcoffset() or timedelta()).total_seconds()
            for h in uniq.tolist()
        ]
    )
    return epoch + offs[inv]


def group_sizes(codes: np.ndarray) -> np.ndarray:
    """Size of each row's group (``codes`` from :func:`pd.factorize`; -1 rows get 0)."""
    ok = codes >= 0
    out = np.zeros(len(codes), dtype=np.int64)
    if ok.any():
        counts = np.bincount(codes[ok])
        out[ok] = counts[codes[ok]]
    return out
