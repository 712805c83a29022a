"""``integrity publish verify FOLDER``: check a public release with no database.

- **Checksums**: every file the manifest lists exists with its size and SHA-256 (a file
  it does not list is noted, not trusted);
- **Format**: ``release.json`` and the manifest are the formats this engine writes; the
  checkpoint is a well-formed ``integrity-ledger/v1 size=N root=HEX`` line, the same in
  both, and the period and publication time agree;
- **Counts add up**: per group, received = counted + held + rejected + voided, low scores
  within counted, the low-score rate is low scores / counted and lies in its interval,
  scores lie on the rubric's scale; the windows add up to the totals, each hall to its
  windows; the ratings not counted by stage add up to those not counted, and no reason
  counts more ratings than its stage; the audit's windows add up to its overall line,
  deviations within audited within sampled, bounds around the rate; appeals filed =
  admitted + ineligible, decided = upheld + rejected;
- **Ranks follow from scores** (:data:`~publishing.release.RANK_RULE`), overall and
  within each hall;
- **The CSV files** hold the same rows as ``release.json``.

That the ledger still extends the checkpoint is checked on the ledger itself:
``integrity ledger verify --checkpoint "<checkpoint>"``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from integrity import merkle
from publishing.release import (
    EXCLUDED_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    RELEASE_FILE,
    RELEASE_FORMAT,
    TIE,
    csv_columns,
    sha256_hex,
)

_EPS = 1e-9


@dataclass
class ReleaseCheck:
    """``ok`` when nothing failed; ``problems`` say where; ``notes`` what was checked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, msg: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(msg)


def competition_ranks(scores: Mapping[str, float]) -> dict[str, int]:
    """Rank 1 = highest; scores within :data:`TIE` share a rank, the next one skips."""
    ordered = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    ranks: dict[str, int] = {}
    prev: float | None = None
    rank = 0
    for i, (key, score) in enumerate(ordered, start=1):
        if prev is None or abs(prev - score) > TIE:
            rank = i
        ranks[key] = rank
        prev = score
    return ranks


def _load(path: Path, v: ReleaseCheck) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as err:
        v.fail(f"{path.name}: not readable JSON ({err})")
        return None


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=0, abs_tol=_EPS)


def verify_release(folder: Path) -> ReleaseCheck:
    """Check the release in ``folder`` (see the module docstring)."""
    v = ReleaseCheck()
    if not folder.is_dir():
        v.fail(f"{folder}: not a folder")
        return v
    man = _load(folder / MANIFEST_FILE, v)
    if not isinstance(man, Mapping):
        if man is not None:
            v.fail(f"{MANIFEST_FILE}: expected a JSON object")
        return v
    if man.get("format") != MANIFEST_FORMAT:
        v.fail(f"{MANIFEST_FILE}: format is {man.get('format')!r}, expected {MANIFEST_FORMAT!r}")
        return v
    listed: set[str] = set()
    for i, entry in enumerate(man.get("files") or []):
        name = str(entry.get("path", "")) if isinstance(entry, Mapping) else ""
        if not name or "/" in name or "\\" in name or name.startswith("."):
            v.fail(f"{MANIFEST_FILE}: files[{i}] has no plain file name")
            continue
        listed.add(name)
        path = folder / name
        if not path.is_file():
            v.fail(f"{name}: listed in the manifest but missing")
            continue
        data = path.read_bytes()
        if len(data) != entry.get("bytes"):
            v.fail(f"{name}: {len(data)} bytes, the manifest says {entry.get('bytes')}")
        if sha256_hex(data) != entry.get("sha256"):
            v.fail(
                f"{name}: SHA-256 {sha256_hex(data)} differs from the manifest's {entry.get('sha256')}"
            )
    v.notes.append(f"{len(listed)} file(s) match the manifest's sizes and SHA-256")
    extra = sorted(p.name for p in folder.iterdir() if p.name not in listed | {MANIFEST_FILE})
    if extra:
        v.notes.append(f"not in the manifest (not checked): {', '.join(extra)}")
    if RELEASE_FILE not in listed:
        v.fail(f"{MANIFEST_FILE}: does not list {RELEASE_FILE}")
        return v
    doc = _load(folder / RELEASE_FILE, v)
    if not isinstance(doc, Mapping):
        return v
    if doc.get("format") != RELEASE_FORMAT:
        v.fail(f"{RELEASE_FILE}: format is {doc.get('format')!r}, expected {RELEASE_FORMAT!r}")
        return v
    try:
        _check_document(doc, man, v)
        _check_csv(folder, doc, listed, v)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        v.fail(f"{RELEASE_FILE}: missing or malformed field: {err!r}")
    return v


