"""The core's commands: intake, venues, export, reports, the ledger, the people registry
and its credentials.

Each command parses its options, calls one service of the opened instance, renders.
``cli.py`` assembles these with the packages' groups. Reads that name staff or show
comments follow the read policy (:mod:`integrity.access`) when a person reads through
the server; the operator, directly on the database, reads everything.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from integrity.access import require_read
from integrity.app import App
from integrity.auth import CREDENTIAL_COLUMNS, OS_USER_COLUMNS, Credentials
from integrity.catalogue import describe
from integrity.clients import CLI_CLIENT, CLIENT_COLUMNS, IntakeClients, client_rows, scope_text
from integrity.cliutil import (
    DefaultGroup,
    actor_option,
    current_actor,
    current_reader,
    format_option,
    instance_options,
    pass_app,
    pass_inspecting_app,
    pass_service,
    progress,
)
from integrity.errors import EngineError, FieldError, InvalidInput, NotFound
from integrity.people import (
    ROLES,
    STAFF_COLUMNS,
    StaffRecord,
    StaffRegistry,
    guess_format,
    parse_staff_file,
    people_rows,
    sniff_format,
)
from integrity.registry import (
    REGISTRY_COLUMNS,
    RegistryService,
    read_registry_csv,
    read_registry_json,
    registry_rows,
)
from integrity.render import dump_json, render
from integrity.reports import GROUPS, Report, ReportService


def _out() -> Any:
    return sys.stdout


@click.command()
@instance_options
@pass_app
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--live",
    is_flag=True,
    help="Judge at the time of receipt instead of each rating's submitted_at.",
)
@click.option(
    "--progress",
    "progress_lines",
    is_flag=True,
    help="Write a line to stderr after every chunk written to the ledger (for logs), "
    "instead of a progress bar on a terminal.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    metavar="N",
    help="Ratings per transaction (one chunk: judged together, written together or not at all).",
)
@click.option(
    "--client",
    "client_id",
    default=CLI_CLIENT,
    show_default=True,
    metavar="NAME",
    help="The intake client recorded as the ratings' sender: a registered client "
    "(integrity clients list) whose history this is, or 'cli'.",
)
@format_option()
def ingest(
    app: App, file: Any, live: bool, progress_lines: bool, chunk: int, client_id: str, fmt: str
) -> None:
    """Run every rating in a JSON Lines FILE (- for stdin) through the validation hook.

    Ratings are judged in order, each at its own submitted_at (replay), so a month of
    history is decided as if it had arrived live. Lines that do not parse are refused
    with field-level errors on stderr and written nowhere; the exit status is then 1.

    Ratings are written in chunks, one transaction each. After a crash or a kill, run
    the same file again: what was written is answered as identical retries, and the
    rest is decided exactly as an uninterrupted run would have (the in-process limiter
    rebuilds its counters from the ledger).

    Every rating records the client that sent it (--client).
    """
    from integrity.ingest import ingest_file

    if client_id != CLI_CLIENT and not app.get(IntakeClients).known(client_id):
        raise NotFound(f"no intake client {client_id!r} (integrity clients list), nor 'cli'")
    with progress("ingest", lines=progress_lines) as tick:
        summary = ingest_file(
            app, file, client_id=client_id, replay=not live, on_progress=tick, chunk=chunk
        )
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


@click.group()
def venues() -> None:
    """The registry of service halls (shared Wi-Fi addresses, kiosk rating pads)."""


@venues.command("load")
@instance_options
@pass_app
@click.argument("file", type=click.File("r", encoding="utf-8"))
def venues_load(app: App, file: Any) -> None:
    """Replace the venue registry with FILE (JSON); addresses and devices are pseudonymised."""
    from integrity.venues import pseudonymise_venues

    try:
        doc = json.load(file)
    except json.JSONDecodeError as err:
        raise InvalidInput(
            [FieldError("(file)", f"not valid JSON: {err}")], what="venue registry"
        ) from None
    pv = pseudonymise_venues(doc, app.pseudonymiser)
    app.ledger.replace_venues(pv.venues, pv.addresses, pv.kiosks, app.clock.now(), actor="cli")
    click.echo(
        f"{len(pv.venues)} venues, {len(pv.addresses)} address entries, {len(pv.kiosks)} kiosks loaded"
    )


@click.group()
def registry() -> None:
    """The service registry: halls (with a supervisor), windows (hall, head, service
    types) and the staff roster (who works at which window, from and to which date)."""


@registry.command("load")
@instance_options
@click.argument("file", type=click.File("r", encoding="utf-8"), required=False)
@click.option(
    "--halls", type=click.File("r", encoding="utf-8"), help="CSV: hall_id,name,supervisor"
)
@click.option(
    "--windows",
    type=click.File("r", encoding="utf-8"),
    help="CSV: window_id,hall_id,name,head,service_types (';'-separated)",
)
@click.option(
    "--roster", type=click.File("r", encoding="utf-8"), help="CSV: staff_id,window_id,from,to"
)
@pass_service(RegistryService)
def registry_load(svc: RegistryService, file: Any, halls: Any, windows: Any, roster: Any) -> None:
    """Replace the registry with FILE (JSON: {"halls": [...], "windows": [...], "roster":
    [...]}) or with CSV files (--halls, --windows, --roster). All or nothing: every
    problem is listed and nothing changes.

    Once a registry is loaded, a rating at a window it does not know is held
    (unknown_window), and one naming staff not on that window's roster that day is
    flagged (staff_not_on_roster); the rule set's [registry] table sets both actions.
    """
    if file is not None and (halls or windows or roster):
        raise click.UsageError(
            "give FILE (JSON) or CSV files (--halls/--windows/--roster), not both"
        )
    if file is not None:
        reg = read_registry_json(file.read())
    elif halls or windows or roster:
        reg = read_registry_csv(
            halls.read() if halls else None,
            windows.read() if windows else None,
            roster.read() if roster else None,
        )
    else:
        raise click.UsageError("give FILE (JSON) or CSV files (--halls/--windows/--roster)")
    event_id, missing = svc.load(reg, actor="operator")
    click.echo(
        f"{len(reg.halls)} halls, {len(reg.windows)} windows, {len(reg.roster)} roster "
        f"entries loaded (event {event_id})"
    )
    if missing:
        click.echo(
            "note: not in the people registry yet (they cannot act until added with "
            f"`integrity staff add`): {', '.join(missing)}",
            err=True,
        )


@registry.command("show")
@instance_options
@format_option()
@pass_service(RegistryService)
def registry_show(svc: RegistryService, fmt: str) -> None:
    """One row per window: its hall and supervisor, head, service types and roster."""
    reg = svc.current()
    if not reg.loaded:
        click.echo("no registry loaded (`integrity registry load FILE`)", err=True)
    render(registry_rows(reg), REGISTRY_COLUMNS, fmt, sys.stdout)


@click.group()
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
@click.option(
    "--client",
    "client_id",
    metavar="NAME",
    help="Only the ratings this intake client sent (cli: ingested; open: open intake).",
)
@click.option(
    "--with-comments",
    is_flag=True,
    help="Add the citizens' free-text comments (the operator, or through the server the "
    "admin, reviewer or supervisor role).",
)
@pass_service(ReportService)
def export_ratings(
    svc: ReportService, fmt: str, output: Any, client_id: str | None, with_comments: bool
) -> None:
    """One row per rating in the order received: ids, window (and hall, with a service
    registry), staff, channel, times (RFC 3339 in the rule set's time zone), one score
    per rubric dimension, composite, status, counted, reasons, risk and the intake
    client that sent it (client_id).

    Through the server it needs the admin, reviewer, auditor or supervisor role.
    """
    ex = svc.export(current_reader(), with_comments=with_comments, client_id=client_id)
    render(ex.rows, ex.columns, fmt, output)


@click.group(cls=DefaultGroup, default="table")
def report() -> None:
    """Performance reports from counted ratings only: tables (the default command: `integrity
    report --by window --period 2026-10` runs `integrity report table ...`), the
    supervisor's page (`report page`, one HTML file with charts) and spreadsheet
    (`report book`)."""


@report.command("table")
@instance_options
@click.option(
    "--by",
    type=click.Choice(list(GROUPS)),
    default="window",
    show_default=True,
    help="Group by window, staff member, service type, channel or hall (hall: through "
    "the service registry).",
)
@click.option(
    "--period",
    metavar="PERIOD",
    help="A month (2026-10), quarter (2026-Q4) or ISO week (2026-W43) in the rule set's "
    "time zone (default: all time).",
)
@click.option("--from", "first", metavar="DATE", help="First day (YYYY-MM-DD), with --to.")
@click.option("--to", "last", metavar="DATE", help="Last day, included (YYYY-MM-DD).")
@click.option("--hall", metavar="HALL", help="Only ratings at this hall's windows.")
@click.option("--window", metavar="WINDOW", help="Only ratings at this window.")
@format_option()
@pass_service(ReportService)
def report_table(
    svc: ReportService,
    by: str,
    period: str | None,
    first: str | None,
    last: str | None,
    hall: str | None,
    window: str | None,
    fmt: str,
) -> None:
    """Performance per window, staff member, service type, channel or hall, from counted
    ratings only, ranked, against the previous period, with what was excluded and why.

    score is the mean composite of counted ratings (and one mean per rubric dimension);
    low_score_rate the share below the rubric's low mark, with its exact 95 % interval;
    rank 1 is the best score (ties share a rank); rectify marks a low_score_rate above
    the rule set's [followup] rectify_low_rate (with rectify_min_counted counted
    ratings). Groups with ratings but none counted appear with counted 0 and an empty
    score. Rows are ordered by rank, then key.
    Through the server, --by staff (it names staff) needs the admin, reviewer,
    auditor, supervisor or head role.
    """
    require_read(current_reader(), "staff_performance" if by == "staff" else "performance")
    rep = svc.report(by, svc.period(period, first, last), hall=hall, window=window)
    if fmt == "table":
        click.echo(_heading(rep))
        if not rep.rows:
            click.echo(f"note: no ratings in {_scope(rep)}", err=True)
    render(rep.records(labels=fmt == "table"), rep.columns, fmt, sys.stdout)


def _scope(rep: Report) -> str:
    where = [f"hall {rep.hall}" if rep.hall else "", f"window {rep.window}" if rep.window else ""]
    at = " at " + ", ".join(w for w in where if w) if any(where) else ""
    return (rep.period.describe() if rep.period else "all time") + at


def _heading(rep: Report) -> str:
    """The report's one-line heading in table format: what it covers and compares."""
    rule = rep.rectify_rule
    prev = f"; compared with {rep.previous.label}" if rep.previous else ""
    return (
        f"Performance by {rep.by}, {_scope(rep)}{prev}; counted ratings only; rectify: "
        f"low_score_rate above {rule.low_rate:g} with at least {rule.min_counted} counted"
    )


