"""``integrity audit ...``: verifiable third-party audit sampling.

The flow: ``frame`` (publish it) -> ``draw`` with a public seed -> ``batches`` ->
``pull`` / ``record`` by auditors -> ``report`` and ``expand`` -> ``publish`` so
anyone can ``verify``. Everyone acts as the person they are signed in as
(:meth:`~integrity.cliutil.Instance.actor`): supervisor commands need the ``admin``
role, ``pull`` and ``record`` the ``auditor`` role (``--as`` / ``--auditor`` there
only assert who you are). Through the server, the listings follow the read policy
(:mod:`integrity.access`: ``audit``).

Thin: each command parses its options, calls one step of the audit with the
:class:`~audit_sampling.context.AuditContext` of the instance, and renders.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import click

from audit_sampling.auditors import ROSTER_COLUMNS, issue_token, roster
from audit_sampling.batches import (
    BATCH_COLUMNS,
    PULL_COLUMNS,
    assign,
    batch_sample,
    list_batches,
    pull,
    pulls_of,
)
from audit_sampling.context import AuditContext
from audit_sampling.draw import draw_sample
from audit_sampling.estimates import COLUMNS, LEGEND, report
from audit_sampling.expand import EXPANSION_COLUMNS, expand
from audit_sampling.findings import record_csv
from audit_sampling.formats import PULL_FORMATS, manifest_text
from audit_sampling.frame import make_frame
from audit_sampling.publish import publish
from audit_sampling.records import ITEM_COLUMNS, WINDOW_COLUMNS, frames, show_sample
from audit_sampling.verify import verify_published
from integrity.access import require_read
from integrity.cliutil import (
    actor_option,
    current_actor,
    current_reader,
    format_option,
    instance,
    instance_options,
    pass_service,
)
from integrity.errors import FieldError, InvalidInput
from integrity.render import dump_json, render

auditor_option = click.option(
    "--auditor",
    "auditor",
    required=True,
    metavar="PERSON_ID",
    help="The auditor (role auditor).",
)
acting_auditor_option = click.option(
    "--auditor",
    "--as",
    "auditor",
    metavar="PERSON_ID",
    help="Only asserts who you are: refused unless you are signed in as PERSON_ID.",
)


def _audit_reader() -> None:
    """Through the server, the audit's listings need a role the read policy allows."""
    require_read(current_reader(), "audit")


@click.group("audit")
def audit_group() -> None:
    """Verifiable random audit samples, auditor batches, findings and estimates.

    \b
    Signed in as a supervisor (role admin):
    1. integrity audit frame --period 2026-10            (publish the file)
    2. integrity audit draw FRAME --seed "<public random digits>"
    3. integrity audit batches SAMPLE --size 25 --auditor A1
       integrity audit token --auditor A1   (A1's personal token; expires)
    Signed in as auditor A1 (e.g. integrity --server URL ... with A1's token):
    4. integrity audit pull BATCH --format csv -o batch.csv
       (or GET /v1/audit/batches/BATCH with Authorization: Bearer TOKEN)
    5. integrity audit record BATCH findings.csv
    Then: integrity audit report SAMPLE; integrity audit expand SAMPLE
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
@pass_service(AuditContext)
def frame_command(ctx: AuditContext, period: str, output: Path | None, actor: str | None) -> None:
    """Fix the population of a period: counted ratings as of a fresh ledger checkpoint.

    Prints the frame's size, SHA-256 and checkpoint, and writes the frame file.
    Publish both before any seed exists.
    """
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
@pass_service(AuditContext)
def frames_command(ctx: AuditContext, period: str | None, fmt: str) -> None:
    """List frames (id, period, size, SHA-256, checkpoint)."""
    _audit_reader()
    rows = [f.as_dict() for f in frames(ctx, period)]
    columns = [
        "frame_id",
        "period",
        "ratings",
        "windows",
        "frame_sha256",
        "checkpoint",
        "created_at",
        "created_by",
    ]
    render(rows, columns, fmt, sys.stdout)


STRATA_COLUMNS = ["window_id", "population", "base_take", "take"]


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
@pass_service(AuditContext)
def draw_command(
    ctx: AuditContext,
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
    strata_rows = [
        {
            "window_id": x.window_id,
            "population": x.population,
            "base_take": x.base_take,
            "take": x.take,
        }
        for x in out.strata.values()
    ]
    if fmt == "json":
        doc = {
            "sample_id": s.sample_id,
            "frame_id": s.frame_id,
            "frame_sha256": out.frame.frame_hash,
            "seed": s.seed,
            "rate": s.rate,
            "min_per_stratum": s.min_per_stratum,
            "created": out.created,
            "risk_take": s.risk_take,
            "strata": strata_rows,
        }
        dump_json(doc, sys.stdout)
        return
    verb = "drawn" if out.created else "already drawn (same inputs, same sample)"
    click.echo(
        f"sample {s.sample_id} {verb}: frame {s.frame_id} ({out.frame.frame_hash[:16]}…), "
        f"seed {s.seed!r}, rate {s.rate}, min {s.min_per_stratum}"
    )
    render(strata_rows, STRATA_COLUMNS, fmt, sys.stdout)
    uniform = sum(x.take for x in out.strata.values())
    click.echo(
        f"{uniform} uniform item(s) in {len(out.strata)} window(s), {s.risk_take} risk item(s)"
    )


@audit_group.command("show")
@instance_options
@click.argument("sample", required=False)
@click.option("--items", "show_items", is_flag=True, help="List every item instead of the windows.")
@format_option()
@pass_service(AuditContext)
def show_command(ctx: AuditContext, sample: str | None, show_items: bool, fmt: str) -> None:
    """A sample's windows (population, take, progress) or its items (default: latest sample)."""
    _audit_reader()
    view = show_sample(ctx, sample, items=show_items)
    if show_items:
        render(view.rows, ITEM_COLUMNS, fmt, sys.stdout)
        return
    s = view.sample
    if fmt == "table":
        click.echo(
            f"sample {s.sample_id}: frame {s.frame_id}, seed {s.seed!r}, rate {s.rate}, "
            f"min {s.min_per_stratum}, risk items {s.risk_take}"
        )
    render(view.rows, WINDOW_COLUMNS, fmt, sys.stdout)


