"""Ports: the small interfaces between the core and the rest.

The core's adapters implement the ledger ports (``integrity/adapters``); ``rules``
implements the gates and the limiter stores; the composition root (``bootstrap.py``,
beside ``cli.py``) picks one of each by URL. Packages reach the ledger only through
:class:`Ledger` and its :class:`UnitOfWork`: they never write its tables themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

from integrity.catalogue import Reason
from integrity.model import (
    Decision,
    Event,
    IntakeClient,
    Rating,
    RatingState,
    ServiceRecord,
    Status,
    StoredRating,
    VenueRegistry,
    Verdict,
)
from integrity.periods import ClosedPeriod
from integrity.registry import ServiceRegistry

if TYPE_CHECKING:
    import pyarrow as pa

# --- rate limiting -------------------------------------------------------------------


class LimitCheck(NamedTuple):
    """One rule applied to one subject, ready for a storage backend (a named tuple:
    the gate builds several per rating, and a tuple is built several times faster).

    ``key`` is the full storage key (namespaced, schema-versioned, pseudonymised
    subject). ``window_ms`` > 0 is a sliding log: at most ``limit`` hits in any
    window ``(now - window_ms, now]``. ``window_ms`` == 0 is a fixed bucket named by
    the key itself (e.g. a calendar day): at most ``limit`` hits in the key.
    ``ttl_ms`` is how long the key must outlive its last hit.
    """

    rule_id: str
    key: str
    window_ms: int
    limit: int
    ttl_ms: int


@dataclass(frozen=True)
class LimitFailure:
    rule_id: str
    retry_after_ms: int  # when a retry could pass this rule; 0 when unknown


@dataclass(frozen=True)
class LimitOutcome:
    """All-or-nothing: ``allowed`` means every check passed and the hit was recorded in all.

    ``added``: the indexes (into the checks) of the keys this hit newly recorded the
    member in; a key that held the member already (a retry) is not among them. What a
    refund (``Limiter.release``) must give back, and nothing more. Not part of equality:
    two outcomes that decide alike are equal.
    """

    allowed: bool
    failures: tuple[LimitFailure, ...] = ()
    added: tuple[int, ...] = field(default=(), compare=False)


class Limiter(Protocol):
    """Storage backend of the sliding-log rate limiter (memory, Redis).

    ``hit`` checks every rule and, only if all pass, records ``member`` in every key;
    it is idempotent per member: a member already recorded in a key passes that key
    again without being counted twice (a retried rating never consumes two slots).
    ``at_ms`` is the rating's time in epoch milliseconds on replay, ``None`` live (the
    backend's own clock: Redis ``TIME``). Raises ``BackendUnavailable`` when the
    backend does not answer in time.
    """

    def hit(self, checks: Sequence[LimitCheck], member: str, at_ms: int | None) -> LimitOutcome: ...

    def hit_many(
        self, calls: Sequence[tuple[Sequence[LimitCheck], str, int | None]]
    ) -> list[LimitOutcome]:
        """Several ``hit`` calls in order, as if made one by one (Redis: one pipeline)."""
        ...

    def release(self, checks: Sequence[LimitCheck], member: str) -> None:
        """Remove ``member`` from every key (a refund); a no-op where it is absent."""
        ...

    def reset(self) -> None:
        """Forget every counter in this limiter's namespace (tests, demo)."""
        ...


# --- the ledger, as the hook needs it -------------------------------------------------


@dataclass(frozen=True)
class Lookup:
    """What the ledger already knows about a new rating before any gate runs."""

    existing: Decision | None  # the first decision for an identical earlier submission
    ticket_taken: bool


@dataclass(frozen=True)
class Pending:
    """A rating with its decision, ready to be written."""

    rating: Rating
    status: Status
    reasons: tuple[str, ...]
    evidence: Mapping[str, Any]
    rule_set_id: str
    retry_after_s: float | None = None


