"""Shared plumbing for every command group: the instance, who is acting, error mapping.

The root group (``cli.py``) puts an :class:`Instance` on click's context; every
command reaches the engine through it, so no command builds settings, adapters or
services itself. ``--home``, ``--db`` and ``--redis`` are accepted on the root group
and again on every command that opens the instance (``integrity --db URL report`` and
``integrity report --db URL`` alike); the environment (``INTEGRITY_HOME``,
``INTEGRITY_DB``, ``INTEGRITY_REDIS``) fills in what neither gives. The App opens on
first use and closes when the command ends (sealing what it wrote).

Who is acting is resolved in one place, :meth:`Instance.actor`, from a credential
(:mod:`integrity.auth`), never from a typed name: commands call
:func:`current_actor` with their ``--as`` value, which is only checked against it.
The root group also takes ``--server URL`` (``INTEGRITY_SERVER``): the command then
runs on that server as the person the token names (:mod:`integrity.remote`), and
``--token-file`` (``INTEGRITY_TOKEN_FILE``).

Exit status: 0 success, 1 a handled error with one line on stderr, 2 bad usage.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from click.core import ParameterSource

from integrity import auth
from integrity.app import App, Settings
from integrity.errors import EngineError, InvalidInput, PermissionDenied
from integrity.people import NOT_SIGNED_IN, Person
from integrity.render import FORMATS

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
_UNRESOLVED = object()


class Instance:
    """The instance a command runs against, opened on first use (click's context object).

    ``opener`` is the composition root's ``open_app``; commands never see it. The
    server runs person-facing commands on a *bound* instance (:meth:`bound`): its own
    open App, and the person its bearer token named.
    """

    def __init__(self, opener: Callable[..., App]) -> None:
        self.opener = opener
        self.options: dict[str, str] = {}
        self._app: App | None = None
        self.person: Person | None = None
        self.is_bound = False
        self._identity: object = _UNRESOLVED

    @classmethod
    def bound(cls, app: App, person: Person) -> Instance:
        """The instance of a command run by the server for ``person`` on the server's
        ``app`` (which the command never closes)."""
        inst = cls(lambda _: app)
        inst._app, inst.person, inst.is_bound, inst._identity = app, person, True, person
        return inst

    def actor(self, claimed: str | None = None) -> str | None:
        """Who is acting: THE one place that says so, resolved once per command.

        Through the server: the person of the bearer token. Directly on the database: the
        person of ``INTEGRITY_TOKEN`` or the token file, else of the real OS account (if
        an admin mapped it), else nobody (``None``: the operator, who may run commands
        that need no person). ``claimed`` (``--as``) is an assertion only: if given, it
        must be that person, else ``PermissionDenied``.
        """
        if self._identity is _UNRESOLVED:
            token = auth.read_token(os.environ, self.options.get("token_file"))
            account = None if token else auth.os_user()
            self._identity = (
                auth.sign_in(self.get(auth.Credentials), token, account)
                if token or account
                else None
            )
        who = self._identity if isinstance(self._identity, Person) else None
        if claimed:
            if who is None:
                raise PermissionDenied(
                    f"--as {claimed} only checks who you are, and {NOT_SIGNED_IN}"
                )
            if claimed != who.person_id:
                raise PermissionDenied(f"you are signed in as {who.person_id}, not {claimed}")
        return who.person_id if who else None

    def reader(self) -> Person | None:
        """Whose reads the read policy (:mod:`integrity.access`) limits: the person the
        server runs a command for; ``None`` directly on the database (the operator)."""
        return self.person if self.is_bound else None

    @property
    def settings(self) -> Settings:
        o = self.options
        return Settings.resolve(home=o.get("home"), db=o.get("db"), redis=o.get("redis"))

    def app(self, inspect: bool = False) -> App:
        """The opened App; ``inspect`` opens it for the ledger's own commands (verify
        ...), which must run even when the stored configuration was tampered with."""
        if self._app is None:
            if inspect:
                self._app = self.opener(self.settings, inspect=True)
            else:
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
        if found.is_bound:
            if ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT:
                return  # the server's own environment: not the request's
            raise click.UsageError(f"--{param.name} cannot be used through the server")
        found.options[param.name.replace("-", "_")] = value


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


def pass_inspecting_app(func: Callable[..., Any]) -> Callable[..., Any]:
    """Like :func:`pass_app`, for commands that inspect the ledger (``ledger verify``):
    the App opens even when its rule set was edited in the database."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(instance().app(inspect=True), *args, **kwargs)

    return wrapper