@click.group()
def ledger() -> None:
    """Tamper evidence: seal events into the Merkle log, checkpoint, verify."""


@ledger.command("seal")
@instance_options
@pass_inspecting_app
def ledger_seal(app: App) -> None:
    """Seal every event not yet in the log."""
    n = app.log.seal(app.clock.now())
    click.echo(f"sealed {n} event(s); {app.log.head().checkpoint()}")


@ledger.command("checkpoint")
@instance_options
@pass_inspecting_app
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also append the checkpoint line (size, root, time) to FILE; keep it off the "
    "database's host.",
)
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="URL",
    help="Also POST the checkpoint as JSON to this HTTP endpoint (repeatable).",
)
def ledger_checkpoint(app: App, out: Path | None, witnesses: tuple[str, ...]) -> None:
    """Seal, record and print the log's size and root hash for auditors to keep.

    A checkpoint proves something only where a forger with write access to the
    database cannot rewrite it: print it, append it to a file on another host (--out),
    send it to a witness (--witness), or sign the file with your own tool (minisign,
    gpg). `integrity ledger verify --checkpoints FILE` checks every line of such a file.
    """
    from integrity.checkpoints import checkpoint_and_keep

    kept = checkpoint_and_keep(app.log, app.clock.now(), out, witnesses)
    click.echo(kept.head.checkpoint())
    if kept.file is not None:
        click.echo(f"appended to {kept.file}", err=True)
    for url, status in kept.witnesses:
        click.echo(f"witness {url}: HTTP {status}", err=True)


