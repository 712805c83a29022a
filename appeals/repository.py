"""Appeal rows on the ledger's database (SQLAlchemy Core): the adapter behind the service.

The appeals' own tables only (:mod:`appeals.tables`); the ledger's tables are reached
through :class:`~integrity.ports.Ledger`. Reads open a connection with
:meth:`Ledger.reading` unless given one; writes take the caller's
:class:`~integrity.ports.UnitOfWork`, so one transaction holds the appeal's row, its
side rows and its ledger events together. ``update`` is optimistic: it applies only at
the version the caller read, otherwise :class:`~integrity.errors.Conflict`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from appeals import tables as at
from appeals.evidence import StoredFile
from appeals.model import FINAL_STATES, Appeal, EvidenceFile, State, Vote
from integrity.errors import AlreadyExists, Conflict, NotFound
from integrity.ports import Ledger, UnitOfWork
from integrity.sqlkit import insert_or_ignore, translate_errors

#: The tables the appeals migration creates.
TABLES = ("appeals", "appeal_reviewers", "appeal_votes", "appeal_evidence")


@dataclass(frozen=True)
class AppealFilter:
    """Which appeals to list. Times are UTC; ``overdue_at`` keeps open appeals due by then."""

    states: tuple[State, ...] = ()
    appellant_id: str | None = None
    unit: str | None = None
    reviewer_id: str | None = None
    rating_id: int | None = None
    filed_from: datetime | None = None
    filed_to: datetime | None = None
    overdue_at: datetime | None = None
    limit: int | None = None


class AppealRepository:
    """Appeals, their reviewers, votes and evidence rows."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def schema_ready(self) -> bool:
        return self.ledger.has_tables(*TABLES)

    # -- reads ---------------------------------------------------------------------------

    def get(self, appeal_id: int, conn: Connection | None = None) -> Appeal:
        found = self.find(AppealFilter(), ids=(appeal_id,), conn=conn)
        if not found:
            raise NotFound(f"no appeal {appeal_id}")
        return found[0]

    def find(
        self,
        f: AppealFilter,
        ids: Sequence[int] = (),
        conn: Connection | None = None,
    ) -> list[Appeal]:
        """Appeals matching the filter, oldest first, with reviewers, votes and evidence."""
        a = at.appeals
        q = sa.select(a).order_by(a.c.appeal_id)
        if ids:
            q = q.where(a.c.appeal_id.in_(list(ids)))
        if f.states:
            q = q.where(a.c.state.in_([s.value for s in f.states]))
        if f.appellant_id:
            q = q.where(a.c.appellant_id == f.appellant_id)
        if f.unit:
            q = q.where(a.c.appellant_unit == f.unit)
        if f.rating_id is not None:
            q = q.where(a.c.rating_id == f.rating_id)
        if f.filed_from is not None:
            q = q.where(a.c.filed_at >= f.filed_from)
        if f.filed_to is not None:
            q = q.where(a.c.filed_at < f.filed_to)
        if f.overdue_at is not None:
            q = q.where(
                a.c.state.notin_([s.value for s in FINAL_STATES]),
                a.c.due_at.is_not(None),
                a.c.due_at <= f.overdue_at,
            )
        if f.reviewer_id:
            r = at.appeal_reviewers
            q = q.where(
                sa.exists().where(
                    r.c.appeal_id == a.c.appeal_id,
                    r.c.round == a.c.round,
                    r.c.reviewer_id == f.reviewer_id,
                )
            )
        if f.limit:
            q = q.limit(f.limit)
        if conn is not None:
            return self._load(conn, q)
        with self.ledger.reading() as c:
            return self._load(c, q)

    def _load(self, conn: Connection, q: sa.Select[Any]) -> list[Appeal]:
        rows = conn.execute(q).mappings().all()
        if not rows:
            return []
        ids = [r["appeal_id"] for r in rows]
        reviewers: dict[int, list[tuple[int, str]]] = defaultdict(list)
        votes: dict[int, list[Vote]] = defaultdict(list)
        evidence: dict[int, list[EvidenceFile]] = defaultdict(list)
        for part in _chunks(ids, 500):
            r = at.appeal_reviewers
            for rid, rnd, who in conn.execute(
                sa.select(r.c.appeal_id, r.c.round, r.c.reviewer_id)
                .where(r.c.appeal_id.in_(part))
                .order_by(r.c.assigned_at, r.c.reviewer_id)
            ):
                reviewers[rid].append((rnd, who))
            v = at.appeal_votes
            for vr in conn.execute(
                sa.select(v).where(v.c.appeal_id.in_(part)).order_by(v.c.at, v.c.reviewer_id)
            ).mappings():
                votes[vr["appeal_id"]].append(
                    Vote(
                        reviewer_id=vr["reviewer_id"],
                        vote=vr["vote"],
                        reason=vr["reason"],
                        used_automated_evidence=bool(vr["used_automated_evidence"]),
                        at=vr["at"],
                        round=vr["round"],
                    )
                )
            e = at.appeal_evidence
            for er in conn.execute(
                sa.select(e).where(e.c.appeal_id.in_(part)).order_by(e.c.added_at, e.c.sha256)
            ).mappings():
                evidence[er["appeal_id"]].append(
                    EvidenceFile(
                        sha256=er["sha256"],
                        name=er["name"],
                        size=int(er["size"]),
                        round=er["round"],
                        added_by=er["added_by"],
                        added_at=er["added_at"],
                    )
                )
        return [
            _appeal(
                row,
                reviewers[row["appeal_id"]],
                votes[row["appeal_id"]],
                evidence[row["appeal_id"]],
            )
            for row in rows
        ]

    def claim_of(self, rating_id: int, conn: Connection | None = None) -> int | None:
        """The id of the admitted appeal that contests this rating, if any."""
        q = sa.select(at.appeals.c.appeal_id).where(
            at.appeals.c.rating_id == rating_id, at.appeals.c.claims_rating.is_(True)
        )
        if conn is not None:
            return conn.execute(q).scalar()
        with self.ledger.reading() as c:
            return c.execute(q).scalar()

    def admitted_between(
        self, conn: Connection, appellant_id: str, start: datetime, end: datetime
    ) -> int:
        """The appellant's admitted appeals filed in ``[start, end)``."""
        a = at.appeals
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    a.c.appellant_id == appellant_id,
                    a.c.claims_rating.is_(True),
                    a.c.filed_at >= start,
                    a.c.filed_at < end,
                )
            ).scalar_one()
        )

    # -- writes (inside the caller's transaction) -------------------------------------------

    def lock_person(self, uow: UnitOfWork, person_id: str) -> None:
        """Serialise one person's filings (quota, one claim per rating) until ``uow`` ends.

        Taken before anything is read in the unit of work: on SQLite it is the
        database's write lock, and a transaction that read first and wrote later would
        fail with "database is locked" under contention.
        """
        uow.lock(f"person:{person_id}")

    def insert(self, uow: UnitOfWork, row: Mapping[str, Any]) -> int | None:
        """Insert an appeal; ``None`` when it claims a rating another appeal already claims."""
        a = at.appeals
        conn = uow.connection
        if row.get("claims_rating"):
            stmt = insert_or_ignore(uow.dialect, a, row).returning(a.c.appeal_id)
            rid = conn.execute(stmt).scalar()
            return int(rid) if rid is not None else None
        return int(conn.execute(a.insert().returning(a.c.appeal_id), dict(row)).scalar_one())

    def update(
        self, uow: UnitOfWork, appeal_id: int, expect_version: int, values: Mapping[str, Any]
    ) -> int:
        """Apply ``values`` at ``expect_version`` and bump it; returns the new version."""
        a = at.appeals
        conn = uow.connection
        try:
            with translate_errors():
                res = conn.execute(
                    a.update()
                    .where(a.c.appeal_id == appeal_id, a.c.version == expect_version)
                    .values(**values, version=a.c.version + 1)
                )
        except AlreadyExists:
            # Only the claim index can clash: another appeal took the rating meanwhile.
            raise Conflict(
                f"appeal {appeal_id}: another appeal contests the same rating now"
            ) from None
        if res.rowcount == 1:
            return expect_version + 1
        now = conn.execute(
            sa.select(a.c.version, a.c.state).where(a.c.appeal_id == appeal_id)
        ).first()
        if now is None:
            raise NotFound(f"no appeal {appeal_id}")
        raise Conflict(
            f"appeal {appeal_id} changed meanwhile (you read version {expect_version}, it is now "
            f"version {now.version}, {now.state}); someone acted first: re-read it with "
            f"`integrity appeal show {appeal_id}` and act again if still needed"
        )

    def add_reviewer(
        self,
        uow: UnitOfWork,
        appeal_id: int,
        round_: int,
        reviewer_id: str,
        by: str,
        at_: datetime,
    ) -> None:
        uow.connection.execute(
            at.appeal_reviewers.insert(),
            {
                "appeal_id": appeal_id,
                "round": round_,
                "reviewer_id": reviewer_id,
                "assigned_by": by,
                "assigned_at": at_,
            },
        )

    def add_vote(self, uow: UnitOfWork, appeal_id: int, vote: Vote) -> None:
        # The version check before it makes a clash unlikely; if one happens, the
        # whole transaction rolls back as a Conflict.
        try:
            with translate_errors():
                uow.connection.execute(
                    at.appeal_votes.insert(),
                    {
                        "appeal_id": appeal_id,
                        "round": vote.round,
                        "reviewer_id": vote.reviewer_id,
                        "vote": vote.vote,
                        "reason": vote.reason,
                        "used_automated_evidence": vote.used_automated_evidence,
                        "at": vote.at,
                    },
                )
        except AlreadyExists:
            raise Conflict(
                f"{vote.reviewer_id} already voted on appeal {appeal_id} in round {vote.round}"
            ) from None

    def add_evidence(
        self,
        uow: UnitOfWork,
        appeal_id: int,
        files: Iterable[StoredFile],
        round_: int,
        by: str,
        at_: datetime,
    ) -> None:
        rows = [
            {
                "appeal_id": appeal_id,
                "sha256": f.sha256,
                "name": f.name[:255],
                "size": f.size,
                "round": round_,
                "added_by": by,
                "added_at": at_,
            }
            for f in files
        ]
        if rows:
            uow.connection.execute(at.appeal_evidence.insert(), rows)


