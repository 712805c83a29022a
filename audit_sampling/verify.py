"""``audit verify``: anyone re-derives a sample from the published frame, seed and manifest.

A bundle (:mod:`audit_sampling.formats`) is a folder (``sample.json``, the frame file
it names, and optionally pull manifests ``*.manifest.json`` with their export files)
or one JSON document holding the same.

The re-derivation needs no database: the frame's bytes must hash to the SHA-256 the
manifest names; every window's take must follow from the rate and minimum (and its
recorded expansions and replacements); every item must be exactly the seed's next
item in its window's ticket order (or the risk order), with the same ticket number.
Pull manifests must agree with the sample and their files with their SHA-256. With
a ledger, the frame must also stand on its checkpoint: the ledger verifies against
the checkpoint and yields exactly the frame's population at that log size.
Every problem says where it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from itertools import zip_longest
from pathlib import Path
from typing import Any

from audit_sampling import sampler
from audit_sampling.context import AuditContext
from audit_sampling.formats import (
    PULL_FORMAT,
    SAMPLE_FORMAT,
    Bundle,
    FrameError,
    FrameReader,
    PullDoc,
    export_ids,
    load_bundle,
)
from audit_sampling.parallel import draw_frame
from integrity import merkle
from integrity.errors import EngineError
from integrity.log import MerkleLog


@dataclass
class Verification:
    """``ok`` when nothing failed; ``problems`` say where; ``notes`` what was checked."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    items: int = 0
    windows: int = 0
    frame_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, msg: str) -> None:
        if len(self.problems) < 200:
            self.problems.append(msg)


# -- re-derivation -------------------------------------------------------------------------


def verify_bundle(bundle: Bundle, workers: int = 1) -> Verification:
    """Re-derive the sample from the bundle alone (no database); ``workers`` processes."""
    v = Verification()
    m = bundle.sample
    if m.get("format") != SAMPLE_FORMAT:
        v.fail(f"sample.json: format is {m.get('format')!r}, expected {SAMPLE_FORMAT!r}")
        return v
    if m.get("algorithm") != sampler.ALGORITHM:
        v.fail(f"sample.json: algorithm {m.get('algorithm')!r} is not {sampler.ALGORITHM!r}")
        return v
    try:
        seed = str(m["seed"])
        rate = sampler.as_rate(str(m["rate"]))
        minimum = int(m["min_per_stratum"])
        frame_meta = dict(m["frame"])
        strata_doc = {str(s["window_id"]): dict(s) for s in m["strata"]}
        risk_doc = dict(m.get("risk") or {})
        items = [dict(i) for i in m["items"]]
    except (KeyError, TypeError, ValueError) as err:
        v.fail(f"sample.json: missing or malformed field: {err}")
        return v

    try:
        reader = FrameReader(bundle.frame())
    except FrameError as err:
        v.fail(f"{bundle.frame_name}: {err}")
        return v
    header = reader.header
    if header.checkpoint != frame_meta.get("checkpoint"):
        v.fail(
            f"{bundle.frame_name}: stands on {header.checkpoint!r} but the manifest says "
            f"{frame_meta.get('checkpoint')!r}"
        )
    if header.period != frame_meta.get("period"):
        v.fail(
            f"{bundle.frame_name}: period {header.period!r}, manifest {frame_meta.get('period')!r}"
        )
    base = sampler.plan(header.strata, rate, minimum)
    takes = dict(base)
    for w in sorted(set(strata_doc) | set(header.strata)):
        doc = strata_doc.get(w)
        if doc is None:
            v.fail(f"sample.json: window {w!r} of the frame has no stratum in the manifest")
            continue
        if w not in header.strata:
            v.fail(f"sample.json: stratum {w!r} is not a window of the frame")
            continue
        takes[w] = max(base[w], _check_stratum(v, w, doc, header.strata[w], base[w], items))
    risk_take = int(risk_doc.get("take") or 0)
    risk_min = float(risk_doc.get("min") or 0.0)
    _check_risk_history(v, risk_doc, items)
    try:
        opened = [reader]  # the reader already open, then fresh ones if a redraw is needed

        def open_reader() -> FrameReader:
            return opened.pop() if opened else FrameReader(bundle.frame())

        derived, digest = draw_frame(
            open_reader,
            seed,
            takes,
            risk_take=risk_take,
            risk_min=risk_min,
            risk_base=base,
            workers=workers,
        )
    except FrameError as err:
        v.fail(f"{bundle.frame_name}: {err}")
        return v
    except ValueError as err:
        v.fail(f"{bundle.frame_name}: {err}")
        return v
    v.frame_sha256 = digest.sha256
    if digest.sha256 != frame_meta.get("sha256"):
        v.fail(
            f"{bundle.frame_name}: SHA-256 is {digest.sha256} but the manifest says "
            f"{frame_meta.get('sha256')}: this is not the frame that was drawn"
        )
    v.notes.append(
        f"frame {digest.sha256[:16]}…: {digest.ratings} ratings in {len(header.strata)} windows, "
        f"stands on {header.checkpoint}"
    )
    _check_times(v, m, frame_meta)
    _compare_items(v, items, derived, takes, risk_take)
    v.items = len(items)
    v.windows = len(header.strata)
    for p in bundle.pulls:
        _check_pull(v, p, m, items)
    return v


