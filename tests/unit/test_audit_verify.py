"""``audit verify`` without a database: a published bundle re-derives, and every kind of
tampering fails and says where."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audit_sampling import sampler
from audit_sampling.formats import (
    FrameHeader,
    FrameReader,
    FrameWriter,
    bundle_document,
    load_bundle,
)
from audit_sampling.verify import verify_bundle

SEED = "80714259113406219878"
WINDOWS = {"H1-W01": 60, "H1-W02": 25, "H2-W01": 4}


def build(folder: Path, seed: str = SEED, risk_extra: int = 2) -> dict[str, Any]:
    """Write frame.csv and sample.json the way `integrity audit publish` does."""
    rows = []
    rid = 100
    for w, n in WINDOWS.items():
        for k in range(n):
            rid += 3
            rows.append((rid, w, 0.9 if k % 11 == 0 else 0.0))
    rows.sort()
    header = FrameHeader(
        period="2026-10",
        timezone="Asia/Shanghai",
        start="2026-09-30T16:00:00+00:00",
        end="2026-10-31T16:00:00+00:00",
        checkpoint="integrity-ledger/v1 size=300 root=" + "cd" * 32,
        strata=WINDOWS,
    )
    parts: list[bytes] = []
    w = FrameWriter(header, parts.append)
    w.write(rows)
    digest = w.close()
    data = b"".join(parts)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "frame.csv").write_bytes(data)
    takes = sampler.plan(WINDOWS, "0.1", 5)
    d = sampler.draw(FrameReader([data]), seed, takes, risk_take=risk_extra)
    t = d.tickets()
    items = []
    for win, ids in d.uniform.items():
        for rank, i in enumerate(ids, 1):
            items.append(_item(i, win, t.number(i), rank=rank))
    for rank, i in enumerate(d.risk, 1):
        items.append(_item(i, d.risk_info[i][0], t.number(i), risk_rank=rank))
    manifest = {
        "format": "integrity-audit-sample/v1",
        "algorithm": sampler.ALGORITHM,
        "sample_id": 1,
        "seed": seed,
        "frame": {
            "sha256": digest.sha256,
            "period": "2026-10",
            "checkpoint": header.checkpoint,
            "ratings": digest.ratings,
            "file": "frame.csv",
        },
        "rate": "0.1",
        "min_per_stratum": 5,
        "strata": [
            {
                "window_id": win,
                "population": n,
                "base_take": takes[win],
                "take": takes[win],
                "history": [{"take": takes[win], "why": "draw"}],
            }
            for win, n in WINDOWS.items()
        ],
        "risk": {
            "extra": risk_extra,
            "min": 0.0,
            "take": len(d.risk),
            "history": [{"take": len(d.risk), "why": "draw"}],
        },
        "items": items,
    }
    save(folder, manifest)
    return manifest


def _item(
    rid: int, win: str, ticket: str, rank: int | None = None, risk_rank: int | None = None
) -> dict[str, Any]:
    return {
        "rating_id": rid,
        "window_id": win,
        "rank": rank,
        "risk_rank": risk_rank,
        "ticket": ticket,
        "added": "draw",
        "replaced": False,
    }


def save(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "sample.json").write_text(json.dumps(manifest, indent=2))


def problems(folder: Path) -> list[str]:
    v = verify_bundle(load_bundle(folder))
    return v.problems


def uniform(manifest: dict[str, Any], window: str) -> list[dict[str, Any]]:
    return sorted(
        (i for i in manifest["items"] if i["window_id"] == window and i["rank"] is not None),
        key=lambda i: i["rank"],
    )


def full_order(folder: Path, window: str, seed: str = SEED) -> list[int]:
    reader = FrameReader([(folder / "frame.csv").read_bytes()])
    return sampler.draw(reader, seed, {window: WINDOWS[window]}).uniform[window]


def test_an_honest_bundle_verifies(tmp_path: Path) -> None:
    m = build(tmp_path)
    v = verify_bundle(load_bundle(tmp_path))
    assert v.ok, v.problems
    assert v.items == len(m["items"]) == 6 + 5 + 4 + 2
    assert v.windows == 3
    assert v.frame_sha256 == m["frame"]["sha256"]
    assert verify_bundle(load_bundle(tmp_path), workers=2).ok


def test_a_single_json_bundle_verifies_and_fails_alike(tmp_path: Path) -> None:
    m = build(tmp_path / "b")
    text = (tmp_path / "b" / "frame.csv").read_text()
    one = tmp_path / "bundle.json"
    one.write_text(json.dumps(bundle_document(text, m)))
    assert verify_bundle(load_bundle(one)).ok
    one.write_text(json.dumps(bundle_document(text.replace("H2-W01", "H2-W02", 1), m)))
    assert not verify_bundle(load_bundle(one)).ok


def _edit_frame(old: str, new: str) -> Callable[[Path, dict[str, Any]], None]:
    def edit(folder: Path, m: dict[str, Any]) -> None:
        p = folder / "frame.csv"
        text = p.read_text()
        assert old in text
        p.write_text(text.replace(old, new, 1))

    return edit


def _swap_item(folder: Path, m: dict[str, Any]) -> None:
    order = full_order(folder, "H1-W01")
    third = uniform(m, "H1-W01")[2]
    third["rating_id"] = order[-1]  # a rating the seed puts last
    save(folder, m)


def _swap_ranks(folder: Path, m: dict[str, Any]) -> None:
    a, b = uniform(m, "H1-W02")[:2]
    a["rank"], b["rank"] = b["rank"], a["rank"]
    save(folder, m)


def _change_seed(folder: Path, m: dict[str, Any]) -> None:
    m["seed"] = "80714259113406219879"
    save(folder, m)


def _wrong_frame_hash(folder: Path, m: dict[str, Any]) -> None:
    m["frame"]["sha256"] = "0" * 64
    save(folder, m)


def _shrink(folder: Path, m: dict[str, Any]) -> None:
    last = uniform(m, "H1-W01")[-1]
    m["items"].remove(last)
    s = next(s for s in m["strata"] if s["window_id"] == "H1-W01")
    s["take"] -= 1
    s["history"][0]["take"] -= 1
    save(folder, m)


def _inflate(folder: Path, m: dict[str, Any]) -> None:
    s = next(s for s in m["strata"] if s["window_id"] == "H1-W01")
    s["take"] += 1
    nxt = full_order(folder, "H1-W01")[s["take"] - 1]
    m["items"].append(_item(nxt, "H1-W01", sampler.ticket_number(SEED, nxt), rank=s["take"]))
    save(folder, m)


def _fake_replacement(folder: Path, m: dict[str, Any]) -> None:
    s = next(s for s in m["strata"] if s["window_id"] == "H1-W01")
    s["take"] += 1
    s["history"].append({"take": s["take"], "why": "replacement", "replaces": 12345})
    nxt = full_order(folder, "H1-W01")[s["take"] - 1]
    m["items"].append(_item(nxt, "H1-W01", sampler.ticket_number(SEED, nxt), rank=s["take"]))
    save(folder, m)


def _change_rate(folder: Path, m: dict[str, Any]) -> None:
    m["rate"] = "0.05"
    save(folder, m)


def _edit_ticket(folder: Path, m: dict[str, Any]) -> None:
    m["items"][0]["ticket"] = "0.000000001"
    save(folder, m)


def _swap_risk(folder: Path, m: dict[str, Any]) -> None:
    item = next(i for i in m["items"] if i["risk_rank"] == 1)
    other = next(
        r for r in full_order(folder, "H1-W02") if r not in {i["rating_id"] for i in m["items"]}
    )
    item.update(rating_id=other, window_id="H1-W02", ticket=sampler.ticket_number(SEED, other))
    save(folder, m)


def _backdate(folder: Path, m: dict[str, Any]) -> None:
    m["frame"]["created_at"] = "2026-11-02T10:00:00+00:00"
    m["drawn_at"] = "2026-11-01T10:00:00+00:00"
    save(folder, m)


def _drop_window(folder: Path, m: dict[str, Any]) -> None:
    m["strata"] = [s for s in m["strata"] if s["window_id"] != "H2-W01"]
    m["items"] = [i for i in m["items"] if i["window_id"] != "H2-W01"]
    save(folder, m)


TAMPERING = {
    "frame row moved to another window": (
        _edit_frame(",H1-W02,", ",H1-W01,"),
        "frame.csv: window 'H1-W01' has 61 rows but the header says 60",
    ),
    "frame risk edited": (_edit_frame("0.900000", "0.100000"), "frame.csv: SHA-256 is"),
    "frame row deleted": (_edit_frame("\n1", "\n"), "frame.csv"),
    "item swapped": (_swap_item, "window 'H1-W01' rank 3: the manifest has rating"),
    "ranks swapped": (_swap_ranks, "window 'H1-W02' rank 1: the manifest has rating"),
    "seed changed": (_change_seed, "was the seed changed?"),
    "manifest frame hash wrong": (_wrong_frame_hash, "but the manifest says " + "0" * 64),
    "take shrunk": (_shrink, "window 'H1-W01': take 5 is outside 6..60"),
    "take inflated without a reason": (_inflate, "the history ends at 6 but the take is 7"),
    "replacement of no not-applicable item": (_fake_replacement, "replaces rating 12345"),
    "rate changed": (_change_rate, "base take 6 but rate and minimum give 5"),
    "ticket edited": (_edit_ticket, "items[0]: rating"),
    "risk item swapped": (_swap_risk, "risk stratum rank 1"),
    "window dropped": (_drop_window, "window 'H2-W01' of the frame has no stratum"),
    "drawn before the frame existed": (_backdate, "before its frame was committed"),
}


@pytest.mark.parametrize("case", list(TAMPERING), ids=list(TAMPERING))
def test_tampering_fails_and_says_where(tmp_path: Path, case: str) -> None:
    m = build(tmp_path)
    tamper, where = TAMPERING[case]
    tamper(tmp_path, copy.deepcopy(m) if tamper.__name__.startswith("_edit") else m)
    found = problems(tmp_path)
    assert found, case
    assert any(where in p for p in found), found


def test_a_legitimate_expansion_and_replacement_verify(tmp_path: Path) -> None:
    m = build(tmp_path)
    order = full_order(tmp_path, "H1-W01")
    s = next(s for s in m["strata"] if s["window_id"] == "H1-W01")
    first = uniform(m, "H1-W01")[0]
    first["replaced"] = True
    s["history"].append({"take": 7, "why": "replacement", "replaces": first["rating_id"]})
    s["history"].append({"take": 12, "why": "expansion"})
    s["take"] = 12
    have = {i["rating_id"] for i in m["items"]}
    for rank in range(7, 13):
        rid = order[rank - 1]
        if rid in have:  # already sampled for risk: it gains a rank
            item = next(i for i in m["items"] if i["rating_id"] == rid)
            item["rank"] = rank
        else:
            m["items"].append(_item(rid, "H1-W01", sampler.ticket_number(SEED, rid), rank=rank))
    save(tmp_path, m)
    assert problems(tmp_path) == []


def _pull(folder: Path, m: dict[str, Any]) -> dict[str, Any]:
    rows = [i for i in m["items"] if i["window_id"] == "H1-W02"]
    data = "".join(json.dumps({"rating_id": i["rating_id"]}) + "\n" for i in rows).encode()
    (folder / "batch-1.jsonl").write_bytes(data)
    pm = {
        "format": "integrity-audit-pull/v1",
        "seed": m["seed"],
        "algorithm": m["algorithm"],
        "frame_sha256": m["frame"]["sha256"],
        "checkpoint": m["frame"]["checkpoint"],
        "rate": m["rate"],
        "items": [
            {k: i[k] for k in ("rating_id", "window_id", "rank", "risk_rank", "ticket")}
            for i in rows
        ],
        "file": {
            "name": "batch-1.jsonl",
            "format": "jsonl",
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    }
    (folder / "batch-1.jsonl.manifest.json").write_text(json.dumps(pm))
    return pm


def test_pull_manifests_and_their_files_are_checked(tmp_path: Path) -> None:
    m = build(tmp_path)
    pm = _pull(tmp_path, m)
    v = verify_bundle(load_bundle(tmp_path))
    assert v.ok, v.problems
    assert any("batch-1.jsonl" in n and "matches" in n for n in v.notes)

    (tmp_path / "batch-1.jsonl").write_bytes(b'{"rating_id": 1}\n')
    assert any("export file 'batch-1.jsonl' has SHA-256" in p for p in problems(tmp_path))

    _pull(tmp_path, m)
    pm["seed"] = "something else entirely"
    pm["items"][0]["rating_id"] = 999999
    (tmp_path / "batch-1.jsonl.manifest.json").write_text(json.dumps(pm))
    found = problems(tmp_path)
    assert any("seed is 'something else entirely'" in p for p in found), found
    assert any("rating 999999 is not in the sample" in p for p in found), found


def test_an_unreadable_bundle_says_why(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no sample\.json"):
        load_bundle(tmp_path)
    build(tmp_path)
    (tmp_path / "frame.csv").unlink()
    with pytest.raises(ValueError, match=r"frame file frame\.csv is missing"):
        load_bundle(tmp_path)
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a integrity-audit-bundle/v1"):
        load_bundle(bad)
