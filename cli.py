"""``integrity``: the command line. Each command parses, calls one service, renders.

Exit status: 0 success, 1 a handled error (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from appeals.commands import appeal_group, staff_group
from audit_sampling.commands import audit_group
from integrity.bootstrap import init_instance
from integrity.cliutil import (
    format_option,
    handled,
    instance_options,
    opened,
    progress,
    settings_from,
)
from integrity.errors import EngineError, FieldError, InvalidInput
from integrity.render import render
from rules.commands import detect_command, review_group


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="integrity-engine")
def main() -> None:
    """Integrity engine for citizen ratings of public services.

    Every rating goes through the validation hook and is written to the score ledger
    with a decision; only accepted ratings count toward performance.
    """


@main.command()
@instance_options
@click.option(
    "--rules",
    "rules_file",
    type=click.File("r"),
    help="Rule set TOML to activate (default: the built-in one).",
)
@handled
def init(home: str | None, db_url: str | None, redis_url: str | None, rules_file: Any) -> None:
    """Create an instance: secret key, ledger schema (migrations), active rule set.

    Safe to run again: it upgrades the schema and keeps the active rule set unless
    --rules is given.
    """
    settings = settings_from(home, db_url, redis_url)
    rs_id = init_instance(settings, rules_file.read() if rules_file else None)
    click.echo(f"instance {settings.home}: ledger {_safe_url(settings.db_url)}, rule set {rs_id}")


@main.command()
@instance_options
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--live",
    is_flag=True,
    help="Judge at the time of receipt instead of each rating's submitted_at.",
)
@format_option()
@handled
def ingest(
    home: str | None, db_url: str | None, redis_url: str | None, file: Any, live: bool, fmt: str
) -> None:
    """Run every rating in a JSON Lines FILE (- for stdin) through the validation hook.

    Ratings are judged in order, each at its own submitted_at (replay), so a month of
    history is decided as if it had arrived live. Lines that do not parse are refused
    with field-level errors on stderr and written nowhere; the exit status is then 1.
    """
    from integrity.ingest import ingest as run_ingest
    from integrity.ingest import read_jsonl

    with opened(home, db_url, redis_url) as app:
        with progress("ingest") as tick:
            summary = run_ingest(app.hook, read_jsonl(file), replay=not live, on_progress=tick)
        app.log.seal(app.clock.now())
    for line, err in summary.errors:
        click.echo(f"line {line}: {err.summary()}", err=True)
    doc = summary.as_dict()
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
    else:
        rows = [{"status": k, "ratings": v} for k, v in doc["statuses"].items()]
        click.echo(
            f"{doc['lines']} lines: {doc['written']} written, {doc['identical_retries']} identical retries, "
            f"{doc['refused']} refused"
        )
        render(rows, ["status", "ratings"], fmt, sys.stdout)
        if doc["reasons"]:
            click.echo("")
            render(
                [{"reason": k, "ratings": v} for k, v in doc["reasons"].items()],
                ["reason", "ratings"],
                fmt,
                sys.stdout,
            )
    if summary.refused:
        click.echo(
            f"error: {summary.refused} line(s) refused; nothing was written for them", err=True
        )
        sys.exit(1)


@main.group()
def venues() -> None:
    """The registry of service halls (shared Wi-Fi addresses, kiosk rating pads)."""


@venues.command("load")
@instance_options
@click.argument("file", type=click.File("r", encoding="utf-8"))
@handled
def venues_load(home: str | None, db_url: str | None, redis_url: str | None, file: Any) -> None:
    """Replace the venue registry with FILE (JSON); addresses and devices are pseudonymised."""
    from integrity.venues import pseudonymise_venues

    try:
        doc = json.load(file)
    except json.JSONDecodeError as err:
        raise InvalidInput(
            [FieldError("(file)", f"not valid JSON: {err}")], what="venue registry"
        ) from None
    with opened(home, db_url, redis_url) as app:
        pv = pseudonymise_venues(doc, app.pseudonymiser)
        app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), actor="cli")
    click.echo(
        f"{len(pv.venues)} venues, {len(pv.addresses)} address entries, {len(pv.kiosks)} kiosks loaded"
    )


@main.group()
def export() -> None:
    """Export ledger contents."""


@export.command("ratings")
@instance_options
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.File("w", encoding="utf-8"),
    default="-",
    help="Output file (default: stdout).",
)
@handled
def export_ratings(
    home: str | None, db_url: str | None, redis_url: str | None, fmt: str, output: Any
) -> None:
    """One row per rating in the order received, with status, counted, reasons and risk."""
    from integrity.reports import EXPORT_COLUMNS
    from integrity.reports import export_ratings as rows

    with opened(home, db_url, redis_url) as app:
        render(rows(app.ledger), EXPORT_COLUMNS, fmt, output)


@main.command()
@instance_options
@click.option(
    "--by",
    type=click.Choice(["window", "staff", "service_type"]),
    default="window",
    show_default=True,
)
@click.option(
    "--period",
    metavar="YYYY-MM",
    help="Calendar month in the rule set's time zone (default: all time).",
)
@format_option()
@handled
def report(
    home: str | None,
    db_url: str | None,
    redis_url: str | None,
    by: str,
    period: str | None,
    fmt: str,
) -> None:
    """Performance per window, staff member or service type, from counted ratings only.

    score is the mean weighted composite of counted ratings; low_score_rate the share
    of counted ratings below the rubric's low mark. Groups with ratings but none
    counted appear with counted 0 and an empty score.
    """
    from integrity.reports import GROUPS, REPORT_COLUMNS, Period, performance

    with opened(home, db_url, redis_url) as app:
        p = Period.month(period, app.core.timezone) if period else None
        rows = performance(app.ledger, by, app.core.rubric, p)
    render(rows, [GROUPS[by], *REPORT_COLUMNS], fmt, sys.stdout)


@main.group()
def ledger() -> None:
    """Tamper evidence: seal events into the Merkle log, checkpoint, verify."""


@ledger.command("seal")
@instance_options
@handled
def ledger_seal(home: str | None, db_url: str | None, redis_url: str | None) -> None:
    """Seal every event not yet in the log."""
    with opened(home, db_url, redis_url) as app:
        n = app.log.seal(app.clock.now())
        click.echo(f"sealed {n} event(s); {app.log.head().checkpoint()}")


@ledger.command("checkpoint")
@instance_options
@handled
def ledger_checkpoint(home: str | None, db_url: str | None, redis_url: str | None) -> None:
    """Seal, then print the log's size and root hash for auditors to keep."""
    with opened(home, db_url, redis_url) as app:
        click.echo(app.log.checkpoint(app.clock.now()).checkpoint())