def _check_document(doc: Mapping[str, Any], man: Mapping[str, Any], v: ReleaseCheck) -> None:
    try:
        size, _ = merkle.parse_checkpoint(str(doc["checkpoint"]))
        v.notes.append(f"stands on the ledger checkpoint of size {size}")
    except ValueError as err:
        v.fail(f"{RELEASE_FILE}: checkpoint: {err}")
    for name in ("checkpoint", "published_at"):
        if man.get(name) != doc.get(name):
            v.fail(f"{MANIFEST_FILE}: {name} {man.get(name)!r} differs from {RELEASE_FILE}'s")
    if man.get("period") != doc["period"]["label"]:
        v.fail(f"{MANIFEST_FILE}: period {man.get('period')!r} differs from {RELEASE_FILE}'s")
    try:
        datetime.fromisoformat(str(doc["published_at"]))
    except ValueError:
        v.fail(f"{RELEASE_FILE}: published_at {doc['published_at']!r} is not a time")
    lo, hi = (float(x) for x in doc["rubric"]["scale"])
    dims = list(doc["rubric"]["dimensions"])
    t = doc["totals"]
    if t["received"] != t["counted"] + t["held"] + t["rejected"] + t["voided"]:
        v.fail("totals: received is not counted + held + rejected + voided")
    if t["excluded"] != t["held"] + t["rejected"] + t["voided"]:
        v.fail("totals: excluded is not held + rejected + voided")
    stages = doc["excluded_by_stage"]
    if sum(stages.values()) != t["excluded"]:
        v.fail(f"excluded_by_stage adds up to {sum(stages.values())}, not {t['excluded']}")
    for r in doc["excluded_by_reason"]:
        if int(r["ratings"]) > int(stages.get(r["stage"], 0)):
            v.fail(
                f"excluded_by_reason: {r['stage']} {r['reason']} counts more ratings than its stage"
            )
    windows = doc["windows"]
    for field_name in ("received", "counted", "held", "rejected", "voided"):
        total = sum(int(w[field_name]) for w in windows)
        if total != t[field_name]:
            v.fail(f"windows: {field_name} adds up to {total}, the totals say {t[field_name]}")
    levels: list[tuple[str, str, Sequence[Mapping[str, Any]]]] = [("windows", "window_id", windows)]
    if doc.get("halls") is not None:
        levels.append(("halls", "hall_id", doc["halls"]))
        by_hall: dict[str, dict[str, int]] = {}
        for w in windows:
            if w.get("hall_id"):
                acc = by_hall.setdefault(w["hall_id"], {})
                for f in ("received", "counted", "held", "rejected", "voided", "low_scores"):
                    acc[f] = acc.get(f, 0) + int(w[f])
        for h in doc["halls"]:
            acc = by_hall.get(h["hall_id"], {})
            for f in ("received", "counted", "held", "rejected", "voided", "low_scores"):
                if acc.get(f, 0) != h[f]:
                    v.fail(
                        f"halls: {h['hall_id']} {f} is {h[f]}, its windows add up to {acc.get(f, 0)}"
                    )
    if doc.get("staff") is not None:
        if not doc.get("staff_names"):
            v.fail(f"{RELEASE_FILE}: names staff although staff_names is false")
        levels.append(("staff", "staff_id", doc["staff"]))
    for level, key, rows in levels:
        for r in rows:
            _check_row(level, str(r.get(key)), r, lo, hi, dims, v)
        _check_ranks(level, key, rows, v)
    _check_audit(doc.get("audit"), v)
    _check_appeals(doc.get("appeals"), v)
    v.notes.append(
        f"{len(windows)} window(s)"
        + (f", {len(doc['halls'])} hall(s)" if doc.get("halls") is not None else "")
        + (f", {len(doc['staff'])} staff" if doc.get("staff") is not None else "")
        + ": counts add up and ranks follow from scores"
    )


