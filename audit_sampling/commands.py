"""``integrity audit ...`` (issue: verifiable third-party audit sampling).

The flow: ``frame`` (publish it) -> ``draw`` with a public seed -> ``batches`` ->
``pull`` / ``record`` by auditors -> ``report`` and ``expand`` -> ``publish`` so
anyone can ``verify``. Supervisor commands act ``--as`` a person with the
``admin`` role; auditor commands name the auditor with ``--auditor``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from audit_sampling.context import AuditContext
from integrity.cliutil import (
    actor_option,
    current_actor,
    format_option,
    handled,
    instance_options,
    opened,
)
from integrity.errors import EngineError, FieldError, InvalidInput
from integrity.render import render


@contextmanager
def audit_context(
    home: str | None, db_url: str | None, redis_url: str | None, seal: bool = False
) -> Iterator[AuditContext]:
    """The audit services over the instance; ``seal``: seal new ledger events afterwards."""
    with opened(home, db_url, redis_url) as app:
        yield AuditContext.from_app(app)
        if seal:
            app.log.seal(app.clock.now())


def _out() -> Any:
    return sys.stdout


def _json(doc: Any) -> None:
    click.echo(json.dumps(doc, indent=2, ensure_ascii=False, default=str))


auditor_option = click.option(
    "--auditor",
    "auditor",
    required=True,
    metavar="PERSON_ID",
    help="The auditor acting (role auditor).",
)


@click.group("audit")
def audit_group() -> None:
    """Verifiable random audit samples, auditor batches, findings and estimates.

    \b
    1. integrity audit frame --period 2026-10 --as SUPERVISOR   (publish the file)
    2. integrity audit draw FRAME --seed "<public random digits>" --as SUPERVISOR
    3. integrity audit batches SAMPLE --size 25 --auditor A1 --as SUPERVISOR
    4. integrity audit pull BATCH --auditor A1 --format csv -o batch.csv
    5. integrity audit record BATCH findings.csv --auditor A1
    6. integrity audit report SAMPLE; integrity audit expand SAMPLE --as SUPERVISOR
    7. integrity audit publish SAMPLE -o bundle/; anyone: integrity audit verify bundle/
    """


@audit_group.command("frame")
@instance_options
@click.option(
    "--period", required=True, metavar="YYYY-MM", help="Calendar month in the rule set's time zone."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Frame file to write (default: <home>/audit/).",
)
@actor_option
@handled
def frame_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    period: str,
    output: Path | None,
    actor: str | None,
) -> None:
    """Fix the population of a period: counted ratings as of a fresh ledger checkpoint.

    Prints the frame's size, SHA-256 and checkpoint, and writes the frame file.
    Publish both before any seed exists.
    """
    from audit_sampling.draws import make_frame

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        res = make_frame(ctx, period, current_actor(actor), output)
    f = res.frame
    click.echo(f"frame {f.frame_id}: {f.period}, {f.ratings} ratings in {len(f.strata)} windows")
    click.echo(f"sha256 {f.frame_hash}")
    click.echo(f"checkpoint {f.checkpoint}")
    if res.path is not None:
        click.echo(f"file {res.path}")
    click.echo(
        "Publish the file and its SHA-256 now; draw only with a seed made public afterwards."
    )


@audit_group.command("frames")
@instance_options
@click.option("--period", metavar="YYYY-MM")
@format_option()
@handled
def frames_command(
    home: str | None, db_url: str | None, redis_url: str | None, period: str | None, fmt: str
) -> None:
    """List frames (id, period, size, SHA-256, checkpoint)."""
    from audit_sampling.context import frames

    with audit_context(home, db_url, redis_url) as ctx:
        rows = [f.as_dict() for f in frames(ctx, period)]
    render(
        rows,
        [
            "frame_id",
            "period",
            "ratings",
            "windows",
            "frame_sha256",
            "checkpoint",
            "created_at",
            "created_by",
        ],
        fmt,
        _out(),
    )


def _strata_rows(outcome: Any) -> list[dict[str, Any]]:
    return [
        {
            "window_id": s.window_id,
            "population": s.population,
            "base_take": s.base_take,
            "take": s.take,
        }
        for s in outcome.strata.values()
    ]


@audit_group.command("draw")
@instance_options
@click.argument("frame")
@click.option(
    "--seed",
    required=True,
    help="Public random text made after the frame was published (>= 20 chars).",
)
@click.option("--rate", help="Share of each window to sample (default: [audit] rate, 0.10).")
@click.option(
    "--min",
    "minimum",
    type=click.IntRange(min=0),
    help="Minimum per window (default: [audit] min_per_stratum).",
)
@click.option(
    "--risk",
    "risk_extra",
    type=click.IntRange(min=0),
    help="Extra ratings of highest detector risk (default: [audit] risk_extra).",
)
@click.option(
    "--risk-min",
    type=click.FloatRange(0, 1),
    help="Only risk above this (default: [audit] risk_min).",
)
@click.option(
    "--seed-note",
    default="",
    help="Where the seed came from (dice at a public meeting, a lottery draw...).",
)
@format_option()
@actor_option
@handled
def draw_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    frame: str,
    seed: str,
    rate: str | None,
    minimum: int | None,
    risk_extra: int | None,
    risk_min: float | None,
    seed_note: str,
    fmt: str,
    actor: str | None,
) -> None:
    """Draw the sample of FRAME (id, SHA-256 prefix or frame file) from a public seed.

    Every window gets max(ceil(rate x N), min) of its ratings (all, if fewer): those
    with the smallest SHA-256 tickets of seed and rating id. The seed is then locked
    to this frame; the same command again shows the same sample.
    """
    from audit_sampling.draws import draw_sample

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        out = draw_sample(
            ctx,
            frame,
            seed,
            current_actor(actor),
            rate=rate,
            minimum=minimum,
            risk_extra=risk_extra,
            risk_min=risk_min,
            seed_note=seed_note,
        )
    s = out.sample
    if fmt == "json":
        _json(
            {
                "sample_id": s.sample_id,
                "frame_id": s.frame_id,
                "frame_sha256": out.frame.frame_hash,
                "seed": s.seed,
                "rate": s.rate,
                "min_per_stratum": s.min_per_stratum,
                "created": out.created,
                "risk_take": s.risk_take,
                "strata": _strata_rows(out),
            }
        )
        return
    verb = "drawn" if out.created else "already drawn (same inputs, same sample)"
    click.echo(
        f"sample {s.sample_id} {verb}: frame {s.frame_id} ({out.frame.frame_hash[:16]}…), "
        f"seed {s.seed!r}, rate {s.rate}, min {s.min_per_stratum}"
    )
    render(_strata_rows(out), ["window_id", "population", "base_take", "take"], fmt, _out())
    uniform = sum(x.take for x in out.strata.values())
    click.echo(
        f"{uniform} uniform item(s) in {len(out.strata)} window(s), {s.risk_take} risk item(s)"
    )


@audit_group.command("show")
@instance_options
@click.argument("sample", required=False)
@click.option("--items", "show_items", is_flag=True, help="List every item instead of the windows.")
@format_option()
@handled
def show_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    sample: str | None,
    show_items: bool,
    fmt: str,
) -> None:
    """A sample's windows (population, take, progress) or its items (default: latest sample)."""
    from audit_sampling.context import load_sample, strata
    from audit_sampling.draws import sample_items, uniform_progress

    with audit_context(home, db_url, redis_url) as ctx:
        s = load_sample(ctx, sample)
        if show_items:
            rows = sample_items(ctx, s.sample_id)
            render(
                rows,
                [
                    "rating_id",
                    "window_id",
                    "rank",
                    "risk_rank",
                    "ticket",
                    "added",
                    "batch_id",
                    "code",
                ],
                fmt,
                _out(),
            )
            return
        prog = uniform_progress(ctx, s.sample_id)
        rows = []
        for w, st in strata(ctx, s.sample_id).items():
            a, d, p = prog.get(w, (0, 0, 0))
            rows.append(
                {
                    "window_id": w,
                    "population": st.population,
                    "base_take": st.base_take,
                    "take": st.take,
                    "audited": a,
                    "deviations": d,
                    "pending": p,
                    "grown_by": ";".join(h["why"] for h in st.history[1:]),
                }
            )
    if fmt == "table":
        click.echo(
            f"sample {s.sample_id}: frame {s.frame_id}, seed {s.seed!r}, rate {s.rate}, min {s.min_per_stratum}, "
            f"risk items {s.risk_take}"
        )
    render(
        rows,
        [
            "window_id",
            "population",
            "base_take",
            "take",
            "audited",
            "deviations",
            "pending",
            "grown_by",
        ],
        fmt,
        _out(),
    )


