"""The appeal service: one method per action, each a checked transition written to the ledger.

Every method takes the acting person's id, checks their role through the People
registry and the separation-of-duties rules, asks the transition table, then writes
the appeal's row (optimistically, at the version it read), its side rows and its
ledger events in one transaction. An upheld appeal voids the rating with a status
event citing the appeal; anything else leaves the rating as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from appeals.context import (
    WINDOW_CASE,
    RatingContext,
    cluster_summary,
    findings_of,
    is_automated_evidence,
)
from appeals.evidence import EvidenceStore, StoredFile
from appeals.model import (
    ACTION_OF_KIND,
    APPEAL_KINDS,
    EVENT_KINDS,
    FILED_KIND,
    Action,
    Appeal,
    State,
    Vote,
    allowed_commands,
    initial_state,
    transition,
)
from appeals.policy import (
    GROUND_CODES,
    GROUNDS,
    AppealPolicy,
    FilingFacts,
    Ineligibility,
    check_filing,
    month_bounds,
    reviewer_conflict,
    uphold_completes,
    written_reason,
)
from appeals.repository import AppealFilter, AppealRepository
from appeals.stats import summarise, summarise_by
from integrity.app import App
from integrity.catalogue import Kind, Reason
from integrity.clock import Clock
from integrity.errors import (
    ConfigError,
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PolicyViolation,
)
from integrity.model import Event, Status, StoredRating, void_event
from integrity.people import People, Person, require_any
from integrity.ports import Ledger, RatingQuery, UnitOfWork

READ_ROLES = ("reviewer", "admin", "auditor")  # may read every appeal


@dataclass(frozen=True)
class FilingResult:
    """A recorded filing: the appeal, and why it was not admitted (empty if it was)."""

    appeal: Appeal
    ineligible: tuple[Ineligibility, ...]

    @property
    def admitted(self) -> bool:
        return not self.ineligible


@dataclass(frozen=True)
class EscalationRun:
    escalated: tuple[Appeal, ...]
    skipped: tuple[tuple[int, str], ...]  # (appeal id, why) for appeals that changed meanwhile


@dataclass(frozen=True)
class AppealDetail:
    """Everything ``appeal show`` presents: the appeal, its ledger history, its files with
    their state on disk, what may happen next and, for people who read every appeal
    (reviewers, admins, auditors), the rating's context."""

    appeal: Appeal
    history: tuple[Event, ...]
    evidence: tuple[dict[str, Any], ...]
    allowed_next: tuple[str, ...]
    context: RatingContext | None