def _check_row(
    level: str,
    key: str,
    r: Mapping[str, Any],
    lo: float,
    hi: float,
    dims: Sequence[str],
    v: ReleaseCheck,
) -> None:
    where = f"{level}: {key}"
    c = int(r["counted"])
    if r["received"] != c + r["held"] + r["rejected"] + r["voided"]:
        v.fail(f"{where}: received is not counted + held + rejected + voided")
    if not 0 <= r["low_scores"] <= c:
        v.fail(f"{where}: low_scores outside 0..counted")
    if c == 0:
        if r["score"] is not None or r["rank"] is not None or r["low_score_rate"] is not None:
            v.fail(f"{where}: nothing counted but a score, rank or rate is given")
        return
    if r["score"] is None or not lo - _EPS <= float(r["score"]) <= hi + _EPS:
        v.fail(f"{where}: score {r['score']!r} is not on the rubric's scale {lo:g}-{hi:g}")
    for d in dims:
        m = (r.get("dimensions") or {}).get(d)
        if m is not None and not lo - _EPS <= float(m) <= hi + _EPS:
            v.fail(f"{where}: {d} mean {m!r} is not on the rubric's scale")
    if not _close(r["low_score_rate"], r["low_scores"] / c):
        v.fail(f"{where}: low_score_rate is not low_scores / counted")
    rate, a, b = r["low_score_rate"], r["low_rate_lo"], r["low_rate_hi"]
    if a is None or b is None or not 0 <= a <= rate + _EPS <= b + 2 * _EPS <= 1 + 3 * _EPS:
        v.fail(f"{where}: the low-score rate's interval [{a}, {b}] does not hold {rate}")


def _check_ranks(level: str, key: str, rows: Sequence[Mapping[str, Any]], v: ReleaseCheck) -> None:
    scored = {
        str(r[key]): float(r["score"])
        for r in rows
        if r.get(key) is not None and r["score"] is not None
    }
    expected = competition_ranks(scored)
    for r in rows:
        k = r.get(key)
        want = expected.get(str(k)) if k is not None else None
        if r["rank"] != want:
            v.fail(f"{level}: {k} has rank {r['rank']}, its score ranks {want}")
    if level == "halls" or not any(r.get("hall_rank") is not None for r in rows):
        return
    halls: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("hall_id") and r.get(key) is not None and r["score"] is not None:
            halls.setdefault(r["hall_id"], {})[str(r[key])] = float(r["score"])
    within = {k: n for scores in halls.values() for k, n in competition_ranks(scores).items()}
    for r in rows:
        want = within.get(str(r.get(key)))
        if r.get("hall_rank") != want:
            v.fail(
                f"{level}: {r.get(key)} has hall_rank {r.get('hall_rank')}, its score ranks {want} in its hall"
            )