@ledger.command("verify")
@instance_options
@pass_inspecting_app
@click.option(
    "--checkpoint",
    "checkpoint",
    metavar="TEXT",
    help="A checkpoint printed earlier: prove the ledger still extends it.",
)
@click.option(
    "--checkpoints",
    "checkpoint_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A file of checkpoints (from `ledger checkpoint --out`): prove the ledger "
    "extends every one.",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Also fail (exit 1) if any event is not sealed yet: for a scheduled verify right "
    "after `ledger seal`.",
)
def ledger_verify(
    app: App, checkpoint: str | None, checkpoint_file: Path | None, strict: bool
) -> None:
    """Recompute the log from the ledger's rows; report any edited, inserted or deleted
    row, any configuration table (rule sets, people, venues, registry, audit batches)
    that differs from its seal, and any recorded checkpoint that is gone.

    Events not yet sealed are listed as a warning: they carry no tamper evidence until
    sealed. With --strict they fail the verification.
    """
    from integrity.checkpoints import read_checkpoint_file
    from integrity.merkle import format_checkpoint

    external = read_checkpoint_file(checkpoint_file) if checkpoint_file else []
    try:
        rep = app.log.verify(app.clock.now(), checkpoint=checkpoint, external=external)
    except ValueError as err:
        raise EngineError(f"bad checkpoint: {err}") from None
    for w in rep.warnings:
        click.echo(f"warning: {w}", err=True)
    if not rep.ok:
        for p in rep.problems:
            click.echo(f"TAMPERED: {p}")
        click.echo(f"error: ledger verification failed ({len(rep.problems)} problem(s))", err=True)
        sys.exit(1)
    if strict and rep.unsealed:
        click.echo(
            f"error: {rep.unsealed} event(s) not sealed (--strict); run `integrity ledger seal` "
            "first, or find out who inserted them",
            err=True,
        )
        sys.exit(1)
    checked = f"; {len(external)} checkpoint(s) from {checkpoint_file} hold" if external else ""
    click.echo(
        f"ok: {format_checkpoint(rep.size, rep.root)} ({rep.unsealed} event(s) not yet "
        f"sealed{checked})"
    )


