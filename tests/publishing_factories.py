"""A small month for the supervisor's pages and the public release: two halls with
Chinese names, three windows and a window the registry does not know, September and
October 2026, and every stage that excludes ratings (the hook, detection, an upheld
appeal, an audit finding), an audit sample with its estimates and appeals.

The clock stands at 2026-11-03 10:00 in Shanghai (the rule set's zone): the ratings of
the last days of October can still be appealed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from factories import rating

from appeals.service import AppealService
from audit_sampling import batches, findings
from audit_sampling.context import AuditContext
from audit_sampling.draw import draw_sample
from audit_sampling.frame import make_frame
from integrity.app import App
from integrity.catalogue import Kind
from integrity.model import DEFAULT_RUBRIC, Event, Status
from integrity.registry import RegistryService, parse_registry

NOW = datetime(2026, 11, 3, 2, 0, tzinfo=UTC)
HALLS = {"H1": "东城政务服务中心", "H2": "西城政务服务中心"}
WINDOWS = {"H1-W01": ("H1", "S1"), "H1-W02": ("H1", "S2"), "H2-W01": ("H2", "S3")}
SEED = "52061387942016785301"


def scores(value: int) -> dict[str, int]:
    return dict.fromkeys(DEFAULT_RUBRIC.dimensions, value)


@dataclass
class Month:
    """What :func:`build_month` made (rating ids by what happened to them)."""

    held: int
    rejected: int
    unknown: int
    appealed: int
    audited: int
    sample_id: int


def add(app: App, window: str, score: int, day: str, **kw: Any) -> int:
    at = f"{day}T10:00:00+08:00"
    staff = WINDOWS.get(window, ("", "S9"))[1]
    d = app.validate(
        rating(
            window_id=window,
            staff_id=staff,
            scores=scores(score),
            served_at=at,
            submitted_at=at,
            **kw,
        ),
        replay=True,
    )
    return d.rating_id


def build_month(app: App) -> Month:
    """Registry, people, ratings and every kind of exclusion (see the module docstring)."""
    people = app.people
    for pid, roles, unit, name in (
        ("boss", ["admin"], "HQ", "管理员"),
        ("sup", ["supervisor"], "H1", "主任"),
        ("head", ["head"], "H1", ""),
        ("rev1", ["reviewer"], "督查室", ""),
        ("rev2", ["reviewer"], "督查室", ""),
        ("aud1", ["auditor"], "Audit Co.", ""),
        ("S1", ["staff"], "H1", "李娜"),
        ("S2", ["staff"], "H1", "王伟"),
        ("S3", ["staff"], "H2", "张敏"),
    ):
        people.upsert(pid, roles=roles, at=NOW, name=name, unit=unit)
    doc = {
        "halls": [{"hall_id": h, "name": n, "supervisor": "sup"} for h, n in HALLS.items()],
        "windows": [
            {"window_id": w, "hall_id": h, "name": f"{HALLS[h]} {w[-1]} 号窗口", "head": "head"}
            for w, (h, _) in WINDOWS.items()
        ],
        "roster": [
            {"staff_id": s, "window_id": w, "from": "2026-01-01"} for w, (_, s) in WINDOWS.items()
        ],
    }
    app.get(RegistryService).load(parse_registry(doc), actor="operator")
    app.hook.reload()
    # September: the period before
    for window, score, n in (("H1-W01", 4, 5), ("H1-W02", 5, 5), ("H2-W01", 3, 3)):
        for _ in range(n):
            add(app, window, score, "2026-09-15")
    # October
    low_ids = []
    for i in range(8):
        add(app, "H1-W01", 5, f"2026-10-{i + 1:02d}")
    for i in range(4):
        low_ids.append(add(app, "H1-W01", 2, f"2026-10-{28 + i:02d}"))
    for i in range(10):
        add(app, "H1-W02", 4, f"2026-10-{i + 5:02d}")
    ids = [add(app, "H2-W01", 5, f"2026-10-{i + 10:02d}") for i in range(10)]
    held = add(app, "H2-W01", 5, "2026-10-20")
    _, version = app.ledger.current(held)
    app.ledger.append(
        Event(
            kind=Kind.HOLD,
            actor="detector",
            at=NOW,
            rating_id=held,
            status=Status.HELD,
            reasons=("outlier.burst",),
        ),
        version,
    )
    first = rating(
        window_id="H2-W01", staff_id="S3", scores=scores(5), served_at="2026-10-21T10:00:00+08:00"
    )
    app.validate(first, replay=True)
    dup = dict(first, device_id="another-device", ip="192.0.2.77")
    rejected = app.validate(dup, replay=True).rating_id
    assert app.ledger.current(rejected)[0] is Status.REJECTED
    unknown = add(app, "X9", 5, "2026-10-12")
    assert app.ledger.current(unknown)[0] is Status.HELD
    # appeals: one upheld, one not admitted (not a low score)
    svc = app.get(AppealService)
    appealed = low_ids[-1]
    filed = svc.file("S1", appealed, "abusive_or_unrelated", "not about the service")
    assert filed.admitted
    svc.file("S3", ids[-1], "abusive_or_unrelated", "I disagree")
    for reviewer in ("rev1", "rev2"):
        svc.assign("boss", filed.appeal.appeal_id, reviewer)
    for reviewer in ("rev1", "rev2"):
        svc.decide(
            reviewer,
            filed.appeal.appeal_id,
            uphold=True,
            reason="abusive words, unrelated to the service",
            used_automated_evidence=False,
        )
    assert app.ledger.current(appealed)[0] is Status.VOIDED
    # the audit: a frame of October, a sample, one fabricated finding
    ctx = app.get(AuditContext)
    frame = make_frame(ctx, "2026-10", "boss")
    sample = draw_sample(ctx, frame.frame.frame_id, SEED, "boss").sample
    b = batches.split(ctx, sample.sample_id, "boss", 50, ["aud1"])[0]
    items = [r["rating_id"] for r in batches.batch_rows(ctx, b.batch_id)]
    audited = items[0]
    findings.record(
        ctx,
        b.batch_id,
        "aud1",
        [("item 1", {"rating_id": str(audited), "code": "fabricated", "note": "called back"})]
        + [
            (f"item {i + 2}", {"rating_id": str(r), "code": "genuine", "note": ""})
            for i, r in enumerate(items[1:])
        ],
    )
    return Month(held, rejected, unknown, appealed, audited, sample.sample_id)