@audit_group.command("expand")
@instance_options
@click.argument("sample", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would grow; change nothing.")
@format_option()
@actor_option
@handled
def expand_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    sample: str | None,
    dry_run: bool,
    fmt: str,
    actor: str | None,
) -> None:
    """Grow every fully audited window whose deviation upper bound exceeds the tolerable rate.

    The window gets the next items in the same ticket order ([audit] expansion_step of
    the window each time) up to [audit] expansion_cap, then the whole window. New
    items need batches: run `integrity audit batches` afterwards.
    """
    from audit_sampling.draws import expand

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        rep = expand(ctx, sample, current_actor(actor), dry_run=dry_run)
    rows = [s.as_dict() for s in rep.strata]
    render(
        rows,
        [
            "window_id",
            "population",
            "take",
            "audited",
            "deviations",
            "pending",
            "upper",
            "new_take",
            "note",
        ],
        fmt,
        _out(),
    )
    if fmt == "table":
        n = len(rep.expanded)
        if dry_run:
            click.echo(f"dry run: {n} window(s) would grow")
        else:
            click.echo(
                f"{n} window(s) grew by {rep.added} item(s); batch them with `integrity audit batches {rep.sample_id}`"
            )


def _batch_rows(batches: Any) -> list[dict[str, Any]]:
    return [b.as_dict() for b in batches]