@ledger.command("prove")
@instance_options
@pass_inspecting_app
@click.option(
    "--from",
    "old_size",
    type=click.IntRange(min=0),
    required=True,
    help="Size of the earlier checkpoint.",
)
def ledger_prove(app: App, old_size: int) -> None:
    """Print an RFC 9162 consistency proof from an earlier size to the current head (JSON)."""
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


# -- staff ------------------------------------------------------------------------------


@click.group("staff")
def staff() -> None:
    """The staff registry: people, units, windows and roles, and how they sign in.

    Changing it needs an admin signed in (a personal token or a mapped OS account).
    To start an instance, the first admin may be added while the registry has no
    admin, and be given a way to sign in while no admin has one; either sign in
    as your OS account on this host:

    \b
        integrity staff add A1 --role admin --unit HQ --os-user "$(id -un)"

    or with a token (printed once):

    \b
        integrity staff add A1 --role admin --unit HQ
        integrity staff token issue A1
    """


def _registry(app: App) -> StaffRegistry:
    return app.get(StaffRegistry)


@staff.command("add")
@instance_options
@pass_app
@actor_option
@click.argument("person_id")
@click.option("--name", default="", help="Display name.")
@click.option(
    "--unit", default="", help="Organisational unit (reviewers never review their own unit)."
)
@click.option(
    "--window", "windows", multiple=True, help="A service window the person serves at (repeatable)."
)
@click.option(
    "--role",
    "roles",
    multiple=True,
    type=click.Choice(ROLES),
    help="A role (repeatable; default: staff).",
)
@click.option(
    "--inactive", is_flag=True, help="Register as inactive (holds no role until reactivated)."
)
@click.option("--update", is_flag=True, help="Replace an existing person's record.")
@click.option(
    "--os-user",
    "os_users",
    multiple=True,
    metavar="ACCOUNT",
    help="An OS account of this host that signs this person in (repeatable).",
)
@format_option()
def staff_add(
    app: App,
    actor: str | None,
    person_id: str,
    name: str,
    unit: str,
    windows: tuple[str, ...],
    roles: tuple[str, ...],
    inactive: bool,
    update: bool,
    os_users: tuple[str, ...],
    fmt: str,
) -> None:
    """Add PERSON_ID to the registry (admins; or anyone while there is no admin yet, if
    the person added is an admin)."""
    rec = StaffRecord(
        person_id=person_id,
        roles=frozenset(roles or ("staff",)),
        name=name,
        unit=unit,
        windows=tuple(windows),
        active=not inactive,
    )
    p = _registry(app).add(current_actor(actor), rec, update=update, os_users=os_users)
    if fmt == "table":
        click.echo(f"{'updated' if update else 'added'} {p.person_id}")
    render(people_rows([p]), STAFF_COLUMNS, fmt, _out())


