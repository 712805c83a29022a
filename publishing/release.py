"""The public monthly release: what the public may see of a period, as files anyone can
check without the database.

A release folder holds:

- ``release.json`` (format ``integrity-release/v1``): the period, when it was published,
  the rule set, the ledger checkpoint it stands on, the rubric; the totals (ratings
  received, counted, held, rejected, voided) and the ratings not counted by stage and by
  reason; the window and hall rankings (staff only when the rule set's ``[publish]
  staff_names`` is true); the audit's sample results with exact bounds; the appeals
  filed and what became of them;
- ``windows.csv``, ``halls.csv`` (with a service registry), ``staff.csv`` (when staff
  are named) and ``excluded.csv``: the same rows as the JSON, for spreadsheets;
- ``index.html``: the release as one self-contained page;
- ``manifest.json`` (format ``integrity-release-manifest/v1``): the size and SHA-256 of
  every other file.

Publishing records a checkpoint first (sealing the log), reads the figures, writes the
files, and appends a ``release.published`` ledger event with the manifest's SHA-256.
:mod:`publishing.verify` checks a release folder on its own.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from integrity.catalogue import Kind
from integrity.errors import ConfigError, Conflict
from integrity.model import Event
from integrity.reports import STAGE_LABELS, STAGES, Period, Report, ReportRow
from publishing import charts
from publishing.month import Pages, PeriodView

if TYPE_CHECKING:
    from integrity.app import App
    from integrity.clock import Clock
    from integrity.config import CoreConfig
    from integrity.log import MerkleLog
    from integrity.ports import Ledger

RELEASE_FORMAT = "integrity-release/v1"
MANIFEST_FORMAT = "integrity-release-manifest/v1"
RELEASE_FILE = "release.json"
MANIFEST_FILE = "manifest.json"
HTML_FILE = "index.html"
EXCLUDED_FILE = "excluded.csv"
#: The rows of each ranking file, in order.
ROW_FIELDS = (
    "rank",
    "hall_rank",
    "received",
    "counted",
    "held",
    "rejected",
    "voided",
    "score",
    "low_scores",
    "low_score_rate",
    "low_rate_lo",
    "low_rate_hi",
)
#: How ranks follow from scores (also in the release, for whoever checks it).
RANK_RULE = (
    "competition ranking of groups with counted ratings by score, highest first; scores "
    "within 1e-9 share a rank and the next rank skips (1, 2, 2, 4); hall_rank the same "
    "within the group's hall"
)
TIE = 1e-9


def staff_names_allowed(section: Mapping[str, Any]) -> bool:
    """The rule set's ``[publish] staff_names`` (default false)."""
    value = section.get("staff_names", False)
    if not isinstance(value, bool):
        raise ConfigError("[publish] staff_names must be true or false")
    return value


def _key_column(by: str) -> str:
    return {"window": "window_id", "hall": "hall_id", "staff": "staff_id"}[by]


def _rows(v: PeriodView, rep: Report) -> list[dict[str, Any]]:
    key = _key_column(rep.by)
    out = []
    for r in rep.rows:
        if r.key is None and rep.by != "window":
            continue  # no staff named / no known hall: not a group the public ranks
        row: dict[str, Any] = {key: r.key}
        if rep.by == "hall":
            row["name"] = v.hall_name(r.key)
        elif rep.by == "window":
            row["name"] = v.window_name(r.key)
            row["hall_id"] = r.hall_id
        else:
            row["name"] = v.staff_name(r.key)
            row["hall_id"] = r.hall_id
        row.update(_figures(r, with_hall_rank=rep.with_halls))
        row["dimensions"] = {d: r.dimensions.get(d) for d in v.rubric.dimensions}
        out.append(row)
    return out


def _figures(r: ReportRow, with_hall_rank: bool) -> dict[str, Any]:
    return {
        "rank": r.rank,
        "hall_rank": r.hall_rank if with_hall_rank else None,
        "received": r.ratings,
        "counted": r.counted,
        "held": r.held,
        "rejected": r.rejected,
        "voided": r.voided,
        "score": r.score,
        "low_scores": r.low_scores,
        "low_score_rate": r.low_score_rate,
        "low_rate_lo": r.low_rate_lo,
        "low_rate_hi": r.low_rate_hi,
    }


