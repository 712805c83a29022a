"""Service records from the queue system (tickets), and the ratings that wait for them.

The hall's queue system issues a ticket for every service and knows which window served
it (and often who, and when). ``integrity tickets load FILE`` and ``POST /v1/tickets``
record what it says, one :class:`~integrity.model.ServiceRecord` per ticket: sending the
same record again changes nothing, and a different record for a known ticket is refused
with a field error (a record is never changed).

With the rule set's ``[tickets] require_known_ticket = true`` the ticket gate
(``rules/realtime.py``) holds a rating for a ticket the queue system never issued
(``unknown_ticket``) and one whose window or staff member contradicts its ticket's
record (``ticket_mismatch``). Feeds lag, so an unknown ticket is not an offence yet:

- recording tickets re-judges, in the same unit of work, the ratings held
  ``unknown_ticket`` for them: a matching record lifts that hold (a ``clear`` event by
  actor ``tickets``, reason ``ticket.arrived``; the rating counts again unless another
  hold remains), a contradicting one keeps it held as ``ticket_mismatch`` (a ``hold``
  event);
- :meth:`ServiceRecords.settle` (``integrity tickets settle``, and ``serve``'s
  background round every ``settle_every_s``) rejects the holds that waited
  ``wait_hours`` (default 72) without their record (a ``confirm`` event, status
  ``rejected``, reason ``unknown_ticket`` kept), and re-judges any whose record has
  arrived meanwhile (a rating written while its record was being loaded).

With the setting off (the default) intake behaves as before: no ticket is looked up.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Annotated, Any, TextIO

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictStr, ValidationError

from integrity.catalogue import Kind, Reason
from integrity.clock import Clock
from integrity.errors import ConfigError, FieldError, InvalidInput
from integrity.model import Event, RatingState, ServiceRecord, Status
from integrity.parsing import parse_timestamp
from integrity.ports import Ledger, TicketStore, UnitOfWork, WaitingRating

#: The actor of the status events service records cause.
ACTOR = "tickets"
#: What every writer of service records locks, so "known?" and "insert" cannot interleave.
TICKETS_LOCK = "tickets"
#: Records per unit of work when a file is loaded.
CHUNK = 1000
#: The columns of a CSV file of service records (``staff_id`` may be left out or empty).
CSV_COLUMNS = ("ticket_id", "window_id", "staff_id", "served_at")
_REQUIRED = ("ticket_id", "window_id", "served_at")
WHAT = "service record"


@dataclass(frozen=True)
class TicketPolicy:
    """The rule set's ``[tickets]`` table; every field has a default.

    ``require_known_ticket``: hold ratings for tickets the queue system has no record
    of (and those contradicting their record). ``wait_hours``: how long such a hold
    waits for a lagging feed before it is rejected. ``settle_every_s``: how often
    ``serve``'s background round settles (seconds).
    """

    require_known_ticket: bool = False
    wait_hours: float = 72.0
    settle_every_s: float = 60.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> TicketPolicy:
        """Read ``[tickets]``; unknown keys and bad values are a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ConfigError(
                f"[tickets]: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        require = section.get("require_known_ticket", cls.require_known_ticket)
        if not isinstance(require, bool):
            raise ConfigError("[tickets] require_known_ticket: expected true or false")
        values: dict[str, float] = {}
        for name in ("wait_hours", "settle_every_s"):
            value = section.get(name, getattr(cls, name))
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigError(f"[tickets] {name}: expected a positive number")
            values[name] = float(value)
        return cls(require_known_ticket=require, **values)

    @property
    def wait(self) -> timedelta:
        return timedelta(hours=self.wait_hours)


# -- parsing ---------------------------------------------------------------------------------


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL (\\u0000) characters")
    return value


def _text(lo: int, hi: int) -> Any:
    return Annotated[StrictStr, Field(min_length=lo, max_length=hi), AfterValidator(_no_nul)]


class TicketIn(BaseModel):
    """A service record as the queue system sends it (docs/reference.md, Tickets)."""

    model_config = ConfigDict(extra="forbid")

    ticket_id: _text(1, 128)  # type: ignore[valid-type]
    window_id: _text(1, 64)  # type: ignore[valid-type]
    staff_id: _text(1, 64) | None = None  # type: ignore[valid-type]
    served_at: StrictStr = Field(description="RFC 3339 with offset: when the service ended")


def parse_record(obj: Any, *, client_id: str, recorded_at: datetime) -> ServiceRecord:
    """Validate one record (a decoded JSON object); ``InvalidInput`` lists every problem."""
    if not isinstance(obj, Mapping):
        raise InvalidInput([FieldError("(record)", "expected a JSON object")], WHAT)
    errors: list[FieldError] = []
    try:
        model = TicketIn.model_validate(obj)
    except ValidationError as err:
        for e in err.errors(include_url=False):
            name = ".".join(str(p) for p in e["loc"]) or "(record)"
            if e["type"] == "extra_forbidden":
                errors.append(FieldError(name, "unknown field"))
            elif e["type"] == "missing":
                errors.append(FieldError(name, "required field is missing"))
            else:
                errors.append(FieldError(name, e["msg"]))
        raise InvalidInput(errors, WHAT) from None
    try:
        served_at = parse_timestamp(model.served_at)
    except ValueError as err:
        raise InvalidInput(
            [FieldError("served_at", f"not an RFC 3339 timestamp with offset: {err}")], WHAT
        ) from None
    return ServiceRecord(
        ticket_id=model.ticket_id,
        window_id=model.window_id,
        staff_id=model.staff_id,
        served_at=served_at,
        recorded_at=recorded_at,
        client_id=client_id,
    )


@dataclass(frozen=True)
class Line:
    """One record of a file: its line number and the decoded object, or why it has none."""

    number: int
    obj: Any = None
    error: str | None = None


def guess_format(name: str) -> str | None:
    """``csv`` or ``jsonl`` from a file name's extension, else ``None``."""
    lower = name.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    return None


def read_lines(stream: TextIO, kind: str | None = None) -> Iterator[Line]:
    """The records of a JSON Lines or CSV file, streamed. ``kind`` ``None``: told by the
    first non-blank line (a JSON object, else a CSV header). A CSV file needs a header
    naming ``ticket_id``, ``window_id`` and ``served_at`` (``staff_id`` optional, may be
    empty); an unknown column is refused before any row is read."""
    first = ""
    number = 0
    for raw in stream:
        number += 1
        if raw.strip():
            first = raw
            break
    if not first:
        return
    if kind is None:
        kind = "jsonl" if first.lstrip().startswith("{") else "csv"
    if kind == "jsonl":
        yield from _jsonl(first, number, stream)
    elif kind == "csv":
        yield from _csv(first, number, stream)
    else:
        raise ValueError(f"unknown format {kind!r}")


def _jsonl(first: str, number: int, stream: TextIO) -> Iterator[Line]:
    def decode(n: int, text: str) -> Line:
        try:
            return Line(n, json.loads(text))
        except json.JSONDecodeError as err:
            return Line(n, error=f"not valid JSON: {err.msg} at column {err.colno}")

    yield decode(number, first)
    for raw in stream:
        number += 1
        if raw.strip():
            yield decode(number, raw)


def _csv(first: str, number: int, stream: TextIO) -> Iterator[Line]:
    header = [h.strip() for h in next(csv.reader([first]), [])]
    problems = [
        FieldError("(header)", f"unknown column {h!r}; expected {', '.join(CSV_COLUMNS)}")
        for h in header
        if h not in CSV_COLUMNS
    ] + [FieldError("(header)", f"column {c!r} is missing") for c in _REQUIRED if c not in header]
    if len(set(header)) != len(header):
        problems.append(FieldError("(header)", "a column is named twice"))
    if problems:
        raise InvalidInput(problems, "service record file")
    reader = csv.reader(stream)
    for row in reader:
        at = number + reader.line_num  # the file's line number (the header is `number`)
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            yield Line(at, error=f"expected {len(header)} columns, got {len(row)}")
            continue
        obj = {h: cell.strip() for h, cell in zip(header, row, strict=True)}
        if not obj.get("staff_id"):
            obj.pop("staff_id", None)
        yield Line(at, obj)


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class TicketResult:
    """One record's outcome: ``recorded`` (new), ``known`` (the same record was there
    already; nothing written), or refused with field errors (``error``)."""

    index: int
    ticket_id: str | None = None
    status: str | None = None
    error: InvalidInput | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {
                "index": self.index,
                "status": None,
                "detail": self.error.summary(),
                "errors": [e.as_dict() for e in self.error.errors],
            }
        return {"index": self.index, "ticket_id": self.ticket_id, "status": self.status}


@dataclass
class Rejudged:
    """What re-judging held ratings did: lifted (counting again), held for a mismatch,
    still held for other reasons, or rejected after the wait."""

    cleared: int = 0
    mismatched: int = 0
    still_held: int = 0
    rejected: int = 0

    def add(self, other: Rejudged) -> None:
        self.cleared += other.cleared
        self.mismatched += other.mismatched
        self.still_held += other.still_held
        self.rejected += other.rejected

    def as_dict(self) -> dict[str, int]:
        return {
            "cleared": self.cleared,
            "mismatched": self.mismatched,
            "still_held": self.still_held,
            "rejected": self.rejected,
        }


@dataclass
class TicketSummary:
    """What loading a file did (``integrity tickets load``)."""

    lines: int = 0
    recorded: int = 0
    known: int = 0
    refused: int = 0
    rejudged: Rejudged = field(default_factory=Rejudged)
    errors: list[tuple[int, InvalidInput]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "recorded": self.recorded,
            "known": self.known,
            "refused": self.refused,
            "ratings": self.rejudged.as_dict(),
        }


# -- the service ---------------------------------------------------------------------------


class ServiceRecords:
    """Recording service records, re-judging the ratings that waited for them, settling
    the waits that ran out."""

    def __init__(
        self,
        ledger: Ledger,
        store: TicketStore,
        policy: TicketPolicy,
        clock: Clock,
        rule_set_id: str,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.policy = policy
        self.clock = clock
        self.rule_set_id = rule_set_id
        self._last_settled: datetime | None = None
        self._settling = threading.Lock()

    # -- recording -------------------------------------------------------------------------

    def record(self, objs: Sequence[Any], *, client_id: str) -> tuple[list[TicketResult], Rejudged]:
        """Record decoded records in ONE unit of work (all that parse, or none if the
        database fails): a result per record, in order, and what re-judging did."""
        now = self.clock.now()
        parsed: list[tuple[int, ServiceRecord]] = []
        results: list[TicketResult | None] = [None] * len(objs)
        for i, obj in enumerate(objs):
            try:
                parsed.append((i, parse_record(obj, client_id=client_id, recorded_at=now)))
            except InvalidInput as err:
                results[i] = TicketResult(i, error=err)
        written, rejudged = self._write(parsed, now)
        for res in written:
            results[res.index] = res
        return [r for r in results if r is not None], rejudged

    def load(
        self,
        lines: Iterable[Line],
        *,
        client_id: str,
        chunk: int = CHUNK,
        on_progress: Callable[[int], None] | None = None,
    ) -> TicketSummary:
        """Record a file's records in chunks (one unit of work each), in order. Lines that
        do not parse, or contradict a known record, are refused (listed in the summary);
        the others are written. Loading the same file again changes nothing."""
        summary = TicketSummary()
        batch: list[tuple[int, ServiceRecord]] = []
        now = self.clock.now()

        def flush() -> None:
            if not batch:
                return
            results, rejudged = self._write(batch, now)
            for res in results:
                if res.error is not None:
                    _refuse(summary, res.index, res.error)
                elif res.status == "recorded":
                    summary.recorded += 1
                else:
                    summary.known += 1
            summary.rejudged.add(rejudged)
            if on_progress is not None:
                on_progress(len(batch))
            batch.clear()

        for line in lines:
            summary.lines += 1
            if line.error is not None:
                _refuse(
                    summary, line.number, InvalidInput([FieldError("(line)", line.error)], WHAT)
                )
                continue
            try:
                batch.append(
                    (line.number, parse_record(line.obj, client_id=client_id, recorded_at=now))
                )
            except InvalidInput as err:
                _refuse(summary, line.number, err)
                continue
            if len(batch) >= chunk:
                flush()
        flush()
        return summary

    def _write(
        self, records: Sequence[tuple[int, ServiceRecord]], now: datetime
    ) -> tuple[list[TicketResult], Rejudged]:
        """In one unit of work: the new records, then the ratings waiting for any of
        these tickets re-judged against them."""
        if not records:
            return [], Rejudged()
        results: list[TicketResult] = []
        with self.ledger.unit_of_work() as uow:
            uow.lock(TICKETS_LOCK)
            known = self.store.find([r.ticket_id for _, r in records], uow)
            new: list[ServiceRecord] = []
            for index, rec in records:
                old = known.get(rec.ticket_id)
                if old is None:
                    known[rec.ticket_id] = rec
                    new.append(rec)
                    results.append(TicketResult(index, rec.ticket_id, "recorded"))
                elif old.same_service(rec):
                    results.append(TicketResult(index, rec.ticket_id, "known"))
                else:
                    results.append(TicketResult(index, error=_conflict(old, rec)))
            self.store.add(uow, new)
            good = {r.ticket_id: known[r.ticket_id] for _, r in records if r.ticket_id in known}
            waiting = self.store.waiting(list(good), uow)
            rejudged = self._rejudge(uow, waiting, good, now)
        return results, rejudged

    # -- re-judging and settling -----------------------------------------------------------

    def settle(self, now: datetime | None = None) -> Rejudged:
        """Reject the ``unknown_ticket`` holds that waited ``wait_hours`` without their
        record; re-judge those whose record is there by now. Nothing is written (no
        write transaction is opened) when nothing is due."""
        now = now or self.clock.now()
        due_before = now - self.policy.wait
        waiting = self.store.waiting()
        if not waiting:
            return Rejudged()
        records = self.store.find([w.ticket_id for w in waiting])
        todo = [w for w in waiting if w.ticket_id in records or w.held_at <= due_before]
        if not todo:
            return Rejudged()
        with self.ledger.unit_of_work() as uow:
            uow.lock(TICKETS_LOCK)
            records = self.store.find([w.ticket_id for w in todo], uow)
            arrived = [w for w in todo if w.ticket_id in records]
            out = self._rejudge(uow, arrived, records, now)
            overdue = [w for w in todo if w.ticket_id not in records]
            out.add(self._reject(uow, overdue, now))
        return out

    def background(self, now: datetime) -> Rejudged | None:
        """``serve``'s background round: :meth:`settle` at most every ``settle_every_s``."""
        with self._settling:
            last = self._last_settled
            if last is not None and (now - last).total_seconds() < self.policy.settle_every_s:
                return None
            self._last_settled = now
        return self.settle(now)

    def _rejudge(
        self,
        uow: UnitOfWork,
        waiting: Sequence[WaitingRating],
        records: Mapping[str, ServiceRecord],
        now: datetime,
    ) -> Rejudged:
        out = Rejudged()
        if not waiting:
            return out
        states = uow.states([w.rating_id for w in waiting])
        events = []
        for w in waiting:
            st = states.get(w.rating_id)
            rec = records.get(w.ticket_id)
            if rec is None or st is None or not _waiting(st) or st.version != w.version:
                continue
            events.append(self._arrival_event(w, st, rec, now))
        for ev in uow.change_many(events, only_if=_waiting):
            if ev.status is Status.ACCEPTED:
                out.cleared += 1
            elif Reason.TICKET_MISMATCH in ev.reasons:
                out.mismatched += 1
            else:
                out.still_held += 1
        return out

    def _arrival_event(
        self, w: WaitingRating, st: RatingState, rec: ServiceRecord, now: datetime
    ) -> Event:
        """The event a record arriving for a held rating causes (see the module doc)."""
        others = tuple(r for r in st.reasons if r != Reason.UNKNOWN_TICKET)
        ticket: dict[str, Any] = {
            "arrived": True,
            "served_at": rec.served_at.isoformat(),
            "recorded_at": rec.recorded_at.isoformat() if rec.recorded_at else None,
            "sent_by": rec.client_id,
        }
        differs = rec.differences(w.window_id, w.staff_id)
        if differs:
            ticket["mismatch"] = {
                name: {"recorded": getattr(rec, name), "rated": getattr(w, name)}
                for name in differs
            }
            others = tuple(sorted({*others, Reason.TICKET_MISMATCH}))
        if others:
            return Event(
                kind=Kind.HOLD,
                actor=ACTOR,
                at=now,
                rating_id=w.rating_id,
                status=Status.HELD,
                reasons=others,
                rule_set_id=self.rule_set_id,
                evidence={"ticket": ticket},
            )
        return Event(
            kind=Kind.CLEAR,
            actor=ACTOR,
            at=now,
            rating_id=w.rating_id,
            status=Status.ACCEPTED,
            reasons=(Reason.TICKET_ARRIVED,),
            rule_set_id=self.rule_set_id,
            evidence={"ticket": ticket},
        )

    def _reject(self, uow: UnitOfWork, overdue: Sequence[WaitingRating], now: datetime) -> Rejudged:
        out = Rejudged()
        if not overdue:
            return out
        states = uow.states([w.rating_id for w in overdue])
        events = []
        for w in overdue:
            st = states.get(w.rating_id)
            if st is None or not _waiting(st) or st.version != w.version:
                continue
            events.append(
                Event(
                    kind=Kind.CONFIRM,
                    actor=ACTOR,
                    at=now,
                    rating_id=w.rating_id,
                    status=Status.REJECTED,
                    reasons=st.reasons,
                    rule_set_id=self.rule_set_id,
                    evidence={
                        "ticket": {
                            "arrived": False,
                            "held_at": w.held_at.isoformat(),
                            "wait_hours": self.policy.wait_hours,
                        }
                    },
                )
            )
        out.rejected = len(uow.change_many(events, only_if=_waiting))
        return out


def _waiting(st: RatingState | None) -> bool:
    """Whether a rating is (still) held waiting for its ticket's record."""
    return st is not None and st.status is Status.HELD and Reason.UNKNOWN_TICKET in st.reasons


def _conflict(old: ServiceRecord, new: ServiceRecord) -> InvalidInput:
    """A different record for a known ticket: one field error per field that differs (the
    recorded values are not repeated: the sender may not be the one that recorded it)."""
    differs = [
        name
        for name in ("window_id", "staff_id", "served_at")
        if getattr(old, name) != getattr(new, name)
    ]
    return InvalidInput(
        [
            FieldError(
                name,
                f"ticket {new.ticket_id!r} is already recorded with another {name}; "
                "a service record is never changed",
            )
            for name in differs
        ],
        WHAT,
    )


def _refuse(summary: TicketSummary, line: int, err: InvalidInput) -> None:
    summary.refused += 1
    if len(summary.errors) < 1000:
        summary.errors.append((line, err))


__all__ = [
    "ACTOR",
    "CSV_COLUMNS",
    "Line",
    "Rejudged",
    "ServiceRecords",
    "TicketPolicy",
    "TicketResult",
    "TicketSummary",
    "guess_format",
    "parse_record",
    "read_lines",
]