def _check_audit(a: Any, v: ReleaseCheck) -> None:
    if a is None:
        v.notes.append("no audit sample in this release")
        return
    o = a["overall"]
    strata = a["strata"]

    def bounded(where: str, s: Mapping[str, Any]) -> None:
        if not s["deviations"] <= s["audited"] <= s["sampled"] or s["pending"] > s["sampled"]:
            v.fail(f"audit {where}: deviations <= audited <= sampled does not hold")
        rate, low, up = s.get("rate"), s.get("lower"), s.get("upper")
        if rate is not None and (
            low is None
            or up is None
            or not (0 <= low <= rate + _EPS <= up + 2 * _EPS <= 1 + 3 * _EPS)
        ):
            v.fail(f"audit {where}: bounds [{low}, {up}] do not hold the rate {rate}")

    bounded("(all)", o)
    for s in strata:
        bounded(str(s["window_id"]), s)
    for f in ("sampled", "audited", "deviations", "population"):
        total = sum(int(s[f]) for s in strata)
        if strata and total != o[f]:
            v.fail(f"audit: windows' {f} add up to {total}, the overall line says {o[f]}")
    try:
        merkle.parse_checkpoint(str(a["checkpoint"]))
    except ValueError as err:
        v.fail(f"audit: frame checkpoint: {err}")
    v.notes.append(
        f"audit sample {a['sample_id']}: {o['audited']} of {o['sampled']} audited, bounds hold"
    )


def _check_appeals(a: Any, v: ReleaseCheck) -> None:
    if a is None:
        return
    if a["filed"] != a["admitted"] + a["ineligible"]:
        v.fail("appeals: filed is not admitted + ineligible")
    if a["decided"] != a["upheld"] + a["rejected"]:
        v.fail("appeals: decided is not upheld + rejected")
    if a["open"] + a["decided"] + a["withdrawn"] > a["admitted"]:
        v.fail("appeals: open + decided + withdrawn is more than admitted")
    if a["decided"] and not _close(a["uphold_rate"], a["upheld"] / a["decided"]):
        v.fail("appeals: uphold_rate is not upheld / decided")


def _check_csv(folder: Path, doc: Mapping[str, Any], listed: set[str], v: ReleaseCheck) -> None:
    dims = list(doc["rubric"]["dimensions"])
    for name, rows in (
        ("windows.csv", doc["windows"]),
        ("halls.csv", doc.get("halls")),
        ("staff.csv", doc.get("staff")),
    ):
        if rows is None:
            if name in listed:
                v.fail(f"{name}: present but {RELEASE_FILE} has no such ranking")
            continue
        if name not in listed:
            v.fail(f"{name}: missing from the manifest")
            continue
        if not (folder / name).is_file():
            continue  # reported with the checksums
        got = list(csv.reader(io.StringIO((folder / name).read_text("utf-8"))))
        cols = csv_columns(rows, dims)
        if not got or got[0] != cols:
            v.fail(f"{name}: header differs from {cols}")
            continue
        if len(got) - 1 != len(rows):
            v.fail(f"{name}: {len(got) - 1} rows, {RELEASE_FILE} has {len(rows)}")
            continue
        for i, (line, r) in enumerate(zip(got[1:], rows, strict=True), start=2):
            for c, text in zip(cols, line, strict=True):
                want = (r.get("dimensions") or {}).get(c) if c in dims else r.get(c)
                if not _same(text, want):
                    v.fail(f"{name}: line {i} {c} is {text!r}, {RELEASE_FILE} says {want!r}")
    if EXCLUDED_FILE in listed and (folder / EXCLUDED_FILE).is_file():
        got = list(csv.reader(io.StringIO((folder / EXCLUDED_FILE).read_text("utf-8"))))
        want = [["stage", "reason", "ratings"]] + [
            [r["stage"], r["reason"], str(r["ratings"])] for r in doc["excluded_by_reason"]
        ]
        if got != want:
            v.fail(f"{EXCLUDED_FILE}: differs from {RELEASE_FILE}'s excluded_by_reason")


def _same(text: str, value: Any) -> bool:
    if value is None:
        return text == ""
    if isinstance(value, bool):
        return text == ("true" if value else "false")
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return text == str(value)