def _check_times(v: Verification, m: Mapping[str, Any], frame_meta: Mapping[str, Any]) -> None:
    """The frame must have been committed before the draw (the seed came in between)."""
    made, drawn = frame_meta.get("created_at"), m.get("drawn_at")
    if not made or not drawn:
        return
    try:
        if datetime.fromisoformat(str(drawn)) < datetime.fromisoformat(str(made)):
            v.fail(f"sample.json: drawn at {drawn}, before its frame was committed ({made})")
            return
    except ValueError:
        v.fail("sample.json: drawn_at or frame.created_at is not an ISO 8601 time")
        return
    v.notes.append(
        f"frame committed {made}, sample drawn {drawn}: the seed must have been made public "
        "in between (see the seed note)"
    )


def _check_stratum(
    v: Verification,
    w: str,
    doc: Mapping[str, Any],
    population: int,
    base: int,
    items: list[dict[str, Any]],
) -> int:
    """Check a stratum's take and history; return its take."""
    where = f"sample.json: window {w!r}"
    try:
        take = int(doc["take"])
        history = list(doc.get("history") or [])
    except (KeyError, TypeError, ValueError) as err:
        v.fail(f"{where}: malformed ({err})")
        return base
    if int(doc.get("population", -1)) != population:
        v.fail(f"{where}: population {doc.get('population')} but the frame has {population}")
    if int(doc.get("base_take", -1)) != base:
        v.fail(
            f"{where}: base take {doc.get('base_take')} but rate and minimum give {base} "
            f"of {population}"
        )
    if take < base or take > population:
        v.fail(f"{where}: take {take} is outside {base}..{population}")
    if not history or int(history[0].get("take", -1)) != base or history[0].get("why") != "draw":
        v.fail(f"{where}: the history must start with the draw of {base}")
    prev = base
    replaced = {i["rating_id"] for i in items if i.get("window_id") == w and i.get("replaced")}
    for n, step in enumerate(history[1:], 2):
        k, why = int(step.get("take", -1)), step.get("why")
        if why == "replacement":
            if k != prev + 1:
                v.fail(
                    f"{where}: history step {n} replaces one item but moves the take {prev} -> {k}"
                )
            if step.get("replaces") not in replaced:
                v.fail(
                    f"{where}: history step {n} replaces rating {step.get('replaces')}, "
                    "which is not a not-applicable item of this window"
                )
        elif why == "expansion":
            if k <= prev:
                v.fail(
                    f"{where}: history step {n} is an expansion that does not grow ({prev} -> {k})"
                )
        else:
            v.fail(f"{where}: history step {n} has an unknown reason {why!r}")
        prev = k
    if history and prev != take:
        v.fail(f"{where}: the history ends at {prev} but the take is {take}")
    return min(max(take, 0), population)


