"""The detect run: features -> detectors -> combination -> hold events on the ledger.

Incremental and idempotent. A run looks at ratings submitted in ``[since, until)``
(everything by default) with ``[detect] context_days`` of earlier ratings as
baselines. Only ratings that currently count (``accepted``) can be held. Each hold is
one ledger event (kind ``hold``, actor ``detector``) carrying every finding behind
it (detector, score, threshold, parameters, a sentence); the pair (rating, evidence
fingerprint) is recorded in ``detect_holds`` and never acted on twice, and evidence a
reviewer cleared (``detect_cleared``) never holds that rating again. So running twice
changes nothing, and a rerun over more data only adds what is new.

Reading only what is new, with the result of a full run (the detectors' baselines and
thresholds are calibrated over the whole ledger, so the analysis itself always covers
all of it):

* each run records its watermark in ``detect_runs`` (the newest event before it read,
  and after its own writes). A whole-ledger run with no event since that detection
  reads (a new rating's decision, any status change, a venue reload, a risk rescored,
  another rule set) has nothing to do and reads nothing (:meth:`DetectService.up_to_date`);
* a whole-ledger run keeps a columnar snapshot of what it read in the instance's home
  (rating rows never change; its SHA-256 recorded with the run). The next one reads
  from the ledger only the ratings above it and the current ``state`` of the others,
  and gets exactly the frame a full read gives (``features.load_frame(base=...)``).

Speed and memory: the read is columnar (:mod:`integrity.adapters.columnar`); a second
process, forked before the read while this one is small, imports pyod meanwhile and
then computes the soft signals and fits half of the detectors beside this process
(:class:`~rules.detectors.generic.Worker`); while this process works on the frame,
glibc keeps the large blocks the detectors free for reuse
(:func:`~rules.detectors.features.working_heap`); holds are written in bulk (one event per
hold, ids allocated up front, evidence rows and status moves as plain driver
statements, each finding's evidence encoded once) and the changed risks as one block of
columns under one sealed event (``Ledger.set_risk``); the snapshot is written in a
thread beside them, and so are SQLite's WAL checkpoints of those writes
(``Ledger.checkpointing_beside``); the holds and cases are sealed into the log by the
second process while the risks are written (:meth:`Worker.seal`: forked while the run
was small, so the run's writes copy none of its pages), and the close seals the rest
(the same log: events are sealed in id order, and the run is their one writer).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import Clock
from integrity.errors import ConfigError, EngineError
from integrity.log import MerkleLog
from integrity.model import Event, Rubric, Status
from integrity.ports import Ledger, RiskColumns
from integrity.sqlkit import Encoded, canonical_json, id_in
from rules import tables as rt
from rules.detectors.base import Detector, Flag, Signal
from rules.detectors.combine import Verdicts, combine
from rules.detectors.features import (
    Frame,
    load_frame,
    read_snapshot,
    release_heap,
    working_heap,
    write_snapshot,
)
from rules.detectors.generic import Worker, soft_signals
from rules.detectors.registry import DETECTORS

log = logging.getLogger(__name__)

ACTOR = "detector"
#: Detectors fitted in the run's second process, beside the soft signals (the split
#: that balances the two on the benchmark ledger; the result does not depend on it).
#: The ring detector goes with ``device_repeat``: it starts from the same device units,
#: scored once per process (see ``DeviceRepeatDetector._score``).
WORKER_DETECTORS = frozenset({"device_repeat", "ring", "coerced"})
#: Detectors fitted by whichever process is free first (each claims the next when it has
#: done its own share), largest first: how fast each process goes depends on what else
#: runs on the machine.
EITHER_DETECTORS = ("self_rating", "comment_duplicate", "low_shift", "low_concentration")
_ORDER = {name: i for i, name in enumerate(DETECTORS)}
#: Holds written per transaction (each a ledger event, a status row and its evidence rows);
#: a chunk's events are built before it is written, so this bounds what the writes add to
#: the run's memory (at 1M, 5,000 keeps the writes' peak at the analysis' peak, where
#: 10,000 went 4-30 MB above it, in the same time).
_HOLD_CHUNK = 5_000
#: The columns of a ``detect_holds`` row, as :meth:`DetectService._hold_rows` gives them.
_HOLD_COLS = ("rating_id", "fingerprint", "detector", "reason", "event_id", "run_id")
#: The columnar snapshot of the last whole-ledger read, in the instance's home.
SNAPSHOT_FILE = "detect-snapshot.arrow"
#: Event kinds without a status that change what detection reads (besides status events).
_INPUT_KINDS = (Kind.VENUES_LOADED.value, Kind.RISK_SCORED.value, Kind.RULE_SET_ACTIVATED.value)


@dataclass(frozen=True)
class DetectConfig:
    """The ``[detect]`` table of the rule set (see ``rules/default_ruleset.toml``)."""

    target_honest_hold: float = 0.003
    fdr: float = 0.05
    hold_risk: float = 0.5
    context_days: int = 35
    partition_days: int = 7
    budget: Mapping[str, float] = field(
        default_factory=lambda: {k: v for k, (_, v) in DETECTORS.items()}
    )
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    pyod: Mapping[str, Any] = field(default_factory=lambda: {"enabled": True, "method": "ecod"})
    fairness: Mapping[str, Any] = field(default_factory=lambda: {"enabled": True})
    prior: Mapping[str, Any] = field(default_factory=lambda: {"enabled": True})

    @classmethod
    def from_section(cls, raw: Mapping[str, Any]) -> DetectConfig:
        """Validate a ``[detect]`` table; ``ConfigError`` names the field at fault."""
        d = cls()

        def num(name: str, default: float, lo: float, hi: float) -> float:
            v = raw.get(name, default)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ConfigError(f"[detect] {name}: {v!r} is not a number in [{lo}, {hi}]")
            return float(v)

        budget = dict(d.budget)
        for k, v in dict(raw.get("budget", {})).items():
            if k not in DETECTORS:
                raise ConfigError(f"[detect.budget] {k}: unknown detector ({', '.join(DETECTORS)})")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"[detect.budget] {k}: {v!r} is not a number >= 0")
            budget[k] = float(v)
        options = {k: dict(raw[k]) for k in DETECTORS if isinstance(raw.get(k), Mapping)}
        return cls(
            target_honest_hold=num("target_honest_hold", d.target_honest_hold, 0.0, 0.5),
            fdr=num("fdr", d.fdr, 0.0, 1.0),
            hold_risk=num("hold_risk", d.hold_risk, 0.0, 1.0),
            context_days=int(num("context_days", d.context_days, 0, 3650)),
            partition_days=int(num("partition_days", d.partition_days, 1, 366)),
            budget=budget,
            options=options,
            pyod={**d.pyod, **dict(raw.get("pyod", {}))},
            fairness={**d.fairness, **dict(raw.get("fairness", {}))},
            prior={**d.prior, **dict(raw.get("prior", {}))},
        )

    def detectors(self) -> list[Detector]:
        """Every detector with its share of the budget: target * weight / sum(weights)."""
        total = sum(self.budget.values()) or 1.0
        out = []
        for name, (cls, _) in DETECTORS.items():
            share = self.budget.get(name, 0.0)
            if share <= 0:
                continue
            try:
                det = cls(
                    budget=self.target_honest_hold * share / total,
                    fdr=self.fdr,
                    **dict(self.options.get(name, {})),
                )
            except TypeError as err:
                raise ConfigError(f"[detect.{name}]: {err}") from None
            out.append(det)
        return out


@dataclass
class DetectReport:
    """What one run found and did."""

    run_id: int | None
    ratings: int
    flags: list[Flag]
    held: int
    cases: list[str]
    held_by_reason: Counter[str]
    risk_updates: int
    seconds: float
    thresholds: dict[str, float] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    #: The run that already covered the ledger as it is, when this one had nothing to do.
    up_to_date: int | None = None

    @property
    def flag_counts(self) -> dict[str, int]:
        c: Counter[str] = Counter()
        for f in self.flags:
            if f.strength >= 1:
                c[f.reason] += 1
        return dict(c)


class _Snapshot:
    """:func:`write_snapshot` in a thread of its own, started at once."""

    def __init__(self, path: Path, frame: Frame) -> None:
        self.sha: str | None = None
        self.error: BaseException | None = None
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._write, args=(path, frame), daemon=True)
        self._thread.start()

    def _write(self, path: Path, frame: Frame) -> None:
        t0 = time.perf_counter()
        try:
            self.sha = write_snapshot(path, frame)
        except OSError:  # no room, read-only home: the next run reads everything
            self.sha = None
        except BaseException as err:  # a bug: raised in the run's thread by result()
            self.error = err
        self.seconds = time.perf_counter() - t0

    def result(self, timings: dict[str, float]) -> str | None:
        """Its SHA-256 once written (``None`` if it could not be)."""
        self._thread.join()
        timings["snapshot_write (beside)"] = self.seconds
        if self.error is not None:
            raise self.error
        return self.sha


def _sealed(worker: Worker, timings: dict[str, float]) -> None:
    """Wait for the seal the worker made beside the risks (how many events, and the
    wait, in ``timings``). A seal that failed there only warns: the close seals."""
    t0 = time.perf_counter()
    try:
        n = worker.sealed()
    except EngineError as err:
        log.warning("sealing beside the run failed (the close seals): %s", err)
        return
    if n is not None:
        timings["sealed_beside"] = float(n)
        timings["seal_beside_wait"] = time.perf_counter() - t0


def _recorded(verdicts: Verdicts, ids: list[int]) -> dict[int, float]:
    """:meth:`Verdicts.recorded` of many ratings at once (one lookup of the ranked risks,
    not one per rating): the same values."""
    ranked = verdicts.ranked
    if ranked.index.has_duplicates:  # never from combine; then rating by rating
        return {rid: verdicts.recorded(rid) for rid in ids}
    got = ranked.reindex(ids)
    known = got.notna().to_numpy()
    vals = got.to_numpy(dtype=float)
    return {
        rid: float(v) if ok else float(verdicts.risk.get(rid, 0.0))
        for rid, v, ok in zip(ids, vals.tolist(), known.tolist(), strict=True)
    }


def _float_object(doc: dict[str, float]) -> str:
    """:func:`canonical_json` of an object of plain keys (a soft signal's name) and
    finite floats, each value written as its repr (what the JSON encoder writes)."""
    if all(type(v) is float and math.isfinite(v) for v in doc.values()) and all(
        type(k) is str and k.isidentifier() for k in doc
    ):
        return "{" + ",".join(f'"{k}":{float.__repr__(doc[k])}' for k in sorted(doc)) + "}"
    return canonical_json(doc)


def _peak(timings: dict[str, float], stage: str) -> None:
    """The process's peak resident memory so far (MB), recorded after ``stage``; after
    the read also the peak of the processes that ended by then (the SQLite reader)."""
    try:
        import resource

        timings[f"peak_mb_{stage}"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if stage == "load":
            kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            timings["reader_peak_mb"] = kids
    except (ImportError, OSError):  # not on this platform
        pass


class DetectService:
    """Runs detection over a ledger and writes its holds, cases and risks."""

    def __init__(
        self,
        ledger: Ledger,
        config: DetectConfig,
        *,
        rubric: Rubric,
        tz: ZoneInfo,
        clock: Clock,
        rule_set_id: str,
        snapshot: Path | None = None,
        merkle: MerkleLog | None = None,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.rubric = rubric
        self.tz = tz
        self.clock = clock
        self.rule_set_id = rule_set_id
        #: Where a whole-ledger run keeps the columnar snapshot of what it read (``None``:
        #: no snapshot, every run reads everything). See :func:`features.write_snapshot`.
        self.snapshot = snapshot
        #: The instance's log: the run's worker process seals the holds and cases into it
        #: while the run writes the risks (``None``: all is left to the close).
        self.merkle = merkle
        self._evidence_cache: dict[tuple[int, bool], tuple[Flag, dict[str, Any]]] = {}
        self._parts_cache: dict[tuple[int, bool], tuple[Flag, dict[str, str]]] = {}
        self._text_cache: dict[tuple[int, bool], tuple[Flag, str]] = {}
        self._run_text: tuple[int | None, str] = (None, "")  # a run's id, encoded once

    @classmethod
    def from_app(cls, app: App) -> DetectService:
        """Wire from an opened instance (the composition root's factory)."""
        cls.check_schema(app.ledger)
        return cls(
            app.ledger,
            DetectConfig.from_section(app.core.section("detect")),
            rubric=app.core.rubric,
            tz=app.core.timezone,
            clock=app.clock,
            rule_set_id=app.core.rule_set_id,
            snapshot=app.settings.home / SNAPSHOT_FILE,
            merkle=app.log,
        )

    @staticmethod
    def check_schema(ledger: Ledger) -> None:
        if not ledger.has_tables("detect_holds"):
            raise ConfigError(
                "the ledger has no detection tables; run `integrity init` to upgrade it"
            )

    # -- analysis ---------------------------------------------------------------------------

    def worker(self) -> Worker:
        """The run's second process (see :class:`~rules.detectors.generic.Worker`); start
        it before reading, while this process is small."""
        pyod = self.config.pyod
        return Worker(
            pyod_method=str(pyod.get("method", "ecod")) if pyod.get("enabled", True) else None,
            log=self.merkle,
        )

    def analyse(
        self,
        frame: Frame,
        timings: dict[str, float] | None = None,
        worker: Worker | None = None,
    ) -> tuple[list[Flag], list[Signal], Verdicts, dict[str, float]]:
        """Fit every detector on ``frame``; findings, soft signals, combination, thresholds.

        The soft signals and the detectors of :data:`WORKER_DETECTORS` run in the
        ``worker`` process (one is started here if none is given) while this process
        fits the others; the findings are put back in the registry's order, so the result
        does not depend on where each ran.
        """
        df = frame.frame
        n = len(df)
        thresholds: dict[str, float] = {}
        pyod_opts = fair_opts = prior_opts = None
        if self.config.pyod.get("enabled", True):
            pyod_opts = {k: v for k, v in self.config.pyod.items() if k != "enabled"}
        if self.config.fairness.get("enabled", True):
            fair_opts = {k: v for k, v in self.config.fairness.items() if k != "enabled"}
        if self.config.prior.get("enabled", True):
            prior_opts = {k: v for k, v in self.config.prior.items() if k != "enabled"}
        detectors = self.config.detectors()
        there = [d for d in detectors if d.name in WORKER_DETECTORS]
        either = sorted(
            (d for d in detectors if d.name in EITHER_DETECTORS),
            key=lambda d: EITHER_DETECTORS.index(d.name),
        )
        here = [d for d in detectors if d.name not in WORKER_DETECTORS | {*EITHER_DETECTORS}]
        by_name: dict[str, list[Flag]] = {}
        own = worker is None
        worker = worker or self.worker()
        try:
            worker.start()
            t0 = time.perf_counter()
            worker.submit(frame, (pyod_opts, fair_opts, prior_opts), there, n, either)
            if timings is not None:
                timings["to_worker"] = time.perf_counter() - t0
            for det in chain(here, worker.claimed()):  # claimed one at a time
                t0 = time.perf_counter()
                det.fit(frame, total_ratings=n)
                thresholds[det.name] = det.threshold_
                by_name[det.name] = det.flags(frame)
                if timings is not None:
                    timings[det.name] = time.perf_counter() - t0
            t0 = time.perf_counter()
            parts, fitted = worker.result()
            if timings is not None:
                timings["worker_wait"] = time.perf_counter() - t0
        finally:
            if own:
                worker.close()
        if timings is not None:
            timings["soft_signals (worker)"] = float(parts.pop("seconds", 0.0))
            if "peak_mb" in parts:
                timings["worker_peak_mb"] = float(parts.pop("peak_mb"))
        parts.pop("seconds", None)
        parts.pop("peak_mb", None)
        for name, (threshold, found, seconds) in fitted.items():
            thresholds[name] = threshold
            by_name[name] = found
            if timings is not None:
                timings[f"{name} (worker)"] = seconds
        flags = [f for det in detectors for f in by_name[det.name]]
        t0 = time.perf_counter()
        signals = soft_signals(frame, parts, pyod_opts, fair_opts, prior_opts)
        eligible = set(df.loc[df["counted"] & df["in_scope"], "rating_id"].tolist())
        verdicts = combine(flags, signals, hold_risk=self.config.hold_risk, eligible=eligible)
        if timings is not None:
            timings["combine"] = time.perf_counter() - t0
        return (
            flags,
            signals,
            verdicts,
            dict(sorted(thresholds.items(), key=lambda kv: _ORDER[kv[0]])),
        )

    # -- the run ------------------------------------------------------------------------------

    def run(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        on_progress: Callable[[int], None] | None = None,
        dry_run: bool = False,
        full: bool = False,
    ) -> DetectReport:
        """Detect over ``[since, until)`` and hold what is new; see the module docstring.

        Over the whole ledger (no ``since``/``until``), unless ``full``: when nothing that
        detection reads changed since the last complete whole-ledger run (see
        :meth:`up_to_date`), there is nothing to do, and the report says which run
        already covered it (``up_to_date``), having read nothing.
        """
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        started = self.clock.now()
        if since is None and until is None and not dry_run and not full:
            covered = self.up_to_date()
            if covered is not None:
                return DetectReport(
                    None, 0, [], 0, [], Counter(), 0, time.perf_counter() - t0,
                    up_to_date=covered,
                )  # fmt: skip
        events_from = self.ledger.last_event_id()
        # the worker is forked now, while this process is small; the frame's work then
        # keeps its freed blocks for reuse (see ``features.working_heap``)
        with self.worker() as worker, working_heap():
            return self._run(
                since, until, on_progress, dry_run, t0, timings, started, events_from,
                worker,
            )  # fmt: skip

    def _base(self) -> tuple[pa.Table | None, float]:
        """The snapshot the last complete whole-ledger run kept, if it is still the file it
        wrote (its SHA-256 recorded in the run's row), and the seconds it took to check."""
        t0 = time.perf_counter()
        if self.snapshot is None or not self.snapshot.exists():
            return None, 0.0
        r = rt.detect_runs.c
        with self.ledger.reading() as conn:
            sha = conn.execute(
                sa.select(r.snapshot_sha256)
                .where(r.complete.is_(True), r.since.is_(None), r.until.is_(None))
                .order_by(r.run_id.desc())
                .limit(1)
            ).scalar()
        if not sha:
            return None, 0.0
        return read_snapshot(self.snapshot, str(sha)), time.perf_counter() - t0

    def _run(
        self,
        since: datetime | None,
        until: datetime | None,
        on_progress: Callable[[int], None] | None,
        dry_run: bool,
        t0: float,
        timings: dict[str, float],
        started: datetime,
        events_from: int | None,
        worker: Worker,
    ) -> DetectReport:
        whole = since is None and until is None
        base, checked = self._base() if whole else (None, 0.0)
        if base is not None:
            timings["snapshot_rows"] = float(base.num_rows)
            timings["snapshot_check"] = checked
        frame = load_frame(
            self.ledger,
            rubric=self.rubric,
            tz=self.tz,
            since=since,
            until=until,
            context_days=self.config.context_days,
            partition_days=self.config.partition_days,
            on_progress=on_progress,
            base=base,
        )
        del base
        timings["load"] = time.perf_counter() - t0
        _peak(timings, "load")
        flags, _, verdicts, thresholds = self.analyse(frame, timings, worker)
        _peak(timings, "analyse")
        release_heap()  # what the analysis freed, before the writes build theirs
        if dry_run or not worker.can_seal():
            worker.close()  # else kept to seal the holds and cases beside the risks
        t1 = time.perf_counter()
        if dry_run:
            return DetectReport(
                None, len(frame), flags, len(verdicts.hold), [], Counter(), 0,
                time.perf_counter() - t0, thresholds, timings,
            )  # fmt: skip
        # the snapshot is written beside the holds and risks (Arrow's writer and the
        # hash release the GIL, as SQLite does); its SHA-256 is recorded only when the
        # run finishes, so a run that fails leaves the last one's record (which no
        # longer matches the file: the next run reads everything)
        snap = _Snapshot(self.snapshot, frame) if whole and self.snapshot is not None else None
        try:
            # the WAL copied into the database beside the writes, not by each commit
            with self.ledger.checkpointing_beside():
                run_id = self._start_run(started, since, until, len(frame))
                held, by_reason = self._hold(verdicts, frame, run_id)
                cases = self._cases(flags, verdicts, run_id)
                worker.seal(self.clock.now())  # the holds and cases, sealed beside the risks
                timings["write_holds"] = time.perf_counter() - t1
                _peak(timings, "write_holds")
                t2 = time.perf_counter()
                risk_updates = self._risks(verdicts, frame)
                timings["write_risks"] = time.perf_counter() - t2
                t2 = time.perf_counter()
            timings["last_checkpoint"] = time.perf_counter() - t2
        finally:
            try:
                sha = snap.result(timings) if snap is not None else None
            finally:
                try:
                    _sealed(worker, timings)
                finally:
                    worker.close()
        self._finish_run(
            run_id, len([f for f in flags if f.strength >= 1]), held, len(cases), events_from,
            sha,
        )  # fmt: skip
        timings["write"] = time.perf_counter() - t1
        _peak(timings, "write")
        return DetectReport(
            run_id, len(frame), flags, held, cases, by_reason, risk_updates,
            time.perf_counter() - t0, thresholds, timings,
        )  # fmt: skip

    def _start_run(
        self, at: datetime, since: datetime | None, until: datetime | None, n: int
    ) -> int:
        with self.ledger.unit_of_work() as uow:
            rid = uow.connection.execute(
                rt.detect_runs.insert().returning(rt.detect_runs.c.run_id),
                {
                    "started_at": at,
                    "since": since,
                    "until": until,
                    "rule_set_id": self.rule_set_id,
                    "ratings": n,
                },
            ).scalar_one()
        return int(rid)

    def _finish_run(
        self,
        run_id: int,
        flags: int,
        held: int,
        cases: int,
        events_from: int | None,
        snapshot_sha256: str | None = None,
    ) -> None:
        with self.ledger.unit_of_work() as uow:
            uow.connection.execute(
                rt.detect_runs.update()
                .where(rt.detect_runs.c.run_id == run_id)
                .values(
                    finished_at=self.clock.now(),
                    flags=flags,
                    held=held,
                    cases=cases,
                    complete=True,
                    events_from=events_from or 0,
                    events_to=self.ledger.last_event_id() or 0,
                    snapshot_sha256=snapshot_sha256,
                )
            )

    def up_to_date(self) -> int | None:
        """The last complete whole-ledger run, if nothing detection reads changed since it
        (else ``None``): under the same rule set, no event after the one it started from
        that moved a rating's status (a new rating's decision, a hold, a clear, an appeal),
        reloaded the venues or rescored risk, other than the run's own writes. A run over
        the same ledger would then hold nothing and change no risk (detection is a
        function of what it reads, and idempotent), so it need not read anything."""
        r = rt.detect_runs.c
        with self.ledger.reading() as conn:
            last = conn.execute(
                sa.select(r.run_id, r.rule_set_id, r.events_from, r.events_to)
                .where(r.complete.is_(True), r.since.is_(None), r.until.is_(None))
                .order_by(r.run_id.desc())
                .limit(1)
            ).first()
        if last is None or last.events_to is None or last.rule_set_id != self.rule_set_id:
            return None
        moved = self.ledger.first_event_after(
            int(last.events_from),
            kinds=_INPUT_KINDS,
            except_actor=ACTOR,
            except_until=int(last.events_to),
        )
        return None if moved is not None else int(last.run_id)

    def _known(self, table: sa.Table, ids: list[int]) -> set[tuple[int, str]]:
        """(rating, fingerprint) pairs of ``table`` for the ratings ``ids``."""
        if not ids:
            return set()
        with self.ledger.reading() as conn:
            rows = conn.execute(
                sa.select(table.c.rating_id, table.c.fingerprint).where(
                    id_in(conn.dialect.name, table.c.rating_id, ids)
                )
            )
            return {(int(r), str(f)) for r, f in rows}

    def _hold(self, verdicts: Verdicts, frame: Frame, run_id: int) -> tuple[int, Counter[str]]:
        ids = sorted(verdicts.hold)
        if not ids:
            return 0, Counter()
        done = self._known(rt.detect_holds, ids) | self._known(rt.detect_cleared, ids)
        now = self.clock.now()
        held = 0
        by_reason: Counter[str] = Counter()
        todo: list[tuple[int, list[Flag]]] = []
        for rid in ids:
            fl = [f for f in verdicts.hold[rid] if (rid, f.fingerprint) not in done]
            if fl:
                todo.append((rid, fl))
        self._clear_caches()
        recorded = _recorded(verdicts, [rid for rid, _ in todo])
        for lo in range(0, len(todo), _HOLD_CHUNK):
            chunk = {
                rid: (self._hold_event(rid, fl, verdicts, run_id, now, recorded[rid]), fl)
                for rid, fl in todo[lo : lo + _HOLD_CHUNK]
            }
            with self.ledger.unit_of_work() as uow:
                # only ratings that still count: a reviewer or an appeal may have moved one
                written = uow.change_many(
                    [ev for ev, _ in chunk.values()],
                    only_if=lambda st: st.status is Status.ACCEPTED,
                )
                holds = [
                    row
                    for ev in written
                    for row in self._hold_rows(
                        int(ev.rating_id or 0), chunk[int(ev.rating_id or 0)][1],
                        int(ev.event_id or 0), run_id,
                    )
                ]  # fmt: skip
                uow.load(rt.detect_holds, _HOLD_COLS, holds)
            held += len(written)
            by_reason.update(chain.from_iterable(ev.reasons for ev in written))
        self._clear_caches()
        return held, by_reason

    def _hold_event(
        self,
        rid: int,
        fl: list[Flag],
        verdicts: Verdicts,
        run_id: int,
        now: datetime,
        risk: float | None = None,
    ) -> Event:
        reasons = tuple(sorted({f.reason for f in fl}))
        # the strongest finding in full; the others without repeating the parameters
        # (each finding's evidence encoded once however many ratings it holds: the
        # event's text joined from the encoded parts, as encoding it whole would give)
        first, first_parts = self._evidence_parts(fl[0])
        value = round(verdicts.recorded(rid) if risk is None else risk, 6)
        evidence: dict[str, Any] = {**first, "risk": value, "run_id": run_id}
        run_text = self._run_text
        if run_text[0] != run_id:
            run_text = self._run_text = (run_id, canonical_json(run_id))
        parts = {
            **first_parts,
            # a finite float encodes as its repr (what the JSON encoder writes for it)
            "risk": (
                float.__repr__(value)
                if type(value) is float and math.isfinite(value)
                else canonical_json(value)
            ),
            "run_id": run_text[1],
        }
        if len(fl) > 1:
            also = [self._evidence_parts(f, brief=True) for f in fl[1:]]
            evidence["also"] = [doc for doc, _ in also]
            parts["also"] = "[" + ",".join(self._evidence_text(f) for f in fl[1:]) + "]"
        soft = verdicts.soft.get(rid)
        if soft:
            signals = evidence["signals"] = {k: round(v, 4) for k, v in soft.items()}
            parts["signals"] = _float_object(signals)
            if all(f.strength < 1 for f in fl):
                reasons = tuple(sorted({*reasons, Reason.OUTLIER_PYOD}))
        return Event(
            kind=Kind.HOLD,
            actor=ACTOR,
            at=now,
            rating_id=rid,
            status=Status.HELD,
            reasons=reasons,
            rule_set_id=self.rule_set_id,
            evidence=Encoded.of(evidence, parts),
        )

    def _clear_caches(self) -> None:
        self._evidence_cache.clear()
        self._parts_cache.clear()
        self._text_cache.clear()

    def _evidence_parts(
        self, f: Flag, *, brief: bool = False
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """A finding's evidence and each of its values encoded, built once per finding."""
        doc = self._evidence(f, brief=brief)
        key = (id(f), brief)
        cached = self._parts_cache.get(key)
        if cached is None or cached[0] is not f:
            cached = self._parts_cache[key] = (f, {k: canonical_json(v) for k, v in doc.items()})
        return doc, cached[1]

    def _evidence_text(self, f: Flag) -> str:
        """The brief evidence of a finding, encoded once."""
        key = (id(f), True)
        cached = self._text_cache.get(key)
        if cached is None or cached[0] is not f:
            cached = self._text_cache[key] = (f, canonical_json(self._evidence(f, brief=True)))
        return cached[1]

    def _evidence(self, f: Flag, *, brief: bool = False) -> dict[str, Any]:
        """A finding's evidence (``brief``: without its parameters), built once per finding
        however many ratings it holds (the dicts are only read: each event serialises
        its own)."""
        key = (id(f), brief)
        cached = self._evidence_cache.get(key)
        if cached is None or cached[0] is not f:
            doc = f.as_evidence()
            if brief:
                doc = {k: v for k, v in doc.items() if k != "params"}
            cached = self._evidence_cache[key] = (f, doc)
        return cached[1]

    @staticmethod
    def _hold_rows(rid: int, fl: list[Flag], event_id: int, run_id: int) -> list[tuple[Any, ...]]:
        """``detect_holds`` rows (in the order of :data:`_HOLD_COLS`), one per finding."""
        return [
            (rid, f.fingerprint, f.detector, str(f.reason), event_id, run_id)
            for f in {f.fingerprint: f for f in fl}.values()
        ]

    def _cases(self, flags: list[Flag], verdicts: Verdicts, run_id: int) -> list[str]:
        opened: list[str] = []
        for f in flags:
            if f.case is None or f.strength < 1:
                continue
            with self.ledger.unit_of_work() as uow:
                conn = uow.connection
                exists = conn.execute(
                    sa.select(rt.detect_cases.c.subject).where(rt.detect_cases.c.subject == f.case)
                ).first()
                if exists is not None:
                    continue
                ev = uow.append(
                    Event(
                        kind=Kind.CASE_OPENED,
                        actor=ACTOR,
                        at=self.clock.now(),
                        subject=f.case,
                        reasons=(f.reason,),
                        rule_set_id=self.rule_set_id,
                        evidence={
                            **f.as_evidence(),
                            "suspect_ratings": len(f.rating_ids),
                            "run_id": run_id,
                        },
                    ),
                )
                conn.execute(
                    rt.detect_cases.insert(),
                    {
                        "subject": f.case,
                        "fingerprint": f.fingerprint,
                        "window_id": f.case.split(":", 2)[2],
                        "opened_at": self.clock.now(),
                        "event_id": ev.event_id,
                        "run_id": run_id,
                        "ratings_held": len(f.rating_ids),
                    },
                )
            opened.append(f.case)
        return opened

    def _risks(self, verdicts: Verdicts, frame: Frame) -> int:
        """Store the combined risk of every rating in scope that differs from the stored one."""
        df = frame.frame
        ids = df.loc[df["in_scope"].to_numpy(), "rating_id"].to_numpy()
        new = verdicts.ranked
        if new.empty:
            new = pd.Series(verdicts.risk, dtype=float)
        now = new.reindex(ids).fillna(0.0).round(6).to_numpy()
        # the ledger compares with what it holds and records only real changes, under one
        # sealed risk.scored event
        changes = RiskColumns(ids, now)
        return int(self.ledger.set_risk(changes, at=self.clock.now(), actor=ACTOR) or 0)