@audit_group.command("expand")
@instance_options
@click.argument("sample", required=False)
@click.option("--dry-run", is_flag=True, help="Say what would grow; change nothing.")
@format_option()
@actor_option
@pass_service(AuditContext)
def expand_command(
    ctx: AuditContext, sample: str | None, dry_run: bool, fmt: str, actor: str | None
) -> None:
    """Grow every fully audited window whose deviation upper bound exceeds the tolerable rate.

    The window gets the next items in the same ticket order ([audit] expansion_step of
    the window each time) up to [audit] expansion_cap, then the whole window. New
    items need batches: run `integrity audit batches` afterwards.
    """
    rep = expand(ctx, sample, current_actor(actor), dry_run=dry_run)
    render([s.as_dict() for s in rep.strata], EXPANSION_COLUMNS, fmt, sys.stdout)
    if fmt == "table":
        n = len(rep.expanded)
        if dry_run:
            click.echo(f"dry run: {n} window(s) would grow")
        else:
            click.echo(
                f"{n} window(s) grew by {rep.added} item(s); "
                f"batch them with `integrity audit batches {rep.sample_id}`"
            )


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
@pass_service(AuditContext)
def batches_command(
    ctx: AuditContext,
    sample: str | None,
    size: int | None,
    auditors: tuple[str, ...],
    fmt: str,
    actor: str | None,
) -> None:
    """Split a sample's unbatched items into batches, then list its batches.

    Without SAMPLE: list every batch (through the server, an auditor sees their own).
    Splitting needs a supervisor signed in.
    """
    if sample is None and size is None and not auditors:
        _audit_reader()
        reader = current_reader()
        mine = reader.person_id if reader is not None and not reader.has("admin") else None
        rows = [b.as_dict() for b in list_batches(ctx, auditor_id=mine)]
        render(rows, BATCH_COLUMNS, fmt, sys.stdout)
        return
    done = batch_sample(ctx, sample, current_actor(actor), size, auditors)
    if done.made:
        click.echo(f"{len(done.made)} new batch(es) for {done.items} item(s)", err=True)
    render([b.as_dict() for b in done.batches], BATCH_COLUMNS, fmt, sys.stdout)


@audit_group.command("assign")
@instance_options
@click.argument("batch")
@auditor_option
@actor_option
@pass_service(AuditContext)
def assign_command(ctx: AuditContext, batch: str, auditor: str, actor: str | None) -> None:
    """Give BATCH to an auditor (until a finding is recorded in it)."""
    b = assign(ctx, batch, auditor, current_actor(actor))
    click.echo(f"batch {b.batch_id} assigned to {b.auditor_id}")


@audit_group.command("pull")
@instance_options
@click.argument("batch")
@acting_auditor_option
@click.option("--format", "fmt", type=click.Choice(PULL_FORMATS), default="csv", show_default=True)
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
@pass_service(AuditContext)
def pull_command(
    ctx: AuditContext,
    batch: str,
    auditor: str | None,
    fmt: str,
    output: Path,
    manifest: Path | None,
) -> None:
    """Export BATCH for its auditor, you (pseudonymised fields only), with a manifest; the
    pull is logged."""
    p = pull(ctx, batch, current_actor(auditor), fmt, file_name=output.name, via="cli")
    output.write_bytes(p.data)
    mpath = manifest or output.with_name(output.name + ".manifest.json")
    mpath.write_text(manifest_text(p.manifest), "utf-8")
    click.echo(
        f"batch {p.batch.batch_id}: {len(p.rows)} rating(s) -> {output} "
        f"(sha256 {p.manifest['file']['sha256']})"
    )
    click.echo(f"manifest -> {mpath}; pull logged as ledger event {p.manifest['pull_event_id']}")


