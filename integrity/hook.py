"""The validation hook: one pipeline behind the Python API, ``ingest`` and HTTP.

parse → pseudonymise → identical retry? → duplicate ticket? → gates (rate limits,
real-time checks: ``rules`` supplies them) → decision → ledger (rating + decision
event, one transaction) → the decision, with the rater's receipt code
(:mod:`integrity.receipts`: derived from the rating id, never stored).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integrity.catalogue import Reason
from integrity.clock import Clock
from integrity.config import CoreConfig
from integrity.errors import BackendUnavailable, InvalidInput
from integrity.model import HOOK_ACTOR, REPLAY_ACTOR, Decision, Rating, Status, Verdict
from integrity.parsing import parse_rating
from integrity.ports import Gate, GateContext, Pending, RatingLedger
from integrity.pseudonym import Pseudonymiser
from integrity.receipts import ReceiptCodec

log = logging.getLogger("integrity.hook")

SEVERITY = {Status.ACCEPTED: 0, Status.HELD: 1, Status.REJECTED: 2}


@dataclass(frozen=True)
class IngestItem:
    """One line's outcome in a batch: a decision, or the field errors that refused it."""

    line: int
    decision: Decision | None = None
    error: InvalidInput | None = None


def combine(verdicts: Iterable[Verdict | None]) -> Verdict | None:
    """The most severe status of all verdicts, with every reason and all evidence."""
    found = [v for v in verdicts if v is not None]
    if not found:
        return None
    status = max((v.status for v in found), key=SEVERITY.__getitem__)
    reasons = tuple(sorted({r for v in found for r in v.reasons}))
    evidence: dict[str, Any] = {}
    for v in found:
        evidence.update(v.evidence)
    retry = [v.retry_after_s for v in found if v.retry_after_s is not None]
    return Verdict(status, reasons, evidence, max(retry) if retry else None)