class RatingLedger(Protocol):
    """What the validation hook needs from the score ledger (SQL adapter: ``SqlLedger``)."""

    def lookup(self, fingerprint: str, ticket_id: str) -> Lookup: ...

    def lookup_many(self, ratings: Sequence[Rating]) -> list[Lookup]: ...

    def record(self, p: Pending, actor: str = "hook") -> Decision:
        """Write a rating with its decision atomically; resolve races (see SqlLedger)."""
        ...

    def record_many(self, pending: Sequence[Pending], actor: str = "hook") -> list[Decision]: ...


# --- gates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateContext:
    """What a gate may know beyond the rating: whether this is replay (ingest) or live.

    ``taken`` is the call's receipt book, owned by the hook: a gate that records
    something for a rating (the rate limiter's slots) notes there, under its name and the
    rating's fingerprint, exactly what it newly recorded, so that ``release`` with the
    same context gives back that and nothing a retry found already recorded.
    """

    replay: bool
    rule_set_id: str
    taken: dict[tuple[str, str], Any] = field(default_factory=dict, compare=False, repr=False)


class Gate(Protocol):
    """One step of the validation hook after the duplicate-ticket check.

    Returns ``None`` to let the rating through, or a :class:`Verdict` (held or
    rejected, with reason codes). A gate that cannot reach its backend raises
    ``BackendUnavailable``; the hook then holds the rating with that gate's
    ``unavailable_reason``.
    """

    name: str
    unavailable_reason: str

    def check(self, rating: Rating, ctx: GateContext) -> Verdict | None: ...

    def check_many(self, ratings: Sequence[Rating], ctx: GateContext) -> list[Verdict | None]:
        """``check`` for several ratings in order (may batch backend round trips)."""
        ...

    def release(self, rating: Rating, ctx: GateContext) -> None:
        """Undo what ``check`` (with this ``ctx``) recorded for ``rating``: it turned out
        to be a duplicate or a retry, or the ledger did not write it."""
        ...

    def reload(self) -> bool:
        """Pick up configuration the gate keeps from the ledger if it changed (venues);
        returns whether it changed."""
        ...


# --- the ledger, as packages need it ----------------------------------------------------


@dataclass(frozen=True)
class RatingQuery:
    """Which stored ratings to read (every filter optional; all given ones must hold).

    ``staff_id`` ``""`` means "names no staff member". Times are UTC, ranges half-open.
    ``order``: ``rating_id`` (as received), ``risk`` (riskiest first), ``submitted_at``.
    """

    ids: Sequence[int] | None = None
    statuses: tuple[Status, ...] = ()
    reason: str | None = None  # a code among the current reasons ("outlier.": any outlier code)
    window_id: str | None = None
    staff_id: str | None = None
    client_id: str | None = None  # the intake client that sent it
    composite_below: float | None = None
    submitted_from: datetime | None = None
    submitted_to: datetime | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    order: Literal["rating_id", "risk", "submitted_at"] = "rating_id"
    limit: int | None = None


@dataclass(frozen=True)
class RiskColumns:
    """Risks of many ratings as two columns (rating ids, risks in [0, 1]): a whole
    ledger's risks for ``Ledger.set_risk`` without a Python object per rating."""

    rating_ids: Sequence[int]
    risks: Sequence[float]


@dataclass(frozen=True)
class ScanSpec:
    """The detection read model: which ratings, in which slices (see ``Ledger.scan``).

    Over the whole ledger (no ``since``/``until``): slices of ``chunk`` rating ids
    (within ``ids_above``/``ids_upto`` when given);
    with a range: slices of ``partition_days`` of ``occurred_at`` from
    ``since - context_days`` to ``until``. ``low_below`` keeps comments of low
    ratings only (the others are never needed).
    """

    low_below: float
    since: datetime | None = None
    until: datetime | None = None
    context_days: int = 35
    partition_days: int = 7
    chunk: int = 100_000
    #: Over the whole ledger only: ratings with ``ids_above < rating_id <= ids_upto``
    #: (``None``: no bound), for a reader that keeps what it read before.
    ids_above: int | None = None
    ids_upto: int | None = None
    #: Only ``rating_id`` and ``state``: what changes in a rating (its status) once read.
    state_only: bool = False