def release_document(
    v: PeriodView, *, checkpoint: str, published_at: datetime, staff_names: bool
) -> dict[str, Any]:
    """``release.json``'s content for a period view (read with ``staff`` as allowed)."""
    ex = v.exclusions
    p = v.period
    doc: dict[str, Any] = {
        "format": RELEASE_FORMAT,
        "period": {
            "label": p.label,
            "kind": p.kind,
            "first_day": p.first_day.isoformat() if p.first_day else None,
            "last_day": p.last_day.isoformat() if p.last_day else None,
            "timezone": str(p.tz),
            "start": p.start.isoformat(),
            "end": p.end.isoformat(),
        },
        "published_at": published_at.isoformat(),
        "rule_set_id": v.rule_set_id,
        "checkpoint": checkpoint,
        "rubric": {
            "dimensions": list(v.rubric.dimensions),
            "scale": [v.rubric.scale_min, v.rubric.scale_max],
            "low_score_below": v.rubric.low_score_below,
        },
        "rank_rule": RANK_RULE,
        "staff_names": staff_names,
        "totals": {
            "received": ex.received,
            "counted": ex.counted,
            "held": ex.by_status.get("held", 0),
            "rejected": ex.by_status.get("rejected", 0),
            "voided": ex.by_status.get("voided", 0),
            "excluded": ex.excluded,
        },
        "excluded_by_stage": {s: ex.by_stage.get(s, 0) for s in STAGES},
        "excluded_by_reason": ex.rows(),
        "windows": _rows(v, v.windows),
        "halls": _rows(v, v.halls) if v.halls is not None else None,
        "audit": v.audit.as_dict() if v.audit is not None else None,
        "appeals": v.appeals.as_dict() if v.appeals is not None else None,
    }
    if staff_names and v.staff is not None:
        doc["staff"] = _rows(v, v.staff)
    return doc


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def csv_columns(rows: Sequence[Mapping[str, Any]], dimensions: Sequence[str]) -> list[str]:
    """The CSV columns of a ranking: its key columns, then :data:`ROW_FIELDS`, then one per
    rubric dimension."""
    first = [k for k in ("window_id", "hall_id", "staff_id", "name") if rows and k in rows[0]]
    return [*first, *ROW_FIELDS, *dimensions]


def csv_text(rows: Sequence[Mapping[str, Any]], dimensions: Sequence[str]) -> str:
    """A ranking as CSV: floats as Python writes them (they read back exactly)."""
    buf = io.StringIO()
    cols = csv_columns(rows, dimensions)
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        dims = r.get("dimensions") or {}
        w.writerow([_plain(dims.get(c) if c in dimensions else r.get(c)) for c in cols])
    return buf.getvalue()


