"""Shared plumbing for every command group: the instance, error mapping, progress.

The root group (``cli.py``) puts an :class:`Instance` on click's context; every
command reaches the engine through it, so no command builds settings, adapters or
services itself. ``--home``, ``--db`` and ``--redis`` are accepted on the root group
and again on every command that opens the instance (``integrity --db URL report`` and
``integrity report --db URL`` alike); the environment (``INTEGRITY_HOME``,
``INTEGRITY_DB``, ``INTEGRITY_REDIS``) fills in what neither gives. The App opens on
first use and closes when the command ends (sealing what it wrote).

Exit status: 0 success, 1 a handled error with one line on stderr, 2 bad usage.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from integrity.app import App, Settings
from integrity.errors import EngineError, InvalidInput
from integrity.render import FORMATS

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class Instance:
    """The instance a command runs against, opened on first use (click's context object).

    ``opener`` is the composition root's ``open_app``; commands never see it.
    """

    def __init__(self, opener: Callable[[Settings], App]) -> None:
        self.opener = opener
        self.options: dict[str, str] = {}
        self._app: App | None = None

    @property
    def settings(self) -> Settings:
        o = self.options
        return Settings.resolve(home=o.get("home"), db=o.get("db"), redis=o.get("redis"))

    def app(self) -> App:
        if self._app is None:
            self._app = self.opener(self.settings)
            click.get_current_context().call_on_close(self.close)
        return self._app

    def get(self, kind: type[T]) -> T:
        return self.app().get(kind)

    def close(self) -> None:
        if self._app is not None:
            app, self._app = self._app, None
            app.close()


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None and param.name is not None:
        found = ctx.find_object(Instance)
        if found is None:  # a command group run without the root (a programming error)
            raise click.UsageError("no instance: run this command through `integrity`")
        found.options[param.name] = value


def instance_options(func: F) -> F:
    """``--home``, ``--db`` and ``--redis``: on the root group and on every command."""
    for name, metavar, text in (
        ("redis", "URL", "Rate-limit store: redis://host:6379/0 (default: the embedded "
         "in-process limiter; env INTEGRITY_REDIS)."),
        ("db", "URL", "Ledger database: postgresql://... (default: the instance's embedded "
         "SQLite file; env INTEGRITY_DB)."),
        ("home", "DIR", "Instance folder with the secret key (default: ./.integrity; env "
         "INTEGRITY_HOME)."),
    ):  # fmt: skip
        func = click.option(
            f"--{name}",
            name,
            metavar=metavar,
            help=text,
            expose_value=False,
            is_eager=True,
            callback=_remember,
        )(func)
    return func


def instance() -> Instance:
    """The current command's instance."""
    found = click.get_current_context().find_object(Instance)
    if found is None:  # a command group run without the root (a programming error)
        raise click.UsageError("no instance: run this command through `integrity`")
    return found


def pass_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Call the command with the opened :class:`App` as its first argument."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(instance().app(), *args, **kwargs)

    return wrapper


def pass_service(kind: type[Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Call the command with the service of type ``kind`` as its first argument."""

    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(instance().get(kind), *args, **kwargs)

        return wrapper

    return deco


def format_option(default: str = "table", choices: tuple[str, ...] = FORMATS) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


class EngineGroup(click.Group):
    """The root group: it puts an :class:`Instance` (opened with ``opener``) on the
    context, and its commands' engine errors end as one line on stderr and exit 1."""

    def __init__(self, *args: Any, opener: Callable[[Settings], App], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opener = opener

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        extra.setdefault("obj", Instance(self.opener))
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InvalidInput as err:
            click.echo(f"error: {err.summary()}", err=True)
            sys.exit(1)
        except EngineError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)


@contextmanager
def progress(label: str, lines: bool = False) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise. With ``lines``,
    one plain line per step instead (``{label}: {total} ratings committed``), for logs."""
    if lines:
        total = 0

        def line(n: int) -> None:
            nonlocal total
            total += n
            click.echo(f"{label}: {total} ratings committed", err=True)

        yield line
        return
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