#: Bits of the rate-limit part of the scan's ``state`` (see :data:`STATE_BITS`): which
#: rate-limit reason (or the limiter's absence) is among the rating's current reasons.
LIMITED_BITS: Mapping[str, int] = {
    Reason.RATE_LIMIT_IP: 1,
    Reason.RATE_LIMIT_PREFIX: 2,
    Reason.RATE_LIMIT_DEVICE: 4,
    Reason.RATE_LIMIT_DEVICE_WINDOW: 8,
    Reason.LIMITER_UNAVAILABLE: 16,
}

#: The scan's ``state`` column, one integer per rating: bit 0 set when its current status
#: is ``accepted`` (it counts), bit 1 when it was rejected as a repeated ticket, and the
#: :data:`LIMITED_BITS` shifted left by 2 (``state >> 2``).
STATE_BITS: Mapping[str, int] = {"counted": 1, "dup": 2}
STATE_LIMITED_SHIFT = 2

#: The columns of every row ``Ledger.scan`` yields, in order: only what detection reads,
#: as numbers where they can be (one integer for the status, epoch seconds for times).
SCAN_COLUMNS = (
    "rating_id",
    "window_id",
    "staff_id",
    "service_type",
    "served_s",  # epoch seconds, None when served_at is absent
    "submitted_s",  # epoch seconds
    "composite",
    "comment",  # only of low ratings
    "ip_hash",
    "prefix_hash",
    "device_hash",
    "state",  # counted, repeated ticket, rate limits: see STATE_BITS
)


@dataclass(frozen=True)
class ClockTimes:
    """A time on each of the hook's two clocks: replay judges a rating at its own
    ``submitted_at``, live at its ``received_at``. ``None``: no such time."""

    replay: datetime | None = None
    live: datetime | None = None


@dataclass(frozen=True)
class SlotHolder:
    """A stored rating as its decision left it for the rate limiter (the read model an
    in-process limiter is rebuilt from): the decision's reasons, and which clock judged
    it (``replay``: its own ``submitted_at``; else its ``received_at``)."""

    rating: Rating
    reasons: tuple[str, ...]
    replay: bool


@dataclass(frozen=True)
class StatusChange:
    """A status event with what a reader following ratings' status needs of its rating
    (the low-score alerts' projection): see :meth:`Ledger.status_changes`."""

    event_id: int
    kind: str
    rating_id: int
    status: Status
    at: datetime
    actor: str
    subject: str | None
    reasons: tuple[str, ...]
    composite: float
    scores: Mapping[str, int]


@dataclass(frozen=True)
class LowMark:
    """What makes a counted rating low for a reader of status changes: a composite
    below ``composite_below``, or any dimension at most ``dimension_at_most`` (0: no
    dimension test). ``claims``: a table of the reader's, ``(name, flag column)``, whose
    rows name a rating by ``rating_id`` and hold it while the flag is true (the alerts:
    ``("alerts", "claims_rating")``); the reader then acts on a status other than
    accepted only for a rating that is low or held by such a row. See
    :meth:`Ledger.status_changes`."""

    composite_below: float
    dimension_at_most: int = 0
    claims: tuple[str, str] | None = None


#: Rating columns a report may group ratings by (``AggregateQuery.by``).
GROUP_COLUMNS = ("window_id", "staff_id", "service_type", "channel")