BATCH_COLUMNS = ["batch_id", "sample_id", "seq", "auditor_id", "items", "findings", "pulls"]


@audit_group.command("batches")
@instance_options
@click.argument("sample", required=False)
@click.option(
    "--size", type=click.IntRange(min=1), help="Items per batch (default: [audit] batch_size)."
)
@click.option(
    "--auditor",
    "auditors",
    multiple=True,
    metavar="PERSON_ID",
    help="Assign new batches round robin (repeatable).",
)
@format_option()
@actor_option
@handled
def batches_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    sample: str | None,
    size: int | None,
    auditors: tuple[str, ...],
    fmt: str,
    actor: str | None,
) -> None:
    """Split a sample's unbatched items into batches, then list its batches.

    Without SAMPLE: list every batch. Splitting needs --as a supervisor.
    """
    from audit_sampling.batches import list_batches, split
    from audit_sampling.context import load_sample
    from audit_sampling.draws import sample_items

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        if sample is not None or size is not None or auditors:
            s = load_sample(ctx, sample)
            unbatched = [i for i in sample_items(ctx, s.sample_id) if i["batch_id"] is None]
            if unbatched:
                made = split(ctx, s.sample_id, current_actor(actor), size, auditors)
                click.echo(f"{len(made)} new batch(es) for {len(unbatched)} item(s)", err=True)
            rows = list_batches(ctx, s.sample_id)
        else:
            rows = list_batches(ctx)
    render(_batch_rows(rows), BATCH_COLUMNS, fmt, _out())


@audit_group.command("assign")
@instance_options
@click.argument("batch")
@auditor_option
@actor_option
@handled
def assign_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    batch: str,
    auditor: str,
    actor: str | None,
) -> None:
    """Give BATCH to an auditor (until a finding is recorded in it)."""
    from audit_sampling.batches import assign

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        b = assign(ctx, batch, auditor, current_actor(actor))
    click.echo(f"batch {b.batch_id} assigned to {b.auditor_id}")