@staff.command("import")
@instance_options
@pass_app
@actor_option
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--input-format",
    type=click.Choice(["csv", "jsonl"]),
    help="Format of FILE (default: from its extension .csv / .jsonl).",
)
@format_option()
def staff_import(
    app: App,
    actor: str | None,
    file: Any,
    input_format: str | None,
    fmt: str,
) -> None:
    """Add or update people from FILE (- for stdin): CSV with a header
    person_id,name,unit,roles,windows,active (lists ';'-separated) or JSON Lines
    (told by the extension, else by the content). All or nothing: one bad line and
    nothing is written; every problem is printed on its own line."""
    text = file.read()
    kind = input_format or guess_format(getattr(file, "name", "") or "") or sniff_format(text)
    if kind is None:
        raise click.UsageError("cannot tell the file's format; say --input-format csv|jsonl")
    try:
        records = parse_staff_file(text, kind)
        res = _registry(app).import_records(current_actor(actor), records)
    except InvalidInput as err:  # one line per problem, so a long list stays readable
        for e in err.errors:
            click.echo(f"{e.field}: {e.message}", err=True)
        click.echo(
            f"error: invalid {err.what}: {len(err.errors)} problem(s); nothing was written",
            err=True,
        )
        sys.exit(1)
    rows = (
        [{"person_id": p, "change": "added"} for p in res.added]
        + [{"person_id": p, "change": "updated"} for p in res.updated]
        + [{"person_id": p, "change": "unchanged"} for p in res.unchanged]
    )
    if fmt == "table":
        click.echo(
            f"{len(res.added)} added, {len(res.updated)} updated, {len(res.unchanged)} unchanged"
        )
    render(rows, ["person_id", "change"], fmt, _out())


@staff.command("list")
@instance_options
@pass_app
@actor_option
@click.option("--role", type=click.Choice(ROLES), help="Only people holding this role.")
@click.option("--unit", help="Only people of this unit.")
@click.option("--window", help="Only people serving at this window.")
@click.option("--all", "include_inactive", is_flag=True, help="Include inactive people.")
@format_option()
def staff_list(
    app: App,
    actor: str | None,
    role: str | None,
    unit: str | None,
    window: str | None,
    include_inactive: bool,
    fmt: str,
) -> None:
    """List the registry (admins, reviewers and auditors)."""
    people = _registry(app).list(
        current_actor(actor),
        role=role,
        unit=unit,
        window=window,
        include_inactive=include_inactive,
    )
    render(people_rows(people), STAFF_COLUMNS, fmt, _out())