def excluded_csv(doc: Mapping[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["stage", "reason", "ratings"])
    for r in doc["excluded_by_reason"]:
        w.writerow([r["stage"], r["reason"], r["ratings"]])
    return buf.getvalue()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _html(doc: Mapping[str, Any]) -> str:
    """The public page: a pure rendering of ``release.json``."""
    dims = list(doc["rubric"]["dimensions"])
    t = doc["totals"]

    def num(v: Any, kind: str = "int") -> str:
        if v is None:
            return "–"
        if kind == "score":
            return f"{v:.2f}"
        if kind == "rate":
            return f"{100 * v:.1f} %"
        return f"{v:,}"

    def table(rows: Sequence[Mapping[str, Any]], key: str, label: str) -> str:
        head = [
            "rank",
            label,
            "name",
            "received",
            "counted",
            "score",
            *dims,
            "low-score rate (95 % interval)",
            "not counted",
        ]
        out = [
            "<table><thead><tr>",
            *[f"<th>{escape(h)}</th>" for h in head],
            "</tr></thead><tbody>",
        ]
        for r in rows:
            interval = (
                f"{num(r['low_score_rate'], 'rate')} ({num(r['low_rate_lo'], 'rate')} – "
                f"{num(r['low_rate_hi'], 'rate')})"
                if r["low_score_rate"] is not None
                else "–"
            )
            cells = [
                num(r["rank"]),
                escape(str(r.get(key) or "")),
                escape(str(r.get("name") or "")),
                num(r["received"]),
                num(r["counted"]),
                num(r["score"], "score"),
                *[num((r.get("dimensions") or {}).get(d), "score") for d in dims],
                interval,
                num(r["held"] + r["rejected"] + r["voided"]),
            ]
            out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        out.append("</tbody></table>")
        return "".join(out)

    period = doc["period"]
    parts = [
        f"<h1>Ratings of public services: {escape(period['label'])}</h1>",
        f"<p class='meta'>{escape(str(period['first_day']))} to {escape(str(period['last_day']))} "
        f"({escape(period['timezone'])}); published {escape(doc['published_at'])}; rule set "
        f"{escape(doc['rule_set_id'])}; stands on the ledger checkpoint "
        f"<code>{escape(doc['checkpoint'])}</code>.</p>",
        "<h2>Ratings received and counted</h2>",
        f"<p>{t['received']:,} ratings received; {t['counted']:,} counted; {t['excluded']:,} "
        f"not counted ({t['held']:,} held for review, {t['rejected']:,} rejected, "
        f"{t['voided']:,} voided).</p>",
        "<table><thead><tr><th>stage</th><th>ratings not counted</th></tr></thead><tbody>",
        *[
            f"<tr><td>{escape(STAGE_LABELS.get(s, s))}</td><td>{n:,}</td></tr>"
            for s, n in doc["excluded_by_stage"].items()
        ],
        "</tbody></table>",
    ]
    reasons = [(r["stage"], r["reason"], int(r["ratings"])) for r in doc["excluded_by_reason"]]
    if reasons:
        svg = charts.exclusions_chart(
            "release-excluded", "Ratings not counted, by stage and reason", reasons, STAGES
        )
        parts.append(f"<figure class='chart' data-chart='release-excluded'>{svg}</figure>")
    if doc.get("halls"):
        parts += ["<h2>Halls</h2>", table(doc["halls"], "hall_id", "hall")]
    parts += ["<h2>Windows</h2>", table(doc["windows"], "window_id", "window")]
    if doc.get("staff"):
        parts += ["<h2>Staff</h2>", table(doc["staff"], "staff_id", "staff")]
    audit = doc.get("audit")
    parts.append("<h2>Audit sample</h2>")
    if audit:
        o = audit["overall"]
        parts.append(
            f"<p>Sample {audit['sample_id']} (seed {escape(str(audit['seed']))}) of the frame "
            f"<code>{escape(audit['frame_sha256'])}</code>: {o.get('audited', 0):,} of "
            f"{o.get('sampled', 0):,} sampled ratings audited, {o.get('deviations', 0):,} "
            f"deviations; deviation rate {num(o.get('rate'), 'rate')}, between "
            f"{num(o.get('lower'), 'rate')} and {num(o.get('upper'), 'rate')} at "
            f"{audit['confidence']:.0%} confidence (exact bounds).</p>"
        )
    else:
        parts.append("<p>No audit sample was drawn for this period.</p>")
    ap = doc.get("appeals")
    parts.append("<h2>Appeals</h2>")
    if ap:
        parts.append(
            f"<p>{ap['filed']:,} appeals filed ({ap['admitted']:,} admitted, "
            f"{ap['ineligible']:,} not admitted); {ap['upheld']:,} upheld, "
            f"{ap['rejected']:,} rejected, {ap['open']:,} still open.</p>"
        )
    else:
        parts.append("<p>No appeal figures.</p>")
    parts.append(
        "<p class='meta'>Counted ratings only. Ranks: "
        f"{escape(doc['rank_rule'])}. Check this release with "
        "<code>integrity publish verify FOLDER</code>; every file's SHA-256 is in "
        "manifest.json.</p>"
    )
    style = (
        f"body{{font-family:{charts.FONT_STACK};max-width:1100px;margin:0 auto;padding:0 16px 32px;"
        "font-size:14px;color:#1a1a1a}table{border-collapse:collapse;margin:6px 0 14px;font-size:12.5px}"
        "th,td{border:1px solid #c8c8c8;padding:3px 6px}th{background:#f0f0f0}"
        ".meta{color:#444;font-size:12.5px}figure svg{max-width:100%;height:auto}"
    )
    return (
        "<!DOCTYPE html>\n<html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>Ratings of public services: {escape(period['label'])}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def release_files(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """Every file of a release but the manifest, by name."""
    dims = list(doc["rubric"]["dimensions"])
    files = {
        RELEASE_FILE: (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8"),
        "windows.csv": csv_text(doc["windows"], dims).encode("utf-8"),
        EXCLUDED_FILE: excluded_csv(doc).encode("utf-8"),
        HTML_FILE: _html(doc).encode("utf-8"),
    }
    if doc.get("halls") is not None:
        files["halls.csv"] = csv_text(doc["halls"], dims).encode("utf-8")
    if doc.get("staff") is not None:
        files["staff.csv"] = csv_text(doc["staff"], dims).encode("utf-8")
    return files


def manifest(doc: Mapping[str, Any], files: Mapping[str, bytes]) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "period": doc["period"]["label"],
        "published_at": doc["published_at"],
        "checkpoint": doc["checkpoint"],
        "files": [
            {"path": name, "bytes": len(data), "sha256": sha256_hex(data)}
            for name, data in sorted(files.items())
        ],
    }


@dataclass(frozen=True)
class Published:
    """A release written: its folder, files, the manifest's SHA-256 and its ledger event."""

    folder: Path
    files: tuple[str, ...]
    manifest_sha256: str
    checkpoint: str
    event_id: int | None
    document: Mapping[str, Any]


class Releases:
    """Writing public releases (``integrity publish``)."""

    def __init__(
        self, pages: Pages, ledger: Ledger, log: MerkleLog, clock: Clock, core: CoreConfig
    ) -> None:
        self.pages = pages
        self.ledger = ledger
        self.log = log
        self.clock = clock
        self.core = core

    @classmethod
    def from_app(cls, app: App) -> Releases:
        return cls(app.get(Pages), app.ledger, app.log, app.clock, app.core)

    @property
    def staff_names(self) -> bool:
        return staff_names_allowed(self.core.section("publish"))

    def publish(self, period: Period, out: Path, actor: str | None = None) -> Published:
        """Write ``period``'s release into the folder ``out`` (new or empty) and record it.

        The checkpoint is recorded (sealing the log) before the figures are read, so the
        release stands on a log that holds every rating it counts.
        """
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise Conflict(f"{out} exists and is not an empty folder; pick a new one")
        who = actor or "operator"
        now = self.clock.now()
        head = self.log.checkpoint(now, actor=who)
        staff = self.staff_names
        view = self.pages.view(None, period, staff=staff)
        doc = release_document(
            view, checkpoint=head.checkpoint(), published_at=now, staff_names=staff
        )
        files = release_files(doc)
        man = manifest(doc, files)
        man_bytes = (json.dumps(man, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
        out.mkdir(parents=True, exist_ok=True)
        for name, data in {**files, MANIFEST_FILE: man_bytes}.items():
            (out / name).write_bytes(data)
        digest = sha256_hex(man_bytes)
        with self.ledger.unit_of_work() as uow:
            ev = uow.append(
                Event(
                    kind=Kind.RELEASE_PUBLISHED,
                    actor=who,
                    at=now,
                    subject=f"release:{period.label}",
                    evidence={
                        "period": period.label,
                        "manifest_sha256": digest,
                        "checkpoint": head.checkpoint(),
                        "files": sorted([*files, MANIFEST_FILE]),
                        "staff_names": staff,
                    },
                )
            )
        return Published(
            out,
            tuple(sorted([*files, MANIFEST_FILE])),
            digest,
            head.checkpoint(),
            ev.event_id,
            doc,
        )
