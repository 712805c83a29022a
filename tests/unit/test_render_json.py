"""``integrity.render.dump_json`` writes the documents read commands return: dataclasses
(events, stored ratings) nested in mappings, with times, enums and tuples."""

from __future__ import annotations

import io
import json

import pytest
from factories import T0

from integrity.catalogue import Kind, Reason
from integrity.model import Event, Status
from integrity.render import dump_json


def test_a_document_with_events_is_written_as_plain_json() -> None:
    ev = Event(
        kind=Kind.HOLD, actor="detector", at=T0, rating_id=7, status=Status.HELD,
        reasons=(Reason.OUTLIER_BURST,), evidence={"score": 1.23456789, "also": ({"a": 1},)},
        event_id=3,
    )  # fmt: skip
    doc = {"events": [ev], "held_at": T0}
    with pytest.raises(TypeError, match="Event is not JSON serializable"):
        json.dumps(doc)  # what `review show --format json` used to do
    out = io.StringIO()
    dump_json(doc, out)
    back = json.loads(out.getvalue())
    assert back["held_at"] == T0.isoformat()
    [e] = back["events"]
    assert (e["kind"], e["status"], e["reasons"], e["event_id"]) == (
        "hold",
        "held",
        ["outlier.burst"],
        3,
    )
    assert e["evidence"] == {"score": 1.234568, "also": [{"a": 1}]} and e["at"] == T0.isoformat()