@staff.command("map-os-user")
@instance_options
@actor_option
@click.argument("account")
@click.argument("person_id")
@format_option()
@pass_service(Credentials)
def staff_map_os_user(
    svc: Credentials, actor: str | None, account: str, person_id: str, fmt: str
) -> None:
    """Map the OS ACCOUNT of this host to PERSON_ID: on this host, the CLI signs them
    in from the real uid (admins; while no admin can sign in, the operator may map an
    admin's account)."""
    changed = svc.map_os_user(current_actor(actor), account, person_id)
    row = {"os_user": account, "person_id": person_id, "changed": changed}
    render([row], ["os_user", "person_id", "changed"], fmt, _out())


@staff.command("unmap-os-user")
@instance_options
@actor_option
@click.argument("account")
@format_option()
@pass_service(Credentials)
def staff_unmap_os_user(svc: Credentials, actor: str | None, account: str, fmt: str) -> None:
    """Remove the mapping of the OS ACCOUNT (admins): it signs nobody in any more."""
    was = svc.unmap_os_user(current_actor(actor), account)
    render([{"os_user": account, "person_id": was}], ["os_user", "person_id"], fmt, _out())


@staff.command("os-users")
@instance_options
@actor_option
@format_option()
@pass_service(Credentials)
def staff_os_users(svc: Credentials, actor: str | None, fmt: str) -> None:
    """OS accounts and the people they sign in (admins)."""
    render(svc.os_users(current_actor(actor)), OS_USER_COLUMNS, fmt, _out())


@staff.group("token")
def staff_token() -> None:
    """Personal tokens: issue (admins), list and revoke (admins, or your own).

    A token signs its person in: INTEGRITY_TOKEN, a token file readable by its owner
    alone (--token-file; default ~/.config/integrity/token), or
    `Authorization: Bearer TOKEN` over HTTP and `integrity --server URL`.
    """


@staff_token.command("issue")
@instance_options
@actor_option
@click.argument("person_id")
@click.option(
    "--expires",
    metavar="WHEN",
    help="90d, 12h, 2w, YYYY-MM-DD (valid through that day) or an RFC 3339 time "
    "(default: 90 days; at most 366).",
)
@click.option("--note", default="", help="What the token is for (e.g. 'laptop').")
@format_option(choices=("table", "json"))
@pass_service(Credentials)
def staff_token_issue(
    svc: Credentials,
    actor: str | None,
    person_id: str,
    expires: str | None,
    note: str,
    fmt: str,
) -> None:
    """Issue a token to PERSON_ID; it is printed once, alone on the last line of the
    output (the rest goes to stderr), so

    \b
        (umask 077; integrity staff token issue P1 > token)

    keeps it in a private file. Admins; while no admin can sign in, the operator may
    issue one to an admin (bootstrap). Only its SHA-256 is kept.
    """
    issued = svc.issue(current_actor(actor), person_id, expires=expires, note=note)
    c = issued.credential
    if fmt == "json":
        dump_json({**c.row(c.created_at), "token": issued.token}, _out())
        return
    click.echo(
        f"token {c.credential_id} for {c.person_id}, expires {c.expires_at.isoformat()} "
        "(shown once; keep it in ~/.config/integrity/token, mode 600):",
        err=True,
    )
    click.echo(issued.token)


@staff_token.command("list")
@instance_options
@actor_option
@click.argument("person_id", required=False)
@format_option()
@pass_service(Credentials)
def staff_token_list(svc: Credentials, actor: str | None, person_id: str | None, fmt: str) -> None:
    """Tokens (of PERSON_ID) with their state: active, expired or revoked (admins see
    everyone's; others their own). Never the tokens themselves."""
    now = svc.clock.now()
    rows = [c.row(now) for c in svc.tokens(current_actor(actor), person_id)]
    render(rows, CREDENTIAL_COLUMNS, fmt, _out())