@ledger.command("verify")
@instance_options
@click.option(
    "--checkpoint",
    "checkpoint",
    metavar="TEXT",
    help="A checkpoint printed earlier: prove the ledger still extends it.",
)
@handled
def ledger_verify(
    home: str | None, db_url: str | None, redis_url: str | None, checkpoint: str | None
) -> None:
    """Recompute the log from the ledger's rows; report any edited, inserted or deleted row."""
    with opened(home, db_url, redis_url) as app:
        try:
            rep = app.log.verify(app.clock.now(), checkpoint=checkpoint)
        except ValueError as err:
            raise EngineError(f"bad checkpoint: {err}") from None
    from integrity.merkle import format_checkpoint

    for w in rep.warnings:
        click.echo(f"warning: {w}", err=True)
    if not rep.ok:
        for p in rep.problems:
            click.echo(f"TAMPERED: {p}")
        click.echo(f"error: ledger verification failed ({len(rep.problems)} problem(s))", err=True)
        sys.exit(1)
    click.echo(
        f"ok: {format_checkpoint(rep.size, rep.root)} ({rep.unsealed} event(s) not yet sealed)"
    )


@ledger.command("prove")
@instance_options
@click.option(
    "--from",
    "old_size",
    type=click.IntRange(min=0),
    required=True,
    help="Size of the earlier checkpoint.",
)
@handled
def ledger_prove(
    home: str | None, db_url: str | None, redis_url: str | None, old_size: int
) -> None:
    """Print an RFC 9162 consistency proof from an earlier size to the current head (JSON)."""
    with opened(home, db_url, redis_url) as app:
        head = app.log.head()
        if old_size > head.size:
            raise EngineError(f"the log holds {head.size} leaves, fewer than {old_size}")
        proof = app.log.consistency_proof(old_size)
    click.echo(
        json.dumps(
            {"old_size": old_size, "new": head.checkpoint(), "proof": [h.hex() for h in proof]},
            indent=2,
        )
    )


@main.command()
@instance_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes."
)
@handled
def serve(
    home: str | None, db_url: str | None, redis_url: str | None, host: str, port: int, workers: int
) -> None:
    """Serve the HTTP API (POST /v1/ratings, POST /v1/ratings:batch, GET /healthz, and the
    auditors' /v1/audit/batches).

    The OpenAPI schema is at /openapi.json, interactive docs at /docs. With --workers N,
    N processes share the ledger and the limiter; use PostgreSQL and Redis for that (the
    embedded SQLite file and in-process limiter are for one process).
    """
    import os

    import uvicorn

    from integrity.bootstrap import asgi_app

    settings = settings_from(home, db_url, redis_url)
    if workers > 1:
        if settings.embedded_db or settings.limiter_url.startswith("memory"):
            raise EngineError(
                "--workers needs --db postgresql://... and --redis redis://... (shared state)"
            )
        os.environ.update(
            INTEGRITY_HOME=str(settings.home),
            INTEGRITY_DB=settings.db_url,
            INTEGRITY_REDIS=settings.limiter_url,
            INTEGRITY_SECRET_FILE=str(settings.secret_file),
            INTEGRITY_NAMESPACE=settings.namespace,
        )
        uvicorn.run(
            "integrity.bootstrap:asgi_app", factory=True, host=host, port=port, workers=workers
        )
        return
    with opened(home, db_url, redis_url) as app:
        uvicorn.run(asgi_app(app), host=host, port=port, log_level="info")


@main.command()
@click.option(
    "--home",
    default=".integrity-demo",
    show_default=True,
    metavar="DIR",
    help="Fresh instance folder for the demo (replaced).",
)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--days", default=30, show_default=True, type=int)
@handled
def demo(home: str, seed: int, days: int) -> None:
    """Simulate a month of ratings for a few halls, with attacks, and show what was stopped.

    Runs on embedded defaults (SQLite, in-process limiter) in a fresh instance folder.
    """
    from simulation.demo import run_demo

    run_demo(home, seed=seed, days=days, echo=click.echo)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


# Command groups that live in their packages.
main.add_command(detect_command)
main.add_command(review_group)
main.add_command(audit_group)
main.add_command(appeal_group)
main.add_command(staff_group)

if __name__ == "__main__":
    main()