class ValidationHook:
    """Judge ratings and write every one that parses to the ledger."""

    def __init__(
        self,
        ledger: RatingLedger,
        config: CoreConfig,
        gates: Sequence[Gate],
        pseudonymiser: Pseudonymiser,
        clock: Clock,
    ) -> None:
        self.ledger = ledger
        self.config = config
        self.gates = list(gates)
        self.pseudonymiser = pseudonymiser
        self.clock = clock
        self.receipts = ReceiptCodec(pseudonymiser.key)

    def reload(self) -> bool:
        """Let every gate pick up configuration it keeps from the ledger (venues); returns
        whether any gate found a change."""
        return any([gate.reload() for gate in self.gates])

    # -- one rating -------------------------------------------------------------------------

    def parse(
        self, obj: Any, received_at: datetime | None = None, client_id: str | None = None
    ) -> Rating:
        return parse_rating(
            obj,
            rubric=self.config.rubric,
            pseudonymiser=self.pseudonymiser,
            received_at=received_at or self.clock.now(),
            client_id=client_id,
        )

    def validate(self, obj: Any, *, replay: bool = False, client_id: str | None = None) -> Decision:
        """Judge one rating (a decoded JSON object) and record it.

        ``replay`` judges it at its own ``submitted_at`` (ingest of history); live
        intake judges at the time of receipt. ``client_id`` names the intake client
        that sent it (recorded with the rating and in its decision's evidence).
        Raises ``InvalidInput`` (nothing written) or ``BackendUnavailable`` (database down; nothing written, and the
        rate-limit slots the gates took for it given back).

        Optimistic: the gates run first and the ledger's write settles identical
        retries and duplicate tickets in the same round trip as the insert. When the
        write says the rating was not new after all, or fails, the slots the gates
        newly took for it are given back, so the limiter ends exactly as if the
        duplicate had been caught first (which is what :meth:`validate_stream` does)
        or as if the rating had never been sent.
        """
        rating = self.parse(obj, client_id=client_id)
        ctx = self._context(replay)
        pending = self._judge(rating, ctx)
        try:
            decision = self.ledger.record(pending, actor=decision_actor(replay))
        except Exception:  # nothing was written (one transaction): give the slots back
            self._release([rating], ctx)
            raise
        if decision.duplicate_ticket or (decision.replayed and _gates_missed(decision, self.gates)):
            # A duplicate ticket holds no slots, nor does a retry whose stored original
            # took none: give back what this submission newly took. (A retry of an
            # original that holds slots gives nothing back: a concurrent identical
            # submission may have been the one to record them.)
            self._release([rating], ctx)
        return self._receipted(decision)

    def _receipted(self, d: Decision) -> Decision:
        """The decision with its rater's receipt code (derived, never stored)."""
        return Decision(
            d.rating_id,
            d.status,
            d.reasons,
            d.rule_set_id,
            d.retry_after_s,
            d.replayed,
            self.receipts.code(d.rating_id),
        )

    def _release(self, ratings: Sequence[Rating], ctx: GateContext) -> None:
        for gate in self.gates:
            for rating in ratings:
                try:
                    gate.release(rating, ctx)
                except BackendUnavailable as err:  # the slot then expires with its window
                    log.warning(
                        "could not release %s slots of rating %s: %s",
                        gate.name,
                        rating.fingerprint[:12],
                        err,
                    )
                    break

    def _context(self, replay: bool) -> GateContext:
        return GateContext(replay=replay, rule_set_id=self.config.rule_set_id)

    def _judge(self, rating: Rating, ctx: GateContext) -> Pending:
        verdicts: list[Verdict | None] = []
        for gate in self.gates:
            try:
                verdicts.append(gate.check(rating, ctx))
            except BackendUnavailable as err:
                verdicts.append(_unavailable(gate, err))
        return self._pending(rating, combine(verdicts))

    def _pending(self, rating: Rating, verdict: Verdict | None) -> Pending:
        # The client goes into the decision's evidence too, so the Merkle log seals who
        # sent the rating (the leaf's fixed rating fields predate the column).
        sent_by = {} if rating.client_id is None else {"client_id": rating.client_id}
        if verdict is None:
            return Pending(rating, Status.ACCEPTED, (), sent_by, self.config.rule_set_id)
        return Pending(
            rating,
            verdict.status,
            verdict.reasons,
            {**verdict.evidence, **sent_by},
            self.config.rule_set_id,
            verdict.retry_after_s,
        )

    # -- many ratings (ingest) ------------------------------------------------------------

    def validate_stream(
        self,
        objs: Iterable[Any],
        *,
        replay: bool = True,
        chunk: int = 1000,
        on_progress: Callable[[int], None] | None = None,
        client_id: str | None = None,
        receipts: bool = True,
    ) -> Iterator[IngestItem]:
        """Parse and judge ratings (decoded JSON objects) in order, writing them in
        chunks; yields one item per input (see :meth:`judge_stream`)."""
        return self.judge_stream(
            self.parse_each(objs, client_id=client_id),
            replay=replay,
            chunk=chunk,
            on_progress=on_progress,
            receipts=receipts,
        )

    def parse_each(
        self, objs: Iterable[Any], *, client_id: str | None = None
    ) -> Iterator[Rating | InvalidInput]:
        """Each object parsed at its time of receipt, or the field errors refusing it."""
        for obj in objs:
            try:
                yield self.parse(obj, client_id=client_id)
            except InvalidInput as err:
                yield err

    def judge_stream(
        self,
        parsed: Iterable[Rating | InvalidInput],
        *,
        replay: bool = True,
        chunk: int = 1000,
        on_progress: Callable[[int], None] | None = None,
        receipts: bool = True,
    ) -> Iterator[IngestItem]:
        """Judge parsed ratings in order, writing them in chunks; yields one item per
        input (line numbers count from 1), a refused one (:class:`InvalidInput`) as its
        errors.

        ``receipts=False`` leaves the decisions' receipt codes out (a batch whose
        decisions go to no rater: ``integrity ingest`` prints a summary).

        Decisions are exactly those of calling :meth:`validate` one by one: a ticket
        or an identical submission repeated inside a chunk is seen by the later one (an
        identical one is answered with the earlier one's decision, as the ledger would).

        A chunk's write (one transaction) runs in a worker thread while the next chunk
        is parsed; the next chunk is judged only once that write has committed (its
        lookups see it), so chunks are judged and written strictly one after another.
        A chunk's items are yielded once its write has committed.
        """
        batch: list[tuple[int, Rating]] = []
        writing: _Writing | None = None  # the chunk whose write is in flight
        with ThreadPoolExecutor(1, thread_name_prefix="ingest-writer") as writer:
            try:
                for line, rating in enumerate(parsed, start=1):
                    if isinstance(rating, InvalidInput):
                        yield from self._settle(writing, on_progress, receipts)
                        writing = None
                        yield from self._flush(batch, replay, on_progress, receipts)
                        yield IngestItem(line, error=rating)
                        continue
                    if len(batch) >= chunk:
                        yield from self._settle(writing, on_progress, receipts)
                        writing = self._start(batch, replay, writer)
                        batch = []
                    batch.append((line, rating))
                yield from self._settle(writing, on_progress, receipts)
                writing = None
                yield from self._flush(batch, replay, on_progress, receipts)
            finally:
                if writing is not None:  # the consumer stopped, or parsing failed
                    try:
                        writing.done.result()  # a write is never left running
                    except Exception:  # not written: its slots go back
                        self._release(writing.checked, writing.ctx)

    def _flush(
        self,
        batch: list[tuple[int, Rating]],
        replay: bool,
        on_progress: Callable[[int], None] | None,
        receipts: bool = True,
    ) -> Iterator[IngestItem]:
        """Judge and write ``batch`` now (in this thread), yield its items, empty it."""
        if not batch:
            return
        yield from self._settle(self._start(list(batch), replay, None), on_progress, receipts)
        batch.clear()

    def _start(
        self,
        batch: list[tuple[int, Rating]],
        replay: bool,
        writer: ThreadPoolExecutor | None,
    ) -> _Writing:
        """Judge ``batch`` (lookups, gates) and start its write: in ``writer``'s thread, or
        here and now without one."""
        ratings = [r for _, r in batch]
        lookups = self.ledger.lookup_many(ratings)
        claimed: set[str] = set()
        first: dict[str, int] = {}  # fingerprint -> index of its first submission here
        out: list[Decision | None] = [None] * len(batch)
        again: dict[int, int] = {}  # index -> index of the identical earlier submission
        to_check: list[int] = []
        dup: set[int] = set()
        for i, (r, found) in enumerate(zip(ratings, lookups, strict=True)):
            if found.existing is not None:
                out[i] = found.existing
            elif r.fingerprint in first:
                again[i] = first[r.fingerprint]
            elif found.ticket_taken or r.ticket_id in claimed:
                first[r.fingerprint] = i
                dup.add(i)
            else:
                first[r.fingerprint] = i
                claimed.add(r.ticket_id)
                to_check.append(i)
        ctx = self._context(replay)
        gate_verdicts: dict[int, list[Verdict | None]] = {i: [] for i in to_check}
        checked = [ratings[i] for i in to_check]
        for gate in self.gates:
            try:
                results = gate.check_many(checked, ctx)
            except BackendUnavailable as err:
                results = [_unavailable(gate, err)] * len(checked)
            for i, v in zip(to_check, results, strict=True):
                gate_verdicts[i].append(v)
        pending: list[Pending] = []
        slots: list[int] = []
        for i, r in enumerate(ratings):
            if out[i] is not None or i in again:
                continue
            if i in dup:
                pending.append(
                    self._pending(r, Verdict(Status.REJECTED, (Reason.DUPLICATE_TICKET,)))
                )
            else:
                pending.append(self._pending(r, combine(gate_verdicts[i])))
            slots.append(i)
        actor = decision_actor(replay)
        done: Future[list[Decision]]
        if writer is not None:
            done = writer.submit(self.ledger.record_many, pending, actor=actor)
        else:
            done = Future()
            try:
                done.set_result(self.ledger.record_many(pending, actor=actor))
            except Exception as err:  # raised where the write is settled
                done.set_exception(err)
        return _Writing(batch, out, slots, again, checked, ctx, done)

    def _settle(
        self,
        writing: _Writing | None,
        on_progress: Callable[[int], None] | None,
        receipts: bool,
    ) -> Iterator[IngestItem]:
        """Wait for a chunk's write; yield its items (or, if it failed, give its slots
        back and raise: the chunk is one transaction, none of it was written)."""
        if writing is None:
            return
        out = writing.out
        try:
            written = writing.done.result()
        except Exception:
            self._release(writing.checked, writing.ctx)
            raise
        for i, d in zip(writing.slots, written, strict=True):
            out[i] = d
        for i, j in writing.again.items():
            # what the ledger answers an identical retry: the first decision, as stored
            orig = out[j]
            assert orig is not None
            out[i] = Decision(
                orig.rating_id, orig.status, orig.reasons, orig.rule_set_id, replayed=True
            )
        for (line, _), decided in zip(writing.batch, out, strict=True):
            assert decided is not None
            yield IngestItem(line, decision=self._receipted(decided) if receipts else decided)
        if on_progress is not None:
            on_progress(len(writing.batch))


