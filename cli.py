"""``integrity``: the command line. It assembles the command groups and wires nothing else.

The root group takes ``--home``, ``--db`` and ``--redis`` (every command takes them
too) and puts an :class:`~integrity.cliutil.Instance` on click's context, opened on
first use through the composition root (``bootstrap.open_app``). The commands live
beside what they drive: the core's in ``integrity/commands.py``, the packages' in
``rules/commands.py``, ``audit_sampling/commands.py``, ``appeals/commands.py``,
``followup/commands.py``, ``publishing/commands.py`` (``report page|book`` join the
core's ``report`` group here; ``publish``).

Exit status: 0 success, 1 a handled error (one line on stderr), 2 bad usage.
"""

from __future__ import annotations

from typing import Any

import click

import bootstrap
from appeals.commands import appeal_group
from audit_sampling.commands import audit_group
from followup.commands import COMMANDS as FOLLOWUP_COMMANDS
from integrity import heap
from integrity.cliutil import EngineGroup, instance, instance_options
from integrity.commands import COMMANDS, report
from integrity.errors import EngineError
from publishing.commands import COMMANDS as PUBLISHING_COMMANDS
from publishing.commands import REPORT_COMMANDS
from rules.commands import detect_command, review_group


@click.group(
    cls=EngineGroup,
    opener=bootstrap.open_app,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="integrity-engine")
@instance_options
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
def init(rules_file: Any) -> None:
    """Create an instance: secret key, ledger schema (migrations), active rule set.

    Safe to run again: it upgrades the schema and keeps the active rule set unless
    --rules is given.
    """
    settings = instance().settings
    rs_id = bootstrap.init_instance(settings, rules_file.read() if rules_file else None)
    click.echo(f"instance {settings.home}: ledger {_safe_url(settings.db_url)}, rule set {rs_id}")


@main.command()
@instance_options
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option(
    "--workers", default=1, show_default=True, type=click.IntRange(min=1), help="Worker processes."
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="Honour X-Forwarded-For/-Proto only from this network (repeatable; default: from nobody).",
)
@click.option(
    "--limit-concurrency",
    default=1000,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections plus requests in flight per worker; beyond it new requests get 503.",
)
@click.option(
    "--header-timeout",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    metavar="SECONDS",
    help="Close (408) a connection that has not sent a whole request line and headers "
    "within this time.",
)
@click.option(
    "--open-intake",
    is_flag=True,
    help="Accept ratings without a client key, recorded as client 'open' (local trials "
    "only; logged as a warning at startup and on every such request).",
)
def serve(
    host: str,
    port: int,
    workers: int,
    trusted_proxies: tuple[str, ...],
    limit_concurrency: int,
    header_timeout: float,
    open_intake: bool,
) -> None:
    """Serve the HTTP API (POST /v1/ratings, POST /v1/ratings:batch, POST /v1/tickets,
    GET /v1/receipts/{code}, GET /healthz, the auditors' /v1/audit/batches, and POST
    /v1/commands for `integrity --server URL`).

    Intake needs an intake client's key: Authorization: Bearer KEY (integrity clients
    add). Bodies past the rule set's [http] bounds are answered 413 before they are
    read. Every 2 s a background round seals new ledger events, brings the low-score
    alerts up to date, marks and escalates alerts and rectification cases past their
    deadlines, and runs the webhook outbox (and, every [tickets] settle_every_s,
    integrity tickets settle). The OpenAPI schema is at /openapi.json, interactive docs at /docs. With
    --workers N, N processes share the ledger and the limiter; use PostgreSQL and Redis
    for that (the embedded SQLite file and in-process limiter are for one process).
    """
    import ipaddress
    import os

    from integrity.http import OPEN_WARNING, run_server, server_config

    for cidr in trusted_proxies:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise click.BadParameter(
                f"{cidr!r} is not an address or network (CIDR)", param_hint="--trusted-proxy"
            ) from None
    if open_intake:
        click.echo(f"warning: {OPEN_WARNING}", err=True)
    settings = instance().settings
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "trusted_proxies": trusted_proxies,
        "limit_concurrency": limit_concurrency,
        "header_timeout_s": header_timeout,
    }
    if workers > 1:
        if settings.embedded_db or settings.embedded_limiter:
            raise EngineError(
                "--workers needs --db postgresql://... and --redis redis://... (shared state)"
            )
        os.environ.update(
            INTEGRITY_HOME=str(settings.home),
            INTEGRITY_DB=settings.db_url,
            INTEGRITY_REDIS=settings.limiter_url,
            INTEGRITY_SECRET_FILE=str(settings.secret_file),
            INTEGRITY_NAMESPACE=settings.namespace,
            INTEGRITY_OPEN_INTAKE="1" if open_intake else "0",
        )
        run_server(server_config("bootstrap:asgi_app", **options))
        return
    root = click.get_current_context().find_root().command
    app = bootstrap.asgi_app(instance().app(), cli_root=root, open_intake=open_intake)
    run_server(server_config(app, **options))


@main.command()
@click.option(
    "--home",
    "demo_home",
    default=".integrity-demo",
    show_default=True,
    metavar="DIR",
    help="Fresh instance folder for the demo (replaced).",
)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--days", default=30, show_default=True, type=int)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="DATE",
    help="The month's first day (default: DAYS days before today, so the month ends yesterday).",
)
def demo(demo_home: str, seed: int, days: int, start: Any) -> None:
    """Simulate a month of ratings for a few halls, with attacks, and show what was stopped.

    Runs on embedded defaults (SQLite, in-process limiter) in a fresh instance folder,
    with people to sign in as (their tokens in DIR/tokens, mode 0600), a service registry
    with Chinese hall names, and a month ending yesterday (its last ratings can still be
    appealed). The window heads answer its low-score alerts (in time, late or never;
    the overdue ones are escalated) and the latest month that ended within it is
    closed (rectification cases opened). Ends by writing the month's page (HTML) and
    spreadsheet (.xlsx) into DIR and printing the next commands, signed in.
    """
    from simulation.demo import run_demo

    run_demo(
        demo_home,
        seed=seed,
        days=days,
        start=start.date() if start is not None else None,
        echo=click.echo,
    )


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


for command in (
    *COMMANDS,
    detect_command,
    review_group,
    audit_group,
    appeal_group,
    *FOLLOWUP_COMMANDS,
    *PUBLISHING_COMMANDS,
):
    main.add_command(command)
for command in REPORT_COMMANDS:
    report.add_command(command)


def run() -> None:
    """The ``integrity`` console script: :func:`main` in a process of its own, with the
    engine's garbage collector policy (:mod:`integrity.heap`; tests call :func:`main`
    in process and keep the interpreter's defaults)."""
    heap.settle()
    main()


if __name__ == "__main__":
    run()