class AppealService:
    """Staff appeals against low scores, and their review."""

    def __init__(
        self,
        ledger: Ledger,
        people: People,
        clock: Clock,
        policy: AppealPolicy,
        *,
        timezone: ZoneInfo,
        rule_set_id: str,
        evidence: EvidenceStore,
        repo: AppealRepository | None = None,
    ) -> None:
        self.ledger = ledger
        self.people = people
        self.clock = clock
        self.policy = policy
        self.tz = timezone
        self.rule_set_id = rule_set_id
        self.evidence = evidence
        self.repo = repo or AppealRepository(ledger)

    @classmethod
    def from_app(cls, app: App) -> AppealService:
        """Wire from an opened instance (the composition root's factory)."""
        policy = AppealPolicy.from_section(
            app.core.section("appeals"), app.core.rubric, app.core.calendar
        )
        service = cls(
            app.ledger,
            app.people,
            app.clock,
            policy,
            timezone=app.core.timezone,
            rule_set_id=app.core.rule_set_id,
            evidence=EvidenceStore(app.settings.home / "evidence", policy.max_evidence_bytes),
        )
        service.check_schema()
        return service

    def check_schema(self) -> None:
        if not self.repo.schema_ready():
            raise ConfigError(
                "the database has no appeals tables; run `integrity init` to upgrade the schema"
            )

    # -- who is acting --------------------------------------------------------------------

    def require_any(self, actor: str | None, roles: Sequence[str]) -> Person:
        """The acting person if they hold one of ``roles`` (checked via ``People.require``)."""
        return require_any(self.people, actor, roles)

    def _appellant_units(self, appeal: Appeal) -> set[str]:
        units = {appeal.appellant_unit}
        with contextlib.suppress(NotFound):
            units.add(self.people.get(appeal.appellant_id).unit)
        return units

    def _check_reviewer(self, appeal: Appeal, reviewer: Person) -> None:
        why = reviewer_conflict(
            reviewer_id=reviewer.person_id,
            reviewer_unit=reviewer.unit,
            appellant_id=appeal.appellant_id,
            appellant_units=self._appellant_units(appeal),
            earlier_reviewers=appeal.past_reviewers,
            fresh_reviewers=self.policy.fresh_reviewers_on_reopen,
        )
        if why:
            raise PermissionDenied(
                f"{reviewer.person_id} may not review appeal {appeal.appeal_id}: {why}"
            )

    def _require_assigned(self, appeal: Appeal, reviewer: Person) -> None:
        self._check_reviewer(appeal, reviewer)
        if reviewer.person_id not in appeal.reviewers:
            raise PermissionDenied(
                f"{reviewer.person_id} is not assigned to appeal {appeal.appeal_id} "
                f"(assigned: {', '.join(appeal.reviewers) or 'nobody'}); "
                f"assign first: integrity appeal assign {appeal.appeal_id} --reviewer {reviewer.person_id}"
            )

    def _require_appellant(self, appeal: Appeal, actor: str | None) -> Person:
        if actor and actor != appeal.appellant_id:
            raise PermissionDenied(
                f"only the appellant ({appeal.appellant_id}) may do this on appeal {appeal.appeal_id}"
            )
        return self.people.require(actor, "staff")

    # -- filing ---------------------------------------------------------------------------

    def file(
        self,
        actor: str | None,
        rating_id: int,
        ground: str,
        reason: str,
        evidence: Iterable[Path] = (),
    ) -> FilingResult:
        """File an appeal about a rating of the acting staff member.

        Always recorded: admitted as ``filed``, or ``ineligible`` with every reason. Only
        a rating that does not exist, an unknown ground or a missing reason are refused
        without a record (nothing to attach it to, or a typo).
        """
        person = self.people.require(actor, "staff")
        if ground not in GROUND_CODES:
            raise InvalidInput(
                [FieldError("ground", f"unknown ground {ground!r}; grounds: {', '.join(GROUNDS)}")],
                what="appeal",
            )
        reason = written_reason(self.policy, reason)
        rating = self.ledger.rating(rating_id)
        stored = self._store(evidence)
        now = self.clock.now()
        start, end = month_bounds(now, self.tz)
        with self.ledger.unit_of_work() as uow:
            self.repo.lock_person(uow, person.person_id)
            conn = uow.connection
            facts = FilingFacts(
                appellant_id=person.person_id,
                appellant_windows=person.windows,
                rating_staff_id=rating.staff_id,
                rating_window_id=rating.window_id,
                rating_status=rating.status,
                composite=rating.composite,
                scores=rating.scores,
                submitted_at=rating.submitted_at,
                filed_at=now,
                ground=ground,
                admitted_this_month=self.repo.admitted_between(conn, person.person_id, start, end),
                existing_appeal=self.repo.claim_of(rating_id, conn),
            )
            problems = check_filing(self.policy, facts)
            row = self._filing_row(person, rating, ground, reason, now, problems)
            appeal_id = self.repo.insert(uow, row)
            if appeal_id is None:  # another filing claimed the rating a moment ago
                other = self.repo.claim_of(rating_id, conn)
                problems = (
                    *problems,
                    Ineligibility(
                        Reason.ALREADY_APPEALED,
                        f"appeal {other} already contests this rating (one per rating)",
                    ),
                )
                row = self._filing_row(person, rating, ground, reason, now, problems)
                appeal_id = self.repo.insert(uow, row)
                assert appeal_id is not None
            self.repo.add_evidence(uow, appeal_id, stored, 1, person.person_id, now)
            state = State(row["state"])
            uow.append(
                Event(
                    kind=FILED_KIND,
                    actor=person.person_id,
                    at=now,
                    rating_id=rating_id,
                    reasons=tuple(p.code for p in problems),
                    rule_set_id=self.rule_set_id,
                    subject=f"appeal:{appeal_id}",
                    evidence={
                        "appeal_id": appeal_id,
                        "from": None,
                        "to": state.value,
                        "round": 1,
                        "version": 1,
                        "ground": ground,
                        "reason": reason,
                        "files": [f.sha256 for f in stored],
                        "ineligible": [{"code": p.code, "message": p.message} for p in problems],
                        "due_at": row["due_at"].isoformat() if row["due_at"] else None,
                    },
                ),
            )
        return FilingResult(self.repo.get(appeal_id), problems)

    def _filing_row(
        self,
        person: Person,
        rating: StoredRating,
        ground: str,
        reason: str,
        now: datetime,
        problems: Sequence[Ineligibility],
    ) -> dict[str, Any]:
        admitted = not problems
        return {
            "rating_id": rating.rating_id,
            "claims_rating": admitted,
            "appellant_id": person.person_id,
            "appellant_unit": person.unit,
            "window_id": rating.window_id,
            "ground": ground,
            "reason": reason,
            "state": initial_state(admitted).value,
            "ineligible_reasons": ";".join(p.code for p in problems),
            "round": 1,
            "filed_at": now,
            "round_started_at": now,
            "due_at": self.policy.due_at(now, self.tz) if admitted else None,
            "closed_at": None if admitted else now,
            "updated_at": now,
            "version": 1,
        }

    def _store(self, paths: Iterable[Path]) -> list[StoredFile]:
        seen: dict[str, StoredFile] = {}
        for p in paths:
            f = self.evidence.put(Path(p))
            seen.setdefault(f.sha256, f)
        return list(seen.values())

    # -- review ---------------------------------------------------------------------------

    def assign(self, actor: str | None, appeal_id: int, reviewer_id: str | None = None) -> Appeal:
        """Add a reviewer to the current round: an admin assigns anyone eligible, a
        reviewer only themselves."""
        acting = self.require_any(actor, ("admin", "reviewer"))
        appeal = self.repo.get(appeal_id)
        transition(appeal.state, Action.ASSIGN, appeal_id)
        if acting.person_id == appeal.appellant_id:
            raise PermissionDenied("an appellant never handles their own appeal")
        target_id = reviewer_id or acting.person_id
        if target_id != acting.person_id and not acting.has("admin"):
            raise PermissionDenied(
                "only an admin assigns other people; a reviewer may assign themselves"
            )
        try:
            target = self.people.get(target_id)
        except NotFound:
            raise NotFound(f"no person {target_id!r} in the registry") from None
        if not target.has("reviewer"):
            raise PolicyViolation(f"{target_id} does not hold the reviewer role (or is inactive)")
        self._check_reviewer(appeal, target)
        if target_id in appeal.reviewers:
            raise PolicyViolation(f"{target_id} is already assigned to appeal {appeal_id}")
        now = self.clock.now()

        def writes(uow: UnitOfWork) -> None:
            self.repo.add_reviewer(uow, appeal_id, appeal.round, target_id, acting.person_id, now)

        return self._apply(
            appeal,
            Action.ASSIGN,
            acting.person_id,
            now,
            writes=writes,
            extra={"reviewer": target_id},
        )

    def request_info(self, actor: str | None, appeal_id: int, message: str) -> Appeal:
        """An assigned reviewer asks the appellant for more information."""
        person = self.people.require(actor, "reviewer")
        appeal = self.repo.get(appeal_id)
        transition(appeal.state, Action.REQUEST_INFO, appeal_id)
        self._require_assigned(appeal, person)
        message = written_reason(self.policy, message, "message")
        return self._apply(
            appeal,
            Action.REQUEST_INFO,
            person.person_id,
            self.clock.now(),
            extra={"message": message},
        )

    def respond(
        self, actor: str | None, appeal_id: int, message: str, evidence: Iterable[Path] = ()
    ) -> Appeal:
        """The appellant answers a request for information, optionally with more files."""
        appeal = self.repo.get(appeal_id)
        person = self._require_appellant(appeal, actor)
        transition(appeal.state, Action.RESPOND, appeal_id)
        message = written_reason(self.policy, message, "message")
        stored = [f for f in self._store(evidence) if f.sha256 not in _hashes(appeal)]
        now = self.clock.now()

        def writes(uow: UnitOfWork) -> None:
            self.repo.add_evidence(uow, appeal_id, stored, appeal.round, person.person_id, now)

        return self._apply(
            appeal,
            Action.RESPOND,
            person.person_id,
            now,
            writes=writes,
            extra={"message": message, "files": [f.sha256 for f in stored]},
        )

    def decide(
        self,
        actor: str | None,
        appeal_id: int,
        *,
        uphold: bool,
        reason: str,
        used_automated_evidence: bool,
    ) -> Appeal:
        """An assigned reviewer's decision. A reject decides; an uphold is a vote until
        ``uphold_reviewers`` distinct reviewers have upheld, and the last one voids the
        rating. Every vote has a written reason and says whether automated evidence
        (detection holds, holds at intake, window cases, risk scores) was used."""
        person = self.people.require(actor, "reviewer")
        appeal = self.repo.get(appeal_id)
        if uphold:
            done = uphold_completes(self.policy, appeal.uphold_voters)
            action = Action.UPHOLD if done else Action.VOTE_UPHOLD
        else:
            action = Action.REJECT
        to = transition(appeal.state, action, appeal_id)
        self._require_assigned(appeal, person)
        reason = written_reason(self.policy, reason)
        if any(v.reviewer_id == person.person_id for v in appeal.votes):
            raise PolicyViolation(
                f"{person.person_id} already voted on appeal {appeal_id} in this round; "
                f"a different reviewer must decide"
            )
        now = self.clock.now()
        vote = Vote(
            reviewer_id=person.person_id,
            vote="uphold" if uphold else "reject",
            reason=reason,
            used_automated_evidence=used_automated_evidence,
            at=now,
            round=appeal.round,
        )
        values: dict[str, Any] = {}
        rating_event = None
        if to.final:
            votes = [*appeal.votes, vote] if uphold else [vote]
            values = self._closing_values(appeal, to, now)
            values.update(
                decided_at=now,
                decided_by=person.person_id,
                decision_reason=reason,
                used_automated_evidence=any(v.used_automated_evidence for v in votes),
            )
            rating_event = self._rating_effect(appeal, to, person.person_id, now, votes)

        def writes(uow: UnitOfWork) -> None:
            self.repo.add_vote(uow, appeal_id, vote)

        return self._apply(
            appeal,
            action,
            person.person_id,
            now,
            values=values,
            writes=writes,
            rating_event=rating_event,
            extra={
                "vote": vote.vote,
                "reason": reason,
                "used_automated_evidence": used_automated_evidence,
                "uphold_votes": len(appeal.uphold_voters) + (1 if uphold else 0),
                "uphold_needed": self.policy.uphold_reviewers,
            },
        )

    def withdraw(self, actor: str | None, appeal_id: int, reason: str = "") -> Appeal:
        """The appellant withdraws; if a reopened upheld appeal is withdrawn, the rating
        it voided counts again."""
        appeal = self.repo.get(appeal_id)
        person = self._require_appellant(appeal, actor)
        transition(appeal.state, Action.WITHDRAW, appeal_id)
        now = self.clock.now()
        return self._apply(
            appeal,
            Action.WITHDRAW,
            person.person_id,
            now,
            values=self._closing_values(appeal, State.WITHDRAWN, now),
            rating_event=self._rating_effect(appeal, State.WITHDRAWN, person.person_id, now, []),
            extra={"reason": reason.strip()},
        )

    def escalate(self, actor: str | None, appeal_id: int, reason: str) -> Appeal:
        """Hand an appeal to supervisors: an admin any time, an assigned reviewer any time,
        the appellant once it is overdue. Never decides anything."""
        person = self.require_any(actor, ("admin", "reviewer", "staff"))
        appeal = self.repo.get(appeal_id)
        transition(appeal.state, Action.ESCALATE, appeal_id)
        now = self.clock.now()
        is_appellant = person.person_id == appeal.appellant_id
        if is_appellant:
            if not appeal.overdue(now):
                raise PolicyViolation(
                    f"appeal {appeal_id} is not overdue yet (due {appeal.due_at}); the "
                    "appellant may escalate only after the deadline"
                )
        elif person.has("admin"):
            pass
        elif person.has("reviewer"):
            self._require_assigned(appeal, person)
        else:
            raise PermissionDenied(
                f"{person.person_id} may not escalate appeal {appeal_id} (admins, its "
                "reviewers, or its appellant once overdue)"
            )
        reason = written_reason(self.policy, reason)
        return self._apply(
            appeal,
            Action.ESCALATE,
            person.person_id,
            now,
            values={"escalations": appeal.escalations + 1},
            reasons=(Reason.ESCALATION_REQUESTED,),
            extra={"reason": reason, "overdue": appeal.overdue(now)},
        )

    def escalate_overdue(self, actor: str | None) -> EscalationRun:
        """Escalate every open appeal past its deadline. A missed deadline escalates;
        it never upholds (nor rejects) by itself."""
        person = self.require_any(actor, ("admin", "reviewer"))
        now = self.clock.now()
        due = self.repo.find(
            AppealFilter(
                states=(State.FILED, State.UNDER_REVIEW, State.NEEDS_INFO, State.REOPENED),
                overdue_at=now,
            )
        )
        done: list[Appeal] = []
        skipped: list[tuple[int, str]] = []
        for appeal in due:
            try:
                done.append(
                    self._apply(
                        appeal,
                        Action.ESCALATE,
                        person.person_id,
                        now,
                        values={"escalations": appeal.escalations + 1},
                        reasons=(Reason.DEADLINE_MISSED,),
                        extra={
                            "reason": "decision deadline missed",
                            "due_at": appeal.due_at.isoformat() if appeal.due_at else None,
                            "overdue": True,
                        },
                    )
                )
            except (Conflict, PolicyViolation) as err:
                skipped.append((appeal.appeal_id, str(err)))
        return EscalationRun(tuple(done), tuple(skipped))

    def reopen(
        self, actor: str | None, appeal_id: int, reason: str, evidence: Iterable[Path]
    ) -> Appeal:
        """Open a final appeal again with new evidence: a new review round, a new deadline
        and (by default) fresh reviewers. The appellant may, within ``reopen_window_days``
        of closing and at most ``max_reopens`` times; an admin may any time, and is the
        only one who may reopen an ineligible filing. The rating keeps its status until
        the new round is decided."""
        person = self.require_any(actor, ("staff", "admin"))
        appeal = self.repo.get(appeal_id)
        to = transition(appeal.state, Action.REOPEN, appeal_id)
        now = self.clock.now()
        is_appellant = person.person_id == appeal.appellant_id
        if not is_appellant and not person.has("admin"):
            raise PermissionDenied(
                f"only the appellant ({appeal.appellant_id}) or an admin may reopen appeal {appeal_id}"
            )
        reason = written_reason(self.policy, reason)
        if appeal.state is State.INELIGIBLE and not (person.has("admin") and not is_appellant):
            raise PermissionDenied(
                "only an admin (not the appellant) may reopen an ineligible filing"
            )
        if is_appellant:  # limits bind every appellant, admins included
            if appeal.reopens >= self.policy.max_reopens:
                raise PolicyViolation(
                    f"appeal {appeal_id} was reopened {appeal.reopens} time(s); the limit is "
                    f"{self.policy.max_reopens}"
                )
            closed = appeal.closed_at or appeal.updated_at
            days = (now - closed).total_seconds() / 86400
            if days > self.policy.reopen_window_days:
                raise PolicyViolation(
                    f"appeal {appeal_id} closed {days:.1f} days ago; it may be reopened within "
                    f"{self.policy.reopen_window_days:g} days"
                )
        stored = [f for f in self._store(evidence) if f.sha256 not in _hashes(appeal)]
        if not stored:
            raise InvalidInput(
                [FieldError("evidence", "reopening needs at least one new evidence file")],
                what="appeal action",
            )
        claims = appeal.claims_rating
        if not claims:
            other = self.repo.claim_of(appeal.rating_id)
            if other is not None and other != appeal_id:
                raise PolicyViolation(
                    f"appeal {other} already contests rating {appeal.rating_id}; reopen that one"
                )
        round_ = appeal.round + 1
        values = {
            "round": round_,
            "round_started_at": now,
            "due_at": self.policy.due_at(now, self.tz),
            "prior_outcome": appeal.state.value,
            "decided_at": None,
            "decided_by": None,
            "decision_reason": None,
            "used_automated_evidence": None,
            "closed_at": None,
            "claims_rating": True,
            "reopens": appeal.reopens + 1,
        }

        def writes(uow: UnitOfWork) -> None:
            self.repo.add_evidence(uow, appeal_id, stored, round_, person.person_id, now)

        assert to is State.REOPENED
        return self._apply(
            appeal,
            Action.REOPEN,
            person.person_id,
            now,
            values=values,
            writes=writes,
            round_=round_,
            extra={
                "reason": reason,
                "files": [f.sha256 for f in stored],
                "prior": appeal.state.value,
            },
        )

    # -- the one write path ---------------------------------------------------------------

    def _closing_values(self, appeal: Appeal, outcome: State, now: datetime) -> dict[str, Any]:
        changed = appeal.prior_outcome is not None and appeal.prior_outcome is not outcome
        return {"closed_at": now, "reversals": appeal.reversals + (1 if changed else 0)}

    def _rating_effect(
        self, appeal: Appeal, outcome: State, actor: str, now: datetime, votes: Sequence[Vote]
    ) -> tuple[Event, int] | None:
        """The rating's status event for a round that closes with ``outcome``, if any.

        Upheld: void it (unless something else already voided it). Otherwise: if this
        appeal voided it in an earlier round and nothing changed it since, reinstate the
        status it had before. ``expect_version`` guards against a concurrent change.
        """
        status, version = self.ledger.current(appeal.rating_id)
        if outcome is State.UPHELD:
            if status is Status.VOIDED:
                return None
            return (
                void_event(
                    appeal.rating_id,
                    actor=actor,
                    at=now,
                    reasons=(Reason.APPEAL_UPHELD,),
                    rule_set_id=self.rule_set_id,
                    subject=appeal.subject,
                    evidence={
                        "appeal_id": appeal.appeal_id,
                        "round": appeal.round,
                        "previous_status": status.value,
                        "reviewers": sorted(v.reviewer_id for v in votes),
                        "used_automated_evidence": any(v.used_automated_evidence for v in votes),
                    },
                ),
                version,
            )
        if status is not Status.VOIDED:
            return None
        last = [e for e in self.ledger.events_of(appeal.rating_id) if e.status is not None][-1]
        if last.kind != Kind.VOID or last.evidence.get("appeal_id") != appeal.appeal_id:
            return None
        previous = Status(str(last.evidence.get("previous_status", Status.ACCEPTED.value)))
        return (
            Event(
                kind=Kind.REINSTATE,
                actor=actor,
                at=now,
                rating_id=appeal.rating_id,
                status=previous,
                reasons=(Reason.APPEAL_REVERSED,),
                rule_set_id=self.rule_set_id,
                subject=appeal.subject,
                evidence={
                    "appeal_id": appeal.appeal_id,
                    "round": appeal.round,
                    "outcome": outcome.value,
                    "void_event_id": last.event_id,
                },
            ),
            version,
        )

    def _apply(
        self,
        appeal: Appeal,
        action: Action,
        actor: str,
        now: datetime,
        *,
        values: Mapping[str, Any] | None = None,
        writes: Callable[[UnitOfWork], None] | None = None,
        rating_event: tuple[Event, int] | None = None,
        reasons: tuple[str, ...] = (),
        extra: Mapping[str, Any] | None = None,
        round_: int | None = None,
    ) -> Appeal:
        """Move ``appeal`` by ``action`` at the version it was read, with its ledger event
        (and the rating's status event) in one transaction; ``Conflict`` if it changed."""
        to = transition(appeal.state, action, appeal.appeal_id)
        row = {"state": to.value, "updated_at": now, **(values or {})}
        with self.ledger.unit_of_work() as uow:
            version = self.repo.update(uow, appeal.appeal_id, appeal.version, row)
            if writes is not None:
                writes(uow)
            uow.append(
                Event(
                    kind=EVENT_KINDS[action],
                    actor=actor,
                    at=now,
                    rating_id=appeal.rating_id,
                    reasons=reasons,
                    rule_set_id=self.rule_set_id,
                    subject=appeal.subject,
                    evidence={
                        "appeal_id": appeal.appeal_id,
                        "from": appeal.state.value,
                        "to": to.value,
                        "round": round_ or appeal.round,
                        "version": version,
                        **(extra or {}),
                    },
                ),
            )
            if rating_event is not None:
                uow.append(*rating_event)
        return self.repo.get(appeal.appeal_id)

    # -- reading --------------------------------------------------------------------------

    def get(self, actor: str | None, appeal_id: int) -> Appeal:
        """One appeal, for its appellant or anyone holding a read role."""
        person = self.require_any(actor, (*READ_ROLES, "staff"))
        appeal = self.repo.get(appeal_id)
        if not _reads_all(person) and person.person_id != appeal.appellant_id:
            raise PermissionDenied(f"{person.person_id} may not read appeal {appeal_id}")
        return appeal

    def find(self, actor: str | None, f: AppealFilter) -> list[Appeal]:
        """Appeals matching ``f``; a staff member without a read role sees only their own."""
        person = self.require_any(actor, (*READ_ROLES, "staff"))
        if not _reads_all(person):
            if f.appellant_id not in (None, person.person_id):
                raise PermissionDenied(f"{person.person_id} may list only their own appeals")
            f = dataclasses.replace(f, appellant_id=person.person_id)
        return self.repo.find(f)

    def history(self, appeal: Appeal) -> list[Event]:
        """The appeal's events on the ledger (every action, and the rating's status
        events it caused), oldest first."""
        return self.ledger.events_about(appeal.subject)

    def show(self, actor: str | None, appeal_id: int) -> AppealDetail:
        """One appeal in full for its appellant or a reader; the rating's context only
        for those who read every appeal (the appellant sees their own appeal)."""
        person = self.require_any(actor, (*READ_ROLES, "staff"))
        appeal = self.repo.get(appeal_id)
        reads_all = _reads_all(person)
        if not reads_all and person.person_id != appeal.appellant_id:
            raise PermissionDenied(f"{person.person_id} may not read appeal {appeal_id}")
        return AppealDetail(
            appeal=appeal,
            history=tuple(self.history(appeal)),
            evidence=tuple(self.evidence_files(appeal)),
            allowed_next=allowed_commands(appeal.state),
            context=self.context(appeal) if reads_all else None,
        )

    def list_evidence(self, actor: str | None, appeal_id: int) -> list[dict[str, Any]]:
        """The files of one appeal (see :meth:`evidence_files`), for whoever may read it."""
        return self.evidence_files(self.get(actor, appeal_id))

    def stats(
        self, actor: str | None, f: AppealFilter, by: str | None = None
    ) -> list[dict[str, Any]]:
        """:func:`~appeals.stats.summarise` of the appeals matching ``f`` (one row), or
        one row per group ``by`` (ground, unit, appellant, window). For reviewers,
        admins and auditors."""
        self.require_any(actor, READ_ROLES)
        appeals = self.find(actor, f)
        now = self.clock.now()
        return summarise_by(appeals, by, now) if by else [summarise(appeals, now)]

    def context(self, appeal: Appeal) -> RatingContext:
        """What a reviewer needs next to the appeal: the rating, its events, the automated
        evidence about it (detection holds with every finding, a hold at intake, a case
        opened on its window), and the low ratings around it on the same staff member
        grouped by device and network prefix (a bombing cluster)."""
        rating = self.ledger.rating(appeal.rating_id)
        events = self.ledger.events_of(appeal.rating_id)
        cases = self.ledger.events_about(WINDOW_CASE.format(window_id=rating.window_id))
        flags = sorted(
            (e for e in (*events, *cases) if is_automated_evidence(e, rating.window_id)),
            key=lambda e: e.event_id or 0,
        )
        near = self.low_ratings_near(rating)
        return RatingContext(
            rating=rating,
            events=tuple(e for e in events if e.kind not in APPEAL_KINDS),
            flags=tuple(flags),
            findings=tuple(findings_of(flags)),
            cluster=cluster_summary(rating, near),
        )

    def low_ratings_near(self, rating: StoredRating) -> list[StoredRating]:
        """Low ratings (composite below the appeals' mark) on the same staff member (or,
        when the rating names none, the same window) submitted within ``cluster_days``
        either side of it, this one included, oldest first."""
        span = timedelta(days=self.policy.cluster_days)
        return self.ledger.find_ratings(
            RatingQuery(
                staff_id=rating.staff_id or "",
                window_id=None if rating.staff_id else rating.window_id,
                composite_below=self.policy.low_composite_below,
                submitted_from=rating.submitted_at - span,
                # the span is closed at both ends; the query's upper bound is exclusive
                submitted_to=rating.submitted_at + span + timedelta(microseconds=1),
                order="submitted_at",
            )
        )

    def verify(self, actor: str | None) -> list[str]:
        """Replay every appeal's ledger events through the transition table and compare
        with its stored state, version and the rating's status; also check evidence
        files. Returns the problems found (empty when all is consistent)."""
        self.require_any(actor, ("auditor", "admin"))
        problems: list[str] = []
        for appeal in self.repo.find(AppealFilter()):
            problems.extend(self._verify_one(appeal))
        return problems

    def _verify_one(self, appeal: Appeal) -> list[str]:
        out: list[str] = []
        name = f"appeal {appeal.appeal_id}"
        events = [e for e in self.history(appeal) if e.kind in APPEAL_KINDS]
        if not events or events[0].kind != FILED_KIND:
            return [f"{name}: no appeal.filed event on the ledger"]
        state = State(str(events[0].evidence.get("to")))
        for e in events[1:]:
            action = ACTION_OF_KIND.get(e.kind)
            if action is None:
                out.append(f"{name}: unknown event kind {e.kind} (event {e.event_id})")
                continue
            if e.evidence.get("from") != state.value:
                out.append(
                    f"{name}: event {e.event_id} starts from {e.evidence.get('from')}, "
                    f"but the replay is at {state.value}"
                )
            try:
                state = transition(state, action)
            except PolicyViolation:
                out.append(
                    f"{name}: event {e.event_id} ({e.kind}) is not allowed from {state.value}"
                )
                state = State(str(e.evidence.get("to")))
        if state is not appeal.state:
            out.append(
                f"{name}: stored state {appeal.state.value}, ledger replay gives {state.value}"
            )
        if len(events) != appeal.version:
            out.append(f"{name}: version {appeal.version} but {len(events)} ledger events")
        if appeal.state is State.UPHELD:
            status, _ = self.ledger.current(appeal.rating_id)
            if status is not Status.VOIDED:
                out.append(f"{name}: upheld but rating {appeal.rating_id} is {status.value}")
        for f in appeal.evidence:
            state_of_file = self.evidence.check(f.sha256)
            if state_of_file != "ok":
                out.append(f"{name}: evidence {f.sha256[:12]} ({f.name}) is {state_of_file}")
        return out

    def evidence_files(self, appeal: Appeal) -> list[dict[str, Any]]:
        """The appeal's files with their state on disk (ok, missing, altered)."""
        return [
            {
                "sha256": f.sha256,
                "name": f.name,
                "bytes": f.size,
                "round": f.round,
                "added_by": f.added_by,
                "added_at": f.added_at,
                "on_disk": self.evidence.check(f.sha256),
                "path": str(self.evidence.path(f.sha256)),
            }
            for f in appeal.evidence
        ]


def _reads_all(person: Person) -> bool:
    return any(person.has(r) for r in READ_ROLES)


def _hashes(appeal: Appeal) -> set[str]:
    return {f.sha256 for f in appeal.evidence}