@dataclass(frozen=True)
class AggregateQuery:
    """The report read model: which ratings to tally, and by what (see ``Ledger.aggregate``).

    ``by``: columns of :data:`GROUP_COLUMNS`. ``dimensions``: rubric dimensions whose
    scores to sum. ``low_below``: a composite below this is a low score. The period is
    a half-open UTC range of ``occurred_at`` (``served_at``, else ``submitted_at``);
    ``window_ids`` keeps ratings at those windows only (``None``: every window).
    """

    by: tuple[str, ...]
    dimensions: tuple[str, ...] = ()
    low_below: float = 3.0
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None
    window_ids: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Tally:
    """The ratings of one group that share a current status (and, when not counted, the
    same current reasons): what ``Ledger.aggregate`` returns, one per such set.

    ``key``: the values of ``AggregateQuery.by`` (``None`` where the rating has none,
    e.g. no staff named). ``reasons`` is ``()`` for accepted ratings. ``composite_sum``
    and ``low`` (composites below the low mark) cover these ratings; per dimension,
    ``dimension_sums`` is the sum of their scores and ``dimension_counts`` how many of
    them have that dimension (a rubric may have gained one since they were given).
    """

    key: tuple[str | None, ...]
    status: Status
    reasons: tuple[str, ...]
    ratings: int
    composite_sum: float
    low: int
    dimension_sums: Mapping[str, int]
    dimension_counts: Mapping[str, int]