@staff_token.command("revoke")
@instance_options
@actor_option
@click.argument("token_id", type=int)
@format_option()
@pass_service(Credentials)
def staff_token_revoke(svc: Credentials, actor: str | None, token_id: int, fmt: str) -> None:
    """Revoke token TOKEN_ID (admins, or its owner): it signs nobody in any more."""
    c = svc.revoke(current_actor(actor), token_id)
    if fmt == "table":
        click.echo(f"token {c.credential_id} of {c.person_id} revoked")
    render([c.row(svc.clock.now())], CREDENTIAL_COLUMNS, fmt, _out())


# -- intake clients -----------------------------------------------------------------------


@click.group("clients")
def clients() -> None:
    """Intake clients: the services allowed to submit ratings over HTTP, one key each.

    `integrity serve` refuses intake without a valid key (401) and a rating for a
    window outside the client's scope (403). A key is printed once, alone on the last
    line of `add` and `rotate` (KEY=$(integrity clients add kiosk-gw | tail -1)); only
    its SHA-256 is stored. Operator commands: they need the database, not a role.
    """


def _issued(verb: str, client: Any, key: str, notes: list[str]) -> None:
    expires = client.expires_at.isoformat() if client.expires_at else "never"
    click.echo(f"{verb} intake client {client.name} (key id {client.key_id})")
    click.echo(f"scope: {scope_text(client)}; expires: {expires}")
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo("the key below is shown once; send it as: Authorization: Bearer KEY")
    click.echo(key)


@clients.command("add")
@instance_options
@click.argument("name")
@click.option(
    "--hall", "halls", multiple=True, metavar="HALL", help="Only windows of this hall (repeatable)."
)
@click.option(
    "--window", "windows", multiple=True, metavar="WINDOW", help="Only this window (repeatable)."
)
@click.option(
    "--expires",
    metavar="DAYS|DATE",
    help="The key stops working after DAYS days, or after the day DATE (YYYY-MM-DD, in "
    "the rule set's time zone). Default: never.",
)
@pass_service(IntakeClients)
def clients_add(
    svc: IntakeClients,
    name: str,
    halls: tuple[str, ...],
    windows: tuple[str, ...],
    expires: str | None,
) -> None:
    """Register the intake client NAME and print its key (once, on the last line).

    With --hall or --window the client may submit only for those windows (a hall's
    windows come from the service registry: a hall-scoped client cannot submit while
    none is loaded); without, for any window.
    """
    client, key = svc.add(name, halls=halls, windows=windows, expires=expires)
    unknown = svc.unknown_scope(client)
    notes = [f"not in the loaded service registry: {', '.join(unknown)}"] if unknown else []
    _issued("added", client, key, notes)


@clients.command("list")
@instance_options
@format_option()
@pass_app
def clients_list(app: App, fmt: str) -> None:
    """Every intake client: state (active, expired, revoked), scope, key id and dates.
    Never a key."""
    rows = client_rows(app.get(IntakeClients).all(), app.clock.now())
    render(rows, CLIENT_COLUMNS, fmt, _out())


@clients.command("rotate")
@instance_options
@click.argument("name")
@pass_service(IntakeClients)
def clients_rotate(svc: IntakeClients, name: str) -> None:
    """Give NAME a new key (printed once, on the last line); the old key stops working
    (at once here, within a few seconds in running servers)."""
    client, key = svc.rotate(name)
    _issued("rotated", client, key, [])


@clients.command("revoke")
@instance_options
@click.argument("name")
@pass_service(IntakeClients)
def clients_revoke(svc: IntakeClients, name: str) -> None:
    """Revoke NAME for good: its key stops working (within a few seconds in running
    servers); the ratings it sent stay, attributed to it."""
    client = svc.revoke(name)
    click.echo(f"revoked intake client {client.name} (key id {client.key_id})")


@click.command()
@click.argument("code")
def explain(code: str) -> None:
    """Print what a reason code (duplicate_ticket, outlier.burst ...) or an event kind
    (decision, void, appeal.upheld ...) means."""
    try:
        click.echo(f"{code}: {describe(code)}")
    except KeyError:
        raise EngineError(f"{code!r} is neither a reason code nor an event kind") from None