@audit_group.command("pull")
@instance_options
@click.argument("batch")
@auditor_option
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Export file.",
)
@click.option(
    "--manifest",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Manifest file (default: OUTPUT.manifest.json).",
)
@handled
def pull_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    batch: str,
    auditor: str,
    fmt: str,
    output: Path,
    manifest: Path | None,
) -> None:
    """Export BATCH for its auditor (pseudonymised fields only) with a manifest; the pull is logged."""
    from audit_sampling.batches import pull

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        p = pull(ctx, batch, auditor, fmt, file_name=output.name, via="cli")
    output.write_bytes(p.data)
    mpath = manifest or output.with_name(output.name + ".manifest.json")
    mpath.write_text(json.dumps(p.manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    click.echo(
        f"batch {p.batch.batch_id}: {len(p.rows)} rating(s) -> {output} (sha256 {p.manifest['file']['sha256']})"
    )
    click.echo(f"manifest -> {mpath}; pull logged as ledger event {p.manifest['pull_event_id']}")


@audit_group.command("pulls")
@instance_options
@click.argument("batch")
@format_option()
@handled
def pulls_command(
    home: str | None, db_url: str | None, redis_url: str | None, batch: str, fmt: str
) -> None:
    """Who pulled BATCH, when, how, and which bytes (from the ledger)."""
    from audit_sampling.context import batch_subject, load_batch

    with audit_context(home, db_url, redis_url) as ctx:
        b = load_batch(ctx, batch)
        events = [
            e for e in ctx.ledger.events_about(batch_subject(b.batch_id)) if e.kind == "audit.pull"
        ]
    rows = [
        {
            "event_id": e.event_id,
            "at": e.at,
            "auditor": e.actor,
            "via": e.evidence.get("via"),
            "format": e.evidence.get("format"),
            "items": e.evidence.get("items"),
            "sha256": e.evidence.get("file_sha256"),
        }
        for e in events
    ]
    render(rows, ["event_id", "at", "auditor", "via", "format", "items", "sha256"], fmt, _out())


@audit_group.command("record")
@instance_options
@click.argument("batch")
@click.argument("findings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@auditor_option
@format_option()
@handled
def record_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    batch: str,
    findings: Path,
    auditor: str,
    fmt: str,
) -> None:
    """Record FINDINGS (CSV: rating_id,code,note) for BATCH.

    \b
    Codes: genuine, fabricated, coerced, duplicate, wrong_staff, cannot_verify,
    not_applicable. A note is required for every code but genuine. The whole file
    is checked first: any bad line is reported and nothing changes. fabricated,
    coerced and duplicate void the rating; not_applicable brings in the next item.
    """
    from audit_sampling.findings import record_csv

    try:
        text = findings.read_text("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(
            [FieldError("file", f"not UTF-8: {err}")], what="findings file"
        ) from None
    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        try:
            res = record_csv(ctx, batch, auditor, text)
        except InvalidInput as err:
            for e in err.errors:
                click.echo(f"{e.field}: {e.message}", err=True)
            click.echo(
                f"error: {len(err.errors)} problem(s) in {findings.name}; nothing was recorded",
                err=True,
            )
            sys.exit(1)
    doc = res.as_dict()
    if fmt == "json":
        _json(doc)
        return
    click.echo(
        f"batch {res.batch_id}: {res.findings} finding(s) recorded, {res.remaining} item(s) still open"
    )
    render(
        [{"code": k, "findings": v} for k, v in doc["codes"].items()],
        ["code", "findings"],
        fmt,
        _out(),
    )
    if res.voided:
        click.echo(f"voided: {', '.join(map(str, res.voided))}")
    for old, new in res.replacements:
        click.echo(
            f"not applicable: {old} -> replacement {new if new is not None else '(none left)'}"
        )


@audit_group.command("report")
@instance_options
@click.argument("sample", required=False)
@click.option(
    "--confidence",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    help="Default: [audit] confidence (0.95).",
)
@click.option(
    "--tolerable",
    type=click.FloatRange(0, 1),
    help="Tolerable deviation rate (default: [audit] tolerable_rate, 0.05).",
)
@format_option()
@handled
def report_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    sample: str | None,
    confidence: float | None,
    tolerable: float | None,
    fmt: str,
) -> None:
    """Deviation rate per window and overall with exact bounds, projections and escalations.

    Bounds are exact and one-sided at the confidence: hypergeometric per window
    (Clopper-Pearson with the finite-population correction), Bonferroni over
    windows for the overall line. The risk stratum is shown apart, not projected.
    """
    from audit_sampling.estimates import COLUMNS, report

    with audit_context(home, db_url, redis_url) as ctx:
        rep = report(ctx, sample, confidence, tolerable)
    if fmt == "json":
        _json(rep.as_dict())
        return
    if fmt == "table":
        click.echo(
            f"sample {rep.sample_id} ({rep.period}): confidence {rep.confidence:.0%}, tolerable rate {rep.tolerable_rate:.1%}"
        )
    render(rep.rows, COLUMNS, fmt, _out())
    if fmt == "table":
        for line in [*rep.escalations, *rep.notes]:
            click.echo(line)
        if not rep.escalations:
            click.echo("no escalation (a window is judged once it is fully audited)")


@audit_group.command("publish")
@instance_options
@click.argument("sample", required=False)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    help="Bundle folder, or FILE.json with --single.",
)
@click.option("--single", is_flag=True, help="Write one JSON document instead of a folder.")
@handled
def publish_command(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    sample: str | None,
    output: Path,
    single: bool,
) -> None:
    """Write the verification bundle of a sample: the frame file and sample.json."""
    from audit_sampling.context import frame_chunks
    from audit_sampling.draws import publish, sample_manifest
    from audit_sampling.verify import bundle_document

    with audit_context(home, db_url, redis_url) as ctx:
        if single:
            m = sample_manifest(ctx, sample)
            text = b"".join(frame_chunks(ctx, m["frame"]["frame_id"])).decode("utf-8")
            output.write_text(
                json.dumps(bundle_document(text, m), ensure_ascii=False) + "\n", "utf-8"
            )
            paths = [output]
        else:
            paths = publish(ctx, sample, output)
    for p in paths:
        click.echo(f"{p} sha256 {hashlib.sha256(p.read_bytes()).hexdigest()}")


