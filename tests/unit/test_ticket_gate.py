"""Service records: parsing, files, the [tickets] table, and the ticket gate on a fake store."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from integrity.catalogue import Reason
from integrity.errors import BackendUnavailable, ConfigError, InvalidInput
from integrity.model import Rating, ServiceRecord, Status
from integrity.ports import GateContext, UnitOfWork, WaitingRating
from integrity.tickets import TicketPolicy, parse_record, read_lines
from rules.realtime import TicketGate

T = datetime(2026, 10, 15, 2, 0, tzinfo=UTC)
LIVE = GateContext(replay=False, rule_set_id="rs")
ON = TicketPolicy(require_known_ticket=True)


def record(ticket: str = "T1", window: str = "W1", staff: str | None = "S1") -> ServiceRecord:
    return ServiceRecord(ticket, window, staff, T)


def rating(ticket: str = "T1", window: str = "W1", staff: str | None = "S1") -> Rating:
    return Rating(
        ticket_id=ticket,
        window_id=window,
        staff_id=staff,
        service_type="general",
        channel="qr",
        served_at=T,
        submitted_at=T,
        submitted_at_given=True,
        received_at=T,
        scores={"overall": 5},
        composite=5.0,
        comment=None,
        ip_hash="i",
        prefix_hash="p",
        device_hash="d",
        fingerprint=ticket,
    )


class Store:
    """A TicketStore in memory that counts its queries."""

    def __init__(self, *records: ServiceRecord, down: bool = False) -> None:
        self.records = {r.ticket_id: r for r in records}
        self.queries = 0
        self.down = down

    def find(
        self, ticket_ids: Sequence[str], uow: UnitOfWork | None = None
    ) -> dict[str, ServiceRecord]:
        self.queries += 1
        if self.down:
            raise BackendUnavailable("database down")
        return {t: self.records[t] for t in ticket_ids if t in self.records}

    def add(self, uow: UnitOfWork, records: Sequence[ServiceRecord]) -> None:
        raise NotImplementedError

    def waiting(
        self, ticket_ids: Sequence[str] | None = None, uow: UnitOfWork | None = None
    ) -> list[WaitingRating]:
        raise NotImplementedError


def test_the_gate_off_looks_nothing_up() -> None:
    store = Store()
    gate = TicketGate(store, TicketPolicy())
    assert gate.check(rating(), LIVE) is None
    assert gate.check_many([rating(), rating("T2")], LIVE) == [None, None]
    assert store.queries == 0


def test_unknown_and_mismatched_tickets_are_held() -> None:
    store = Store(record("T1"), record("T2", staff=None))
    gate = TicketGate(store, ON)
    assert gate.check(rating("T1"), LIVE) is None
    unknown = gate.check(rating("T9"), LIVE)
    assert unknown is not None
    assert (unknown.status, unknown.reasons) == (Status.HELD, (Reason.UNKNOWN_TICKET,))
    assert unknown.evidence["ticket"] == {"known": False, "wait_hours": 72.0}
    window = gate.check(rating("T1", window="W2"), LIVE)
    assert window is not None and window.reasons == (Reason.TICKET_MISMATCH,)
    assert window.evidence["ticket"]["mismatch"] == {"window_id": {"recorded": "W1", "rated": "W2"}}
    staff = gate.check(rating("T1", staff="S2"), LIVE)
    assert staff is not None and set(staff.evidence["ticket"]["mismatch"]) == {"staff_id"}
    # staff is compared only when both name one
    assert gate.check(rating("T1", staff=None), LIVE) is None
    assert gate.check(rating("T2", staff="S7"), LIVE) is None


def test_one_query_per_chunk() -> None:
    store = Store(record("T1"))
    gate = TicketGate(store, ON)
    verdicts = gate.check_many([rating("T1"), rating("T2"), rating("T1", window="W3")], LIVE)
    assert store.queries == 1
    assert [v.reasons if v else () for v in verdicts] == [
        (),
        (Reason.UNKNOWN_TICKET,),
        (Reason.TICKET_MISMATCH,),
    ]


def test_a_store_that_does_not_answer_holds_as_unknown_and_never_raises() -> None:
    gate = TicketGate(Store(down=True), ON)
    verdict = gate.check(rating(), LIVE)
    assert verdict is not None and verdict.reasons == (Reason.UNKNOWN_TICKET,)
    assert "unavailable" in verdict.evidence
    assert gate.unavailable_reason == ""  # the limiter's slots are not its business


def test_policy_from_the_rule_set() -> None:
    assert TicketPolicy.from_section({}) == TicketPolicy(False, 72.0, 60.0)
    p = TicketPolicy.from_section({"require_known_ticket": True, "wait_hours": 24})
    assert p.require_known_ticket and p.wait.total_seconds() == 86400
    for bad in (
        {"require_known_ticket": "yes"},
        {"wait_hours": 0},
        {"wait_hours": True},
        {"settle_every_s": -1},
        {"wait_hour": 3},
    ):
        with pytest.raises(ConfigError):
            TicketPolicy.from_section(bad)


def test_parse_record_errors_name_the_fields() -> None:
    rec = parse_record(
        {"ticket_id": "T1", "window_id": "W1", "served_at": "2026-10-15T10:00:00+08:00"},
        client_id="cli",
        recorded_at=T,
    )
    assert rec == ServiceRecord("T1", "W1", None, T)
    assert rec.client_id == "cli" and rec.recorded_at == T
    with pytest.raises(InvalidInput) as err:
        parse_record(
            {"ticket_id": "", "window_id": "W1", "served_at": "2026-10-15 10:00", "x": 1},
            client_id="cli",
            recorded_at=T,
        )
    assert {e.field for e in err.value.errors} == {"ticket_id", "x"}
    with pytest.raises(InvalidInput) as err:
        parse_record(
            {"ticket_id": "T", "window_id": "W1", "served_at": "2026-10-15 10:00"},
            client_id="cli",
            recorded_at=T,
        )
    assert [e.field for e in err.value.errors] == ["served_at"]
    with pytest.raises(InvalidInput):
        parse_record(["T1"], client_id="cli", recorded_at=T)


def test_files_jsonl_and_csv() -> None:
    jsonl = io.StringIO(
        '\n{"ticket_id": "A", "window_id": "W1", "served_at": "2026-10-15T02:00:00Z"}\nnope\n'
    )
    lines = list(read_lines(jsonl))
    assert [(x.number, x.error is None) for x in lines] == [(2, True), (3, False)]
    text = (
        "ticket_id,window_id,staff_id,served_at\n"
        "A,W1,S1,2026-10-15T02:00:00Z\n"
        "\n"
        "B,W2,,2026-10-15T03:00:00Z\n"
        "C,W3\n"
    )
    rows = list(read_lines(io.StringIO(text)))
    assert [r.number for r in rows] == [2, 4, 5]
    assert rows[0].obj == {
        "ticket_id": "A",
        "window_id": "W1",
        "staff_id": "S1",
        "served_at": "2026-10-15T02:00:00Z",
    }
    assert "staff_id" not in rows[1].obj and rows[2].error
    with pytest.raises(InvalidInput) as err:
        list(read_lines(io.StringIO("ticket,window_id,served_at\nA,W1,x\n"), "csv"))
    assert "unknown column 'ticket'" in str(err.value) and "'ticket_id' is missing" in str(
        err.value
    )