def _appeal(
    row: Any,
    reviewers: Sequence[tuple[int, str]],
    votes: Sequence[Vote],
    evidence: Sequence[EvidenceFile],
) -> Appeal:
    rnd = int(row["round"])
    uae = row["used_automated_evidence"]
    return Appeal(
        appeal_id=int(row["appeal_id"]),
        rating_id=int(row["rating_id"]),
        appellant_id=row["appellant_id"],
        appellant_unit=row["appellant_unit"],
        window_id=row["window_id"],
        ground=row["ground"],
        reason=row["reason"],
        state=State(row["state"]),
        ineligible_reasons=tuple(filter(None, row["ineligible_reasons"].split(";"))),
        round=rnd,
        filed_at=row["filed_at"],
        round_started_at=row["round_started_at"],
        due_at=row["due_at"],
        decided_at=row["decided_at"],
        decided_by=row["decided_by"],
        decision_reason=row["decision_reason"],
        used_automated_evidence=None if uae is None else bool(uae),
        prior_outcome=State(row["prior_outcome"]) if row["prior_outcome"] else None,
        reversals=int(row["reversals"]),
        escalations=int(row["escalations"]),
        reopens=int(row["reopens"]),
        closed_at=row["closed_at"],
        updated_at=row["updated_at"],
        version=int(row["version"]),
        claims_rating=bool(row["claims_rating"]),
        reviewers=tuple(p for r, p in reviewers if r == rnd),
        votes=tuple(v for v in votes if v.round == rnd),
        evidence=tuple(evidence),
        past_reviewers=frozenset(p for r, p in reviewers if r < rnd),
    )


def _chunks(items: Sequence[Any], n: int) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]