@audit_group.command("verify")
@click.argument("bundle", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--ledger",
    "with_ledger",
    is_flag=True,
    help="Also check the frame against the instance's ledger (--home/--db).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Processes for re-deriving a large sample.",
)
@instance_options
@handled
def verify_command(
    bundle: Path,
    with_ledger: bool,
    workers: int,
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
) -> None:
    """Re-derive a published sample from its frame, seed and manifest, and check it.

    BUNDLE is a folder (sample.json, the frame file, pull manifests with their
    exports) or a single JSON bundle. Needs no database; --ledger also proves the
    frame stands on its checkpoint.
    """
    from audit_sampling.verify import load_bundle, verify_bundle, verify_frame_on_ledger

    try:
        b = load_bundle(bundle)
    except ValueError as err:
        raise EngineError(f"cannot read the bundle: {err}") from None
    v = verify_bundle(b, workers=workers)
    if with_ledger:
        with opened(home, db_url, redis_url) as app:
            try:
                verify_frame_on_ledger(app.log, app.ledger.engine, b.frame, app.clock.now(), v)
            except ValueError as err:
                v.fail(f"frame: {err}")
    for note in v.notes:
        click.echo(f"checked: {note}")
    if not v.ok:
        for p in v.problems:
            click.echo(f"TAMPERED: {p}")
        click.echo(f"error: verification failed ({len(v.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {v.items} item(s) in {v.windows} window(s) follow from the seed and frame {v.frame_sha256}"
    )


@audit_group.command("auditors")
@instance_options
@format_option()
@handled
def auditors_command(home: str | None, db_url: str | None, redis_url: str | None, fmt: str) -> None:
    """Registered auditors and their batches."""
    from audit_sampling.batches import list_batches

    with audit_context(home, db_url, redis_url) as ctx:
        people = [p for p in ctx.people.all() if "auditor" in p.roles]
        batches = list_batches(ctx)
    rows = []
    for p in people:
        mine = [b for b in batches if b.auditor_id == p.person_id]
        rows.append(
            {
                "person_id": p.person_id,
                "name": p.name,
                "unit": p.unit,
                "active": p.active,
                "batches": len(mine),
                "items": sum(b.items for b in mine),
                "findings": sum(b.findings for b in mine),
            }
        )
    render(
        rows, ["person_id", "name", "unit", "active", "batches", "items", "findings"], fmt, _out()
    )


@audit_group.command("token")
@instance_options
@auditor_option
@actor_option
@handled
def token_command(
    home: str | None, db_url: str | None, redis_url: str | None, auditor: str, actor: str | None
) -> None:
    """Issue an HTTP API token for an auditor (shown once; only its hash is stored)."""
    from integrity.model import Event

    with audit_context(home, db_url, redis_url, seal=True) as ctx:
        person = ctx.supervisor(current_actor(actor))
        ctx.auditor(auditor)
        token = ctx.people.issue_token(auditor)
        ctx.ledger.append(
            Event(
                kind="audit.token",
                actor=person.person_id,
                at=ctx.now(),
                subject=f"person:{auditor}",
            )
        )
    click.echo(token)