def _check_risk_history(
    v: Verification, doc: Mapping[str, Any], items: list[dict[str, Any]]
) -> None:
    history = list(doc.get("history") or [])
    take = int(doc.get("take") or 0)
    extra = int(doc.get("extra") or 0)
    if not history:
        if take:
            v.fail("sample.json: risk stratum has a take but no history")
        return
    if history[0].get("why") != "draw" or int(history[0].get("take", -1)) > extra:
        v.fail(f"sample.json: risk stratum must start with a draw of at most {extra}")
    replaced = {
        i["rating_id"] for i in items if i.get("risk_rank") is not None and i.get("replaced")
    }
    prev = int(history[0].get("take", 0))
    for n, step in enumerate(history[1:], 2):
        k = int(step.get("take", -1))
        if step.get("why") != "replacement" or k <= prev or step.get("replaces") not in replaced:
            v.fail(f"sample.json: risk stratum history step {n} is not a valid replacement")
        prev = k
    if prev != take:
        v.fail(f"sample.json: risk stratum history ends at {prev} but the take is {take}")


def _compare_items(
    v: Verification,
    items: list[dict[str, Any]],
    derived: sampler.Draw,
    takes: Mapping[str, int],
    risk_take: int,
) -> None:
    tickets = derived.tickets()
    seen: set[int] = set()
    by_window: dict[str, dict[int, dict[str, Any]]] = {}
    by_risk: dict[int, dict[str, Any]] = {}
    for i, item in enumerate(items):
        where = f"sample.json: items[{i}]"
        try:
            rid = int(item["rating_id"])
        except (KeyError, TypeError, ValueError):
            v.fail(f"{where}: no rating id")
            continue
        if rid in seen:
            v.fail(f"{where}: rating {rid} appears twice")
        seen.add(rid)
        if item.get("rank") is None and item.get("risk_rank") is None:
            v.fail(f"{where}: rating {rid} has neither a rank nor a risk rank")
        if item.get("rank") is not None:
            by_window.setdefault(str(item.get("window_id")), {})[int(item["rank"])] = item
        if item.get("risk_rank") is not None:
            by_risk[int(item["risk_rank"])] = item
        if item.get("ticket") != tickets.number(rid):
            v.fail(
                f"{where}: rating {rid} has ticket {str(item.get('ticket'))[:20]}… but the seed "
                f"gives {tickets.number(rid)[:20]}…"
            )
    mismatched = total = 0
    for w in sorted(set(takes) | set(by_window)):
        want = derived.uniform.get(w, [])[: takes.get(w, 0)]
        have = by_window.get(w, {})
        for rank in range(1, max(len(want), max(have, default=0)) + 1):
            got = have.get(rank)
            exp = want[rank - 1] if rank <= len(want) else None
            total += 1
            if got is None:
                v.fail(
                    f"window {w!r} rank {rank}: missing from the manifest (the seed gives rating {exp})"
                )
                mismatched += 1
            elif exp is None:
                v.fail(
                    f"window {w!r} rank {rank}: rating {got['rating_id']} is beyond the window's take"
                )
                mismatched += 1
            elif int(got["rating_id"]) != exp:
                v.fail(
                    f"window {w!r} rank {rank}: the manifest has rating {got['rating_id']}, "
                    f"the seed gives rating {exp} (item swapped?)"
                )
                mismatched += 1
    want_risk = derived.risk[:risk_take]
    for rank in range(1, max(len(want_risk), max(by_risk, default=0)) + 1):
        got = by_risk.get(rank)
        exp = want_risk[rank - 1] if rank <= len(want_risk) else None
        total += 1
        if got is None or exp is None or int(got["rating_id"]) != exp:
            v.fail(
                f"risk stratum rank {rank}: the manifest has rating "
                f"{got['rating_id'] if got else None}, the frame's risk order gives {exp}"
            )
            mismatched += 1
        elif got.get("window_id") != derived.risk_info[exp][0]:
            v.fail(
                f"risk stratum rank {rank}: rating {exp} is in window {derived.risk_info[exp][0]!r}"
            )
    if total and mismatched * 2 > total:
        v.fail(
            f"{mismatched} of {total} sample positions differ: the sample does not follow from "
            "this seed and frame (was the seed changed?)"
        )
    v.notes.append(
        f"re-derived {sum(min(takes.get(w, 0), len(derived.uniform.get(w, []))) for w in takes)} "
        f"uniform and {len(want_risk)} risk item(s) from the seed"
    )