@click.group()
def tickets() -> None:
    """Service records from the queue system (which window served a ticket, who, when),
    and the ratings held waiting for them."""


@tickets.command("load")
@instance_options
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option(
    "--input-format",
    type=click.Choice(["csv", "jsonl"]),
    help="Format of FILE (default: from its extension .csv / .jsonl, else its first line).",
)
@click.option(
    "--client",
    "client_id",
    default=CLI_CLIENT,
    show_default=True,
    metavar="NAME",
    help="The intake client recorded as the records' sender: a registered client "
    "(integrity clients list), or 'cli'.",
)
@format_option()
@pass_app
def tickets_load(app: App, file: Any, input_format: str | None, client_id: str, fmt: str) -> None:
    """Record service records from FILE (- for stdin): JSON Lines, or CSV with a header
    ticket_id,window_id,staff_id,served_at (staff_id optional; served_at RFC 3339 with
    offset).

    A record already known is skipped (loading a file again changes nothing); a
    different record for a known ticket, or a line that does not parse, is refused
    with field-level errors on stderr and the exit status is 1. Records are written in
    chunks, one transaction each, and ratings held waiting for these tickets
    (unknown_ticket) are judged again in the same transaction: a matching record lets
    the rating count, a different window or staff member holds it as ticket_mismatch.
    """
    from integrity.tickets import ServiceRecords, guess_format, read_lines

    if client_id != CLI_CLIENT and not app.get(IntakeClients).known(client_id):
        raise NotFound(f"no intake client {client_id!r} (integrity clients list), nor 'cli'")
    kind = input_format or guess_format(getattr(file, "name", "") or "")
    with progress("tickets", lines=False) as tick:
        summary = app.get(ServiceRecords).load(
            read_lines(file, kind), client_id=client_id, on_progress=tick
        )
    for line, err in summary.errors:
        click.echo(f"line {line}: {err.summary()}", err=True)
    doc = summary.as_dict()
    if fmt == "json":
        dump_json(doc, _out())
    else:
        click.echo(
            f"{doc['lines']} lines: {doc['recorded']} recorded, {doc['known']} already known, "
            f"{doc['refused']} refused"
        )
        rows = [{"ratings": k, "count": v} for k, v in doc["ratings"].items() if k != "rejected"]
        render(rows, ["ratings", "count"], fmt, _out())
    if summary.refused:
        click.echo(
            f"error: {summary.refused} line(s) refused; nothing was written for them", err=True
        )
        sys.exit(1)


@tickets.command("settle")
@instance_options
@format_option()
@pass_app
def tickets_settle(app: App, fmt: str) -> None:
    """Reject the ratings held unknown_ticket whose wait ([tickets] wait_hours, 72 by
    default) ran out with no record of their ticket; judge again those whose record
    has arrived meanwhile. `integrity serve` does this in its background round."""
    from integrity.tickets import ServiceRecords

    done = app.get(ServiceRecords).settle(app.clock.now()).as_dict()
    if fmt == "json":
        dump_json(done, _out())
        return
    render([{"ratings": k, "count": v} for k, v in done.items()], ["ratings", "count"], fmt, _out())


@click.command()
@instance_options
@click.argument("code")
@format_option()
@pass_app
def receipt(app: App, code: str, fmt: str) -> None:
    """Print what a rater's receipt CODE says (what GET /v1/receipts/CODE answers):
    whether the rating counts, waits for a check, or why it does not count, in plain
    words and without personal data; for a low score, its follow-up."""
    from integrity.receipts import ReceiptService

    found = app.get(ReceiptService).look_up(code)
    if fmt == "json":
        dump_json(found.as_dict(), _out())
        return
    render(found.rows(), ["field", "value"], fmt, _out())


#: The core's top-level commands and groups, in the order ``integrity --help`` lists them.
COMMANDS: tuple[click.Command, ...] = (
    ingest,
    venues,
    registry,
    export,
    report,
    ledger,
    staff,
    clients,
    explain,
    tickets,
    receipt,
)
