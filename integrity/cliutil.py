"""Shared plumbing for command groups: instance options, error mapping, progress.

Every package's commands (``appeals/commands.py``, ...) use these so that all
commands take ``--home``/``--db``/``--redis`` alike and map errors alike: exit 1 with
one line on stderr for a handled error, 2 for bad usage (click's own).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from integrity.bootstrap import App, Settings, open_app
from integrity.errors import EngineError, InvalidInput
from integrity.render import FORMATS

F = TypeVar("F", bound=Callable[..., Any])


def instance_options(func: F) -> F:
    """``--home``, ``--db`` and ``--redis`` on every command that opens the instance."""
    func = click.option(
        "--redis",
        "redis_url",
        envvar="INTEGRITY_REDIS",
        metavar="URL",
        help="Rate-limit store: redis://host:6379/0 (default: the embedded in-process limiter).",
    )(func)
    func = click.option(
        "--db",
        "db_url",
        envvar="INTEGRITY_DB",
        metavar="URL",
        help="Ledger database: postgresql://... (default: the instance's embedded SQLite file).",
    )(func)
    func = click.option(
        "--home",
        envvar="INTEGRITY_HOME",
        metavar="DIR",
        help="Instance folder with the secret key (default: ./.integrity).",
    )(func)
    return func


def format_option(default: str = "table") -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(FORMATS),
        default=default,
        show_default=True,
        help="Output format.",
    )


def handled(func: F) -> F:
    """Map engine errors to one line on stderr and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InvalidInput as err:
            click.echo(f"error: {err.summary()}", err=True)
            sys.exit(1)
        except EngineError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def settings_from(home: str | None, db_url: str | None, redis_url: str | None) -> Settings:
    return Settings.resolve(home=home, db=db_url, redis=redis_url)


@contextmanager
def opened(home: str | None, db_url: str | None, redis_url: str | None) -> Iterator[App]:
    app = open_app(settings_from(home, db_url, redis_url))
    try:
        yield app
    finally:
        app.close()


@contextmanager
def progress(label: str) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    if not sys.stderr.isatty():
        yield lambda n: None
        return
    from tqdm import tqdm

    bar = tqdm(desc=label, unit=" ratings", file=sys.stderr)
    try:
        yield bar.update
    finally:
        bar.close()


def actor_option(func: F) -> F:
    """``--as PERSON_ID`` (or ``INTEGRITY_ACTOR``): who is acting; roles are checked."""
    return click.option(
        "--as",
        "actor",
        envvar="INTEGRITY_ACTOR",
        metavar="PERSON_ID",
        help="The registered person acting (default: $INTEGRITY_ACTOR).",
    )(func)


def current_actor(actor: str | None) -> str | None:
    return actor or os.environ.get("INTEGRITY_ACTOR")