def _check_pull(
    v: Verification, p: PullDoc, sample: Mapping[str, Any], items: list[dict[str, Any]]
) -> None:
    m = p.manifest
    where = p.name
    if m.get("format") != PULL_FORMAT:
        v.fail(f"{where}: not a {PULL_FORMAT} manifest")
        return
    for key, mine in (
        ("seed", sample.get("seed")),
        ("algorithm", sample.get("algorithm")),
        ("frame_sha256", (sample.get("frame") or {}).get("sha256")),
        ("checkpoint", (sample.get("frame") or {}).get("checkpoint")),
        ("rate", sample.get("rate")),
    ):
        if m.get(key) != mine:
            v.fail(f"{where}: {key} is {m.get(key)!r} but the sample says {mine!r}")
    known = {int(i["rating_id"]): i for i in items if "rating_id" in i}
    for n, it in enumerate(m.get("items") or []):
        rid = it.get("rating_id")
        ref = known.get(int(rid)) if isinstance(rid, int) else None
        if ref is None:
            v.fail(f"{where}: items[{n}]: rating {rid} is not in the sample")
            continue
        for key in ("window_id", "rank", "risk_rank", "ticket"):
            if it.get(key) != ref.get(key):
                v.fail(
                    f"{where}: items[{n}]: rating {rid} has {key} {it.get(key)!r}, the sample {ref.get(key)!r}"
                )
    file = m.get("file") or {}
    if p.data is None:
        v.notes.append(
            f"{where}: export file {file.get('name')!r} not in the bundle; its hash was not checked"
        )
        return
    digest = hashlib.sha256(p.data).hexdigest()
    if digest != file.get("sha256"):
        v.fail(
            f"{where}: export file {file.get('name')!r} has SHA-256 {digest}, the manifest says {file.get('sha256')}"
        )
        return
    ids = export_ids(p.data, str(file.get("format")))
    listed = [it.get("rating_id") for it in m.get("items") or []]
    if ids is not None and ids != listed:
        v.fail(f"{where}: the export file's rating ids differ from the manifest's items")
    v.notes.append(f"{where}: export {file.get('name')!r} matches its SHA-256 and the sample")


# -- the ledger side (needs the database) ------------------------------------------------


def verify_frame_on_ledger(
    log: MerkleLog, frame: Callable[[], Iterator[bytes]], now: datetime, v: Verification
) -> None:
    """Check that the ledger extends the frame's checkpoint and yields the frame's population."""
    reader = FrameReader(frame())
    header = reader.header
    try:
        size, _ = merkle.parse_checkpoint(header.checkpoint)
    except ValueError as err:
        v.fail(f"frame: bad checkpoint {header.checkpoint!r}: {err}")
        return
    rep = log.verify(now, checkpoint=header.checkpoint)
    for p in rep.problems:
        v.fail(f"ledger: {p}")
    if not rep.ok:
        return
    start = datetime.fromisoformat(header.start)
    end = datetime.fromisoformat(header.end)
    with log.counted_at(size, start, end) as (counts, rows):
        line = 2
        for mine, theirs in zip_longest(reader, rows):
            line += 1
            if mine is None:
                v.fail(
                    f"frame: ends at line {line - 1}, but the ledger also counted rating {theirs[0]} at the checkpoint"
                )
                return
            if theirs is None:
                v.fail(
                    f"frame line {line}: rating {mine[0]} was not a counted rating of {header.period} at the checkpoint"
                )
                return
            if int(mine[0]) != theirs[0] or mine[1] != theirs[1]:
                v.fail(
                    f"frame line {line}: rating {mine[0]} (window {mine[1]!r}) where the ledger "
                    f"has rating {theirs[0]} (window {theirs[1]!r})"
                )
                return
    try:
        reader.finish()
    except FrameError as err:
        v.fail(f"frame: {err}")
        return
    if dict(counts) != dict(header.strata):
        v.fail("frame: stratum sizes differ from the ledger's at the checkpoint")
        return
    v.notes.append(f"ledger extends {header.checkpoint} and yields exactly the frame's population")


def verify_published(path: Path, workers: int = 1, ctx: AuditContext | None = None) -> Verification:
    """Verify a bundle folder or file; with ``ctx``, also against that instance's ledger."""
    try:
        bundle = load_bundle(path)
    except ValueError as err:
        raise EngineError(f"cannot read the bundle: {err}") from None
    v = verify_bundle(bundle, workers=workers)
    if ctx is not None:
        try:
            verify_frame_on_ledger(ctx.log, bundle.frame, ctx.now(), v)
        except ValueError as err:  # a frame file that does not parse
            v.fail(f"frame: {err}")
    return v