def pass_service(kind: type[Any] | str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Call the command with the service of type ``kind`` as its first argument.

    ``kind`` may also name the type as ``"module:Class"``, imported when the command
    runs (a service whose module loads heavy libraries, so every other command starts
    without them)."""

    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return func(instance().get(resolve_type(kind)), *args, **kwargs)

        return wrapper

    return deco


def resolve_type(kind: type[Any] | str) -> type[Any]:
    """``kind`` itself, or the class a ``"module:Class"`` string names (imported now)."""
    if not isinstance(kind, str):
        return kind
    module, _, name = kind.partition(":")
    return getattr(importlib.import_module(module), name)


def format_option(default: str = "table", choices: tuple[str, ...] = FORMATS) -> Callable[[F], F]:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


class DefaultGroup(click.Group):
    """A command group with a default command, run when the first argument names none of
    the group's commands: ``integrity report --by staff`` is ``integrity report table
    --by staff``, so a command that became a group keeps every earlier invocation."""

    def __init__(self, *args: Any, default: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.default_command = default

    def resolve_default(self, args: list[str], help_names: list[str]) -> list[str]:
        """``args`` with the default command's name put first when they name none."""
        if args and (args[0] in self.commands or args[0] in help_names):
            return args
        return [self.default_command, *args]

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, self.resolve_default(args, ctx.help_option_names))


class EngineGroup(click.Group):
    """The root group: it puts an :class:`Instance` (opened with ``opener``) on the
    context, and its commands' engine errors end as one line on stderr and exit 1."""

    def __init__(self, *args: Any, opener: Callable[..., App], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opener = opener
        self.params += [
            click.Option(
                ["--server", "server"],
                metavar="URL",
                envvar="INTEGRITY_SERVER",
                expose_value=False,
                is_eager=True,
                callback=_remember,
                help="Run the command on a running `integrity serve` as the person your "
                "token names (env INTEGRITY_SERVER); no database credentials needed.",
            ),
            click.Option(
                ["--token-file", "token_file"],
                metavar="FILE",
                envvar="INTEGRITY_TOKEN_FILE",
                expose_value=False,
                is_eager=True,
                callback=_remember,
                help="Your personal token, readable by you alone (default: "
                "~/.config/integrity/token; INTEGRITY_TOKEN takes precedence).",
            ),
        ]

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
            inst = ctx.find_object(Instance)
            if inst is not None and inst.options.get("server") and not inst.is_bound:
                sys.exit(self._remote(ctx, inst))
            return super().invoke(ctx)
        except InvalidInput as err:
            click.echo(f"error: {err.summary()}", err=True)
            sys.exit(1)
        except EngineError as err:
            click.echo(f"error: {err}", err=True)
            sys.exit(1)

    def _remote(self, ctx: click.Context, inst: Instance) -> int:
        """Run the rest of the command line on ``--server`` (see :mod:`integrity.remote`)."""
        from integrity.remote import call_server

        local = sorted({"home", "db", "redis"} & set(inst.options))
        if local:
            raise click.UsageError(
                f"--{local[0]} names a local instance; with --server the server's is used"
            )
        # the command and its arguments: what the root group left unparsed
        argv = [*getattr(ctx, "_protected_args", []), *ctx.args]
        token = auth.read_token(os.environ, inst.options.get("token_file"))
        if not token:
            raise PermissionDenied(
                "--server needs your token: set INTEGRITY_TOKEN or keep it in "
                "~/.config/integrity/token (mode 600)"
            )
        return call_server(inst.options["server"], token, self, argv)


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
    """``--as PERSON_ID``: an assertion of who you are, checked against your sign-in."""
    return click.option(
        "--as",
        "actor",
        metavar="PERSON_ID",
        help="Only asserts who you are: refused unless you are signed in as PERSON_ID.",
    )(func)


def current_actor(claimed: str | None = None) -> str | None:
    """The person acting in this command (see :meth:`Instance.actor`); ``claimed`` is the
    ``--as`` assertion."""
    return instance().actor(claimed)


def current_reader() -> Person | None:
    """The person whose reads the read policy limits (``None``: the operator)."""
    return instance().reader()