@audit_group.command("pulls")
@instance_options
@click.argument("batch")
@format_option()
@pass_service(AuditContext)
def pulls_command(ctx: AuditContext, batch: str, fmt: str) -> None:
    """Who pulled BATCH, when, how, and which bytes (from the ledger)."""
    _audit_reader()
    render([p.as_dict() for p in pulls_of(ctx, batch)], PULL_COLUMNS, fmt, sys.stdout)


@audit_group.command("record")
@instance_options
@click.argument("batch")
@click.argument("findings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@acting_auditor_option
@format_option()
@pass_service(AuditContext)
def record_command(
    ctx: AuditContext, batch: str, findings: Path, auditor: str | None, fmt: str
) -> None:
    """Record FINDINGS (CSV: rating_id,code,note) for BATCH, as its auditor (you).

    \b
    Codes: genuine, fabricated, coerced, duplicate, wrong_staff, cannot_verify,
    not_applicable. A note is required for every code but genuine. The whole file
    is checked first: any bad line is reported and nothing changes. fabricated,
    coerced and duplicate void the rating; not_applicable brings in the next item.
    """
    try:
        text = findings.read_text("utf-8")
    except UnicodeDecodeError as err:
        raise InvalidInput(
            [FieldError("file", f"not UTF-8: {err}")], what="findings file"
        ) from None
    try:
        res = record_csv(ctx, batch, current_actor(auditor), text)
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
        dump_json(doc, sys.stdout)
        return
    click.echo(
        f"batch {res.batch_id}: {res.findings} finding(s) recorded, "
        f"{res.remaining} item(s) still open"
    )
    render(
        [{"code": k, "findings": v} for k, v in doc["codes"].items()],
        ["code", "findings"],
        fmt,
        sys.stdout,
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
@pass_service(AuditContext)
def report_command(
    ctx: AuditContext,
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
    _audit_reader()
    rep = report(ctx, sample, confidence, tolerable)
    if fmt == "json":
        dump_json(rep.as_dict(), sys.stdout)
        return
    if fmt == "table":
        click.echo(
            f"sample {rep.sample_id} ({rep.period}): confidence {rep.confidence:.0%}, "
            f"tolerable rate {rep.tolerable_rate:.1%}"
        )
    render(rep.rows, COLUMNS, fmt, sys.stdout)
    if fmt != "table":
        return
    click.echo("")
    width = max(map(len, COLUMNS))
    for column in COLUMNS:
        click.echo(f"  {column.ljust(width)}  {LEGEND[column]}")
    click.echo("")
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
@pass_service(AuditContext)
def publish_command(ctx: AuditContext, sample: str | None, output: Path, single: bool) -> None:
    """Write the verification bundle of a sample: the frame file and sample.json."""
    for p in publish(ctx, sample, output, single=single):
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
def verify_command(bundle: Path, with_ledger: bool, workers: int) -> None:
    """Re-derive a published sample from its frame, seed and manifest, and check it.

    BUNDLE is a folder (sample.json, the frame file, pull manifests with their
    exports) or a single JSON bundle. Needs no database; --ledger also proves the
    frame stands on its checkpoint.
    """
    # The instance is opened only to check against its ledger: a verifier needs none.
    ctx = instance().get(AuditContext) if with_ledger else None
    v = verify_published(bundle, workers=workers, ctx=ctx)
    for note in v.notes:
        click.echo(f"checked: {note}")
    if not v.ok:
        for p in v.problems:
            click.echo(f"TAMPERED: {p}")
        click.echo(f"error: verification failed ({len(v.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {v.items} item(s) in {v.windows} window(s) follow from the seed and "
        f"frame {v.frame_sha256}"
    )


@audit_group.command("auditors")
@instance_options
@format_option()
@actor_option
@pass_service(AuditContext)
def auditors_command(ctx: AuditContext, fmt: str, actor: str | None) -> None:
    """Registered auditors and their batches (for a supervisor)."""
    rows = [a.as_dict() for a in roster(ctx, current_actor(actor))]
    render(rows, ROSTER_COLUMNS, fmt, sys.stdout)


@audit_group.command("token")
@instance_options
@click.option(
    "--auditor",
    "auditor",
    required=True,
    metavar="PERSON_ID",
    help="The auditor who gets the token (role auditor).",
)
@click.option(
    "--expires",
    metavar="WHEN",
    help="90d, 12h, 2w, YYYY-MM-DD (valid through that day) or an RFC 3339 time "
    "(default: 90 days; at most 366).",
)
@actor_option
@pass_service(AuditContext)
def token_command(ctx: AuditContext, auditor: str, expires: str | None, actor: str | None) -> None:
    """Issue a personal token for an auditor (shown once, alone on the last line; only
    its SHA-256 is stored).

    The auditor sends it as `Authorization: Bearer TOKEN` to /v1/audit/batches, or
    uses it with `integrity --server URL audit pull ...`. It expires; an auditor may
    hold several; `integrity staff token revoke ID` revokes one.
    """
    issued = issue_token(ctx, auditor, current_actor(actor), expires)
    c = issued.credential
    click.echo(
        f"token {c.credential_id} for {c.person_id}, expires {c.expires_at.isoformat()} "
        "(shown once):",
        err=True,
    )
    click.echo(issued.token)