@dataclass
class _Writing:
    """A judged chunk whose write (``done``) is in flight or finished."""

    batch: list[tuple[int, Rating]]
    out: list[Decision | None]  # decisions known before the write (earlier ratings)
    slots: list[int]  # the indexes written, in the order of the write's decisions
    again: dict[int, int]  # identical repeats inside the chunk -> their first index
    checked: list[Rating]  # what the gates counted (given back if the write fails)
    ctx: GateContext
    done: Future[list[Decision]]


def _gates_missed(first: Decision, gates: Sequence[Gate]) -> bool:
    """Whether the first decision of a retried rating left no slots held by it.

    A rating the limiter refused (or could not reach), or that was a duplicate ticket,
    holds no slots; a retry that was admitted now must give its slots back.
    """
    missed = {g.unavailable_reason for g in gates} | {Reason.DUPLICATE_TICKET}
    return any(r in missed or r.startswith("rate_limit.") for r in first.reasons)


def decision_actor(replay: bool) -> str:
    """The actor of a decision event: which clock judged it (see :data:`REPLAY_ACTOR`)."""
    return REPLAY_ACTOR if replay else HOOK_ACTOR


def _unavailable(gate: Gate, err: BackendUnavailable) -> Verdict:
    return Verdict(Status.HELD, (gate.unavailable_reason,), {"unavailable": f"{gate.name}: {err}"})


__all__ = ["IngestItem", "ValidationHook", "combine", "decision_actor"]