class UnitOfWork(Protocol):
    """One transaction on the ledger's database: ledger events and a package's own rows
    commit together or not at all.

    ``connection`` is for the package's own tables (declared on
    :data:`integrity.sqlkit.metadata`); the ledger's own tables are written only by
    the methods here. A unique key already taken anywhere in the transaction surfaces
    as ``AlreadyExists`` when the unit of work ends (everything is rolled back).
    """

    connection: Any  # a SQLAlchemy Connection
    dialect: str

    def append(self, ev: Event, expect_version: int | None = None) -> Event:
        """Append one event; a status event also moves the rating's current status.

        ``expect_version``: apply only at that version of the rating's status, else
        ``Conflict`` (optimistic concurrency). ``NotFound`` for an unknown rating.
        """
        ...

    def append_many(self, events: Sequence[Event]) -> list[Event]:
        """Append events that change no status, in order, in one statement; returns them
        with their ids (ascending in the order given)."""
        ...

    def change_many(
        self, events: Sequence[Event], only_if: Callable[[RatingState], bool]
    ) -> list[Event]:
        """Many status events at once; each applies only if its rating's current state
        (read under lock) passes ``only_if``. Returns the events written, with ids."""
        ...

    def states(self, rating_ids: Sequence[int]) -> dict[int, RatingState]:
        """Current status, version and reasons of these ratings, read in this transaction."""
        ...

    def load(self, table: Any, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        """Insert many rows into one of the package's own tables (a SQLAlchemy ``Table``),
        given as tuples in the order of ``columns`` with plain values the driver takes
        as they are (numbers, text, ``None``): ``COPY`` on PostgreSQL, one plain
        ``executemany`` on SQLite, no SQLAlchemy work per row."""
        ...

    def insert_many(self, table: Any, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Insert rows into one of the package's own tables whose primary key is one
        autoincrementing column, with ids allocated up front (ascending, in the order
        of ``rows``): loaded as :meth:`load` does, each value converted by its column's
        type as a statement would bind it. Every row names the same columns; a column
        left out gets its server default. Returns the ids."""
        ...

    def lock(self, key: str) -> None:
        """Serialise writers that lock the same ``key`` until this unit of work ends."""
        ...

    def seal_tables(self, *names: str, at: datetime, actor: str) -> list[Event]:
        """Seal configuration tables: one ``config.sealed`` event per table (subject
        ``table:<name>``) with the SHA-256 and row count of its whole content as this
        transaction sees it (see :mod:`integrity.config_tables`); a partitioned table,
        one per partition this unit of work wrote (subject
        ``table:<name>/<column>=<value>``), or every partition if its writes named none.

        Call it after the last write to those tables in this unit of work. Without
        ``names``: every configuration table this unit of work changed. A unit of work
        that changed a configuration table after its last seal refuses to commit
        (``ValueError``); ``ValueError`` too for a name that is not a registered
        configuration table.
        """
        ...

    def check_sealed(self, *names: str, refusing: str) -> None:
        """``ConfigError`` if a configuration table no longer matches its latest seal (an
        edit made behind the engine's back), its message ending "refusing ``refusing``".

        For a reader that must not act on an edited table (the webhook sender: where to
        send, with which secret). Holds the configuration lock until this unit of work
        ends, so no change of configuration commits between the seal and the table
        being read. ``ValueError`` for a name that is not a registered configuration
        table.
        """
        ...


class Ledger(RatingLedger, Protocol):
    """The score ledger as packages use it: reads, read models, and units of work."""

    dialect: str

    def unit_of_work(self) -> AbstractContextManager[UnitOfWork]: ...

    def checkpointing_beside(self) -> AbstractContextManager[None]:
        """Many large write transactions in a row: the database's own upkeep of them
        (SQLite's WAL checkpoints) done beside the writer while inside."""
        ...

    def reading(self) -> AbstractContextManager[Any]:
        """A connection for reading (a package's own tables too); errors translated."""
        ...

    def append(self, ev: Event, expect_version: int | None = None) -> Event:
        """:meth:`UnitOfWork.append` in a unit of work of its own."""
        ...

    def has_tables(self, *names: str) -> bool: ...

    def rating(self, rating_id: int) -> StoredRating: ...

    def current(self, rating_id: int) -> tuple[Status, int]: ...

    def find_ratings(self, query: RatingQuery) -> list[StoredRating]: ...

    def events_of(self, rating_id: int) -> list[Event]: ...

    def events_about(self, subject: str) -> list[Event]: ...

    def events(self, event_ids: Sequence[int]) -> dict[int, Event]: ...

    def count_events(self, kind: str, subjects: Sequence[str]) -> dict[str, int]: ...

    def last_event_id(self, kind: str | None = None) -> int | None:
        """Id of the newest event of ``kind`` (of any kind when ``None``), or ``None``."""
        ...

    def first_event_after(
        self,
        after: int,
        *,
        kinds: Sequence[str] = (),
        except_actor: str | None = None,
        except_until: int | None = None,
    ) -> int | None:
        """Id of the first committed event above ``after`` that has a status or is of one
        of ``kinds``, leaving out those by ``except_actor`` up to ``except_until``; ``None``
        when there is none (a reader's watermark: did anything it reads change?)."""
        ...

    def event_heads(
        self, after: int, limit: int, until: int | None = None
    ) -> list[tuple[int, str]]:
        """``(event_id, kind)`` of committed events with ``after < event_id <= until``, in
        id order, at most ``limit``: a cheap index for readers that follow the ledger
        (the webhook outbox), which then read the events they want with :meth:`events`."""
        ...

    def status_changes(
        self, after: int, limit: int, until: int | None = None, *, low: LowMark | None = None
    ) -> list[StatusChange]:
        """Committed status events with ``after < event_id <= until``, in id order, at most
        ``limit``, each with its rating's composite and scores, in one query: for readers
        that follow ratings' status (the low-score alerts) without reading whole events.

        With ``low``, only the events such a reader can act on: an accepted rating only
        when it is low by ``low``; any other status of every rating or, with
        ``low.claims``, only of a rating that is low or that a row of the reader's table
        holds. A superset may come back; never less."""
        ...

    def set_risk(
        self,
        risks: Mapping[int, float] | RiskColumns,
        *,
        at: datetime | None = None,
        actor: str = "detector",
        subject: str = "risk",
    ) -> int: ...

    def scan(
        self, spec: ScanSpec, on_progress: Callable[[int], None] | None = None
    ) -> Iterator[pa.Table]:
        """Slices (see :class:`ScanSpec`) as Arrow tables of :data:`SCAN_COLUMNS` (text as
        ``string``, times and scores as ``float64``, ids and ``state`` as ``int64``), each
        in rating-id order: columns, never a Python object per value."""
        ...

    def iter_ratings(self, query: RatingQuery, batch: int = 5000) -> Iterator[StoredRating]:
        """:meth:`find_ratings`, streamed (for exports of the whole ledger)."""
        ...

    def aggregate(self, query: AggregateQuery) -> list[Tally]:
        """Tallies of ratings, computed by the database (``GROUP BY``), never row by row."""
        ...

    def venue_registry(self) -> VenueRegistry: ...

    def latest_decided(self) -> ClockTimes:
        """The latest time, on each clock, of the ratings the hook judged on it: the
        newest ``submitted_at`` of replayed ratings, the newest ``received_at`` of live ones."""
        ...

    def recent_slot_holders(self, since: ClockTimes) -> list[SlotHolder]:
        """The ratings judged on replay with ``submitted_at >= since.replay`` and those
        judged live with ``received_at >= since.live`` (a ``None`` bound: none of that
        clock), with their decisions' reasons, in the order received."""
        ...


class RegistryStore(Protocol):
    """Where the service registry is kept (halls, windows, roster)."""

    def replace(self, reg: ServiceRegistry, at: datetime, actor: str) -> int:
        """Replace it whole; returns the id of the ``registry.loaded`` event."""
        ...

    def load(self) -> ServiceRegistry:
        """The current registry (empty, ``loaded`` false, when none was ever loaded)."""
        ...

    def version(self) -> int | None:
        """The id of the event that loaded the current registry (cheap; for reloads)."""
        ...


class PeriodStore(Protocol):
    """Where closed reporting periods are kept (``periods``, written with their events)."""

    def close(
        self,
        uow: UnitOfWork,
        period: str,
        *,
        at: datetime,
        actor: str,
        evidence: Mapping[str, Any],
    ) -> ClosedPeriod:
        """In ``uow``: the ``period.closed`` event and the period's row; ``AlreadyExists``
        when the period is closed already."""
        ...

    def closed(self) -> list[ClosedPeriod]:
        """Every closed period, oldest label first."""
        ...

    def version(self) -> int | None:
        """The id of the newest ``period.closed`` event (cheap; for reloads)."""


class ClientStore(Protocol):
    """Where intake clients are kept (SQL adapter: ``integrity.adapters.clients``).

    Every change is one unit of work with its ledger event (``client.added``,
    ``client.rotated``, ``client.revoked``); the key itself is never given to a store.
    """

    def add(self, client: IntakeClient, at: datetime, actor: str) -> IntakeClient:
        """Register a new client; ``AlreadyExists`` when the name is taken."""
        ...

    def rotate(
        self, name: str, key_id: str, key_hash: str, at: datetime, actor: str
    ) -> IntakeClient:
        """Replace an unrevoked client's key; ``NotFound`` / ``Conflict`` (revoked)."""
        ...

    def revoke(self, name: str, at: datetime, actor: str) -> IntakeClient:
        """Revoke a client for good; ``NotFound`` / ``Conflict`` (already revoked)."""
        ...

    def all(self) -> list[IntakeClient]:
        """Every client, revoked ones too, by name."""
        ...


@dataclass(frozen=True)
class WaitingRating:
    """A rating held because the queue system had no record of its ticket
    (``unknown_ticket`` among its current reasons): what re-judging it needs."""

    rating_id: int
    ticket_id: str
    window_id: str
    staff_id: str | None
    reasons: tuple[str, ...]  # its current reasons
    version: int  # its status version
    held_at: datetime  # when its current status was set (the event's time)


class TicketStore(Protocol):
    """Where service records from the queue system are kept (SQL adapter:
    ``integrity.adapters.tickets``), and the ratings that wait for one.

    ``uow``: read or write inside that unit of work (as its transaction sees it);
    without one, a read of its own.
    """

    def find(
        self, ticket_ids: Sequence[str], uow: UnitOfWork | None = None
    ) -> dict[str, ServiceRecord]:
        """The records of those tickets that exist, by ticket id (one query per 900)."""
        ...

    def add(self, uow: UnitOfWork, records: Sequence[ServiceRecord]) -> None:
        """Insert new records (tickets not recorded yet: the caller checked, under
        ``uow.lock(TICKETS_LOCK)``); ``AlreadyExists`` if one was."""
        ...

    def waiting(
        self, ticket_ids: Sequence[str] | None = None, uow: UnitOfWork | None = None
    ) -> list[WaitingRating]:
        """Ratings currently ``held`` with ``unknown_ticket`` among their reasons, for
        these tickets (``None``: all of them), by rating id."""
        ...
