"""Person-facing commands through a running server: ``integrity --server URL ...``.

One code path: the client sends the command line it was given (``argv``) to
``POST /v1/commands`` with the person's token; the server runs the SAME click command
of the same CLI in-process, on its own open instance, with the identity bound from the
bearer token (:meth:`integrity.cliutil.Instance.bound`), and answers
``{"exit_code", "stdout", "stderr", "files"}``. Role checks stay where they are (the
services, and :mod:`integrity.access` for reads), so a command behaves the same
through the server as directly, except that nobody can claim to be someone else.

Only the commands in :data:`PERSON_COMMANDS` run this way; operator commands
(``init``, ``ingest``, ``serve``, ``ledger``, ``venues``, ``registry load``,
``detect`` ...) are refused (HTTP 403).

Files: :func:`plan` finds, with click's own parser, every argument of a command whose
type is a path or a file. Inputs (a ``click.Path(exists=True)`` or a file opened for
reading; ``-`` is stdin) are uploaded by the client and written by the server into a
private temporary folder; outputs (other paths, files opened for writing; ``-`` stays
stdout) are written into that folder and sent back, and the client writes them where
the command line said, with anything written beside them (``OUTPUT.manifest.json``).
A path argument the plan cannot place is refused, so a command run by the server
never reads or writes the server's own files.

Concurrency: a command writes to ``sys.stdout``/``sys.stderr``, which are one per
process, so the server runs one person command at a time (a lock around capture and
execution). Person actions are low-volume (a reviewer clears a few ratings a minute);
intake (``/v1/ratings``) never takes the lock.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

import click

from integrity.app import App
from integrity.errors import (
    BackendUnavailable,
    EngineError,
    FieldError,
    InvalidInput,
    PermissionDenied,
    Unauthenticated,
)
from integrity.people import Person

log = logging.getLogger("integrity.remote")

#: Commands a person may run through the server: group -> its allowed subcommands
#: (``None``: the whole group, or a top-level command). The services check roles
#: (``period close``: an admin; ``cases``: the window's head, the hall supervisor, admins;
#: ``alerts escalate-overdue``, ``cases escalate-overdue``: admins and supervisors).
PERSON_COMMANDS: Mapping[str, frozenset[str] | None] = {
    "appeal": None,
    "review": None,
    "audit": frozenset(
        {"pull", "record", "batches", "report", "show", "pulls", "assign", "auditors", "token"}
    ),
    "report": None,
    "export": frozenset({"ratings"}),
    "staff": frozenset({"list", "token"}),
    "explain": None,
    "alerts": None,
    "cases": None,
    "period": frozenset({"close", "show", "amendments"}),
}
#: The largest request body the server reads (uploads included), bytes.
MAX_BODY = 32 * 1024 * 1024
_LOCK = threading.Lock()
_MARK = re.compile(r"\x00(\d+)\x00")


class CommandNotAllowed(PermissionDenied):
    """The command is not one a person may run through the server (HTTP 403)."""


@dataclass(frozen=True)
class Slot:
    """One path argument of a command line: ``argv[index]``, read (``in``) or written (``out``)."""

    index: int
    direction: str
    value: str


@dataclass(frozen=True)
class Plan:
    """A command line as the server will run it: the command's path (``("review",
    "clear")``), ``argv`` normalised (``--opt=value`` split), and its path arguments."""

    path: tuple[str, ...]
    argv: list[str]
    slots: list[Slot] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        if not self.path or self.path[0] not in PERSON_COMMANDS:
            return False
        subs = PERSON_COMMANDS[self.path[0]]
        return subs is None or len(self.path) < 2 or self.path[1] in subs


def plan(root: click.Group, argv: Sequence[str]) -> Plan:
    """Which command ``argv`` runs and where its path arguments are (client and server
    compute the same plan; the server never trusts the client's)."""
    args = [str(a) for a in argv]
    path: list[str] = []
    cmd: click.Command = root
    while isinstance(cmd, click.Group) and len(path) < len(args):
        token = args[len(path)]
        sub = cmd.get_command(click.Context(cmd), token) if not token.startswith("-") else None
        default = getattr(cmd, "default_command", None)  # a DefaultGroup (integrity report)
        if sub is None and default is not None and token not in ("-h", "--help"):
            args.insert(len(path), default)  # the command it runs, so its files are planned
            continue
        if sub is None:
            break
        path.append(token)
        cmd = sub
    head, rest = args[: len(path)], args[len(path) :]
    if isinstance(cmd, click.Group) or not path:
        return Plan(tuple(path), args)
    rest = _normalise(cmd, rest)
    marked = _marked(cmd, rest)
    try:
        opts, _, _ = cmd.make_parser(click.Context(cmd, info_name=path[-1])).parse_args(marked)
    except click.UsageError:
        return Plan(tuple(path), head + rest)  # click refuses it again when it runs
    slots = []
    for param in cmd.params:
        direction = _direction(param)
        raw = opts.get(param.name or "")
        if direction is None or raw is None:
            continue
        for value in raw if isinstance(raw, (list, tuple)) else [raw]:
            m = _MARK.fullmatch(str(value))
            if m is None:
                raise InvalidInput(
                    [FieldError(param.name or "?", f"cannot send {value!r} to the server")],
                    what="command line",
                )
            i = int(m.group(1))
            if rest[i] == "-" and direction == "out":
                continue  # stdout
            slots.append(Slot(len(head) + i, direction, rest[i]))
    return Plan(tuple(path), head + rest, slots)


def _direction(param: click.Parameter) -> str | None:
    kind = param.type
    if isinstance(kind, click.File):
        return "in" if "r" in kind.mode else "out"
    if isinstance(kind, click.Path):
        return "in" if kind.exists else "out"
    return None


def _value_options(cmd: click.Command) -> dict[str, int]:
    """Option strings of ``cmd`` that take values, with how many."""
    out = {}
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.is_flag and not p.count:
            for opt in p.opts:
                out[opt] = max(p.nargs, 1)
    return out


def _normalise(cmd: click.Command, args: list[str]) -> list[str]:
    """``--opt=value`` and ``-oVALUE`` as two tokens, so every value has its own index."""
    takes = _value_options(cmd)
    out: list[str] = []
    pending = 0
    only_positional = False
    for a in args:
        if pending:
            out.append(a)
            pending -= 1
        elif only_positional or a == "--":
            only_positional = True
            out.append(a)
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in takes:
            out += a.split("=", 1)
        elif not a.startswith("--") and len(a) > 2 and a[:2] in takes:
            out += [a[:2], a[2:]]
        else:
            out.append(a)
            pending = takes.get(a, 0)
    return out


def _marked(cmd: click.Command, args: list[str]) -> list[str]:
    """``args`` with every value and positional replaced by a marker of its index."""
    takes = _value_options(cmd)
    out: list[str] = []
    pending = 0
    only_positional = False
    for i, a in enumerate(args):
        if pending or only_positional or a == "-" or not a.startswith("-"):
            out.append(f"\x00{i}\x00")
            pending = max(pending - 1, 0)
        elif a == "--":
            only_positional = True
            out.append(a)
        else:
            out.append(a)
            pending = takes.get(a, 0)
    return out


# -- the server's side ------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str
    files: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "stdout": self.stdout,
            "stderr": self.stderr,
            "files": self.files,
        }


class CommandRunner:
    """Runs person-facing commands of ``root`` (the CLI) on the server's ``app``."""

    def __init__(self, root: click.Group, app: App, max_body: int = MAX_BODY) -> None:
        self.root = root
        self.app = app
        self.max_body = max_body  # bytes of request body the endpoint reads (HTTP 413 above)

    def run(self, person: Person, argv: Sequence[str], uploads: Mapping[int, bytes]) -> Result:
        """Run ``argv`` as ``person``: ``CommandNotAllowed`` for an operator command,
        ``InvalidInput`` for a file argument that was not uploaded."""
        p = plan(self.root, argv)
        if not p.allowed:
            name = " ".join(p.path) or (p.argv[0] if p.argv else "(nothing)")
            raise CommandNotAllowed(
                f"`integrity {name}` is not available through the server (person commands: "
                f"{', '.join(sorted(PERSON_COMMANDS))}); operators run it on the host"
            )
        with tempfile.TemporaryDirectory(prefix="integrity-command-") as tmp:
            args, places = self._place(p, Path(tmp), uploads)
            code, out, err = self._invoke(person, args)
            files = []
            for slot in p.slots:
                if slot.direction != "out":
                    continue
                folder = Path(tmp, "out", str(slot.index))
                for f in sorted(x for x in folder.rglob("*") if x.is_file()):
                    files.append(
                        {
                            "slot": slot.index,
                            "path": f.relative_to(folder).as_posix(),
                            "content": base64.b64encode(f.read_bytes()).decode(),
                        }
                    )
        for sandbox, shown in places:  # the client's names, not the server's folders
            out, err = out.replace(sandbox, shown), err.replace(sandbox, shown)
        return Result(code, out, err, files)

    def _place(
        self, p: Plan, tmp: Path, uploads: Mapping[int, bytes]
    ) -> tuple[list[str], list[tuple[str, str]]]:
        args = list(p.argv)
        places: list[tuple[str, str]] = []
        for slot in p.slots:
            name = _safe_name(slot.value)
            folder = tmp / slot.direction / str(slot.index)
            folder.mkdir(parents=True)
            target = folder / name
            if slot.direction == "in":
                if slot.index not in uploads:
                    raise InvalidInput(
                        [FieldError(f"argv[{slot.index}]", f"{slot.value!r} was not uploaded")],
                        what="command",
                    )
                target.write_bytes(uploads[slot.index])
                places.append((str(target), slot.value))
            else:
                parent = str(PurePosixPath(slot.value).parent)
                places.append((str(folder) + "/", "" if parent == "." else parent + "/"))
            args[slot.index] = str(target)
        return args, places

    def _invoke(self, person: Person, args: list[str]) -> tuple[int, str, str]:
        from integrity.cliutil import Instance

        out, err = io.StringIO(), io.StringIO()
        with _LOCK:
            saved = sys.stdin, sys.stdout, sys.stderr
            sys.stdin, sys.stdout, sys.stderr = io.StringIO(""), out, err
            try:
                self.root.main(
                    args=args,
                    prog_name="integrity",
                    standalone_mode=True,
                    obj=Instance.bound(self.app, person),
                )
                code = 0
            except SystemExit as done:
                code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
            except Exception:  # a bug in a command must not take the server down
                log.exception("command %s failed", args[:2])
                err.write("error: the command failed on the server (see its log)\n")
                code = 1
            finally:
                sys.stdin, sys.stdout, sys.stderr = saved
        return code, out.getvalue(), err.getvalue()


def _safe_name(value: str) -> str:
    name = PurePosixPath(value.replace("\\", "/")).name if value != "-" else "stdin"
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100].lstrip(".")
    return name or "file"


def parse_request(body: Any) -> tuple[list[str], dict[int, bytes]]:
    """``{"argv": [str, ...], "files": {"<argv index>": "<base64>"}}``; ``InvalidInput``."""
    if not isinstance(body, dict):
        raise InvalidInput([FieldError("body", "expected a JSON object")], what="command")
    argv = body.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidInput(
            [FieldError("argv", "a non-empty array of strings is required")], what="command"
        )
    raw = body.get("files") or {}
    if not isinstance(raw, dict):
        raise InvalidInput([FieldError("files", "expected an object")], what="command")
    files: dict[int, bytes] = {}
    for key, value in raw.items():
        try:
            files[int(key)] = base64.b64decode(value, validate=True)
        except (ValueError, TypeError):
            raise InvalidInput(
                [FieldError(f"files.{key}", "an argv index and base64 content are required")],
                what="command",
            ) from None
    return argv, files


# -- the client's side ----------------------------------------------------------------------


def call_server(
    url: str,
    token: str,
    root: click.Group,
    argv: Sequence[str],
    *,
    stdin: IO[bytes] | None = None,
    timeout: float = 300.0,
) -> int:
    """Run ``argv`` on the server at ``url`` as the person ``token`` names: upload the
    input files, print what the command printed, write its output files; its exit code."""
    p = plan(root, argv)
    uploads = {}
    for slot in p.slots:
        if slot.direction != "in" or not p.allowed:  # the server refuses it (403) anyway
            continue
        if slot.value == "-":
            data = (stdin or sys.stdin.buffer).read()
        else:
            try:
                data = Path(slot.value).read_bytes()
            except OSError as err:
                raise click.UsageError(f"cannot read {slot.value}: {err.strerror}") from None
        uploads[str(slot.index)] = base64.b64encode(data).decode()
    body = json.dumps({"argv": p.argv, "files": uploads}).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/commands",
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            doc = json.load(resp)
    except urllib.error.HTTPError as err:
        raise _refusal(err) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise BackendUnavailable(f"cannot reach the server {url}: {reason}") from None
    by_index = {s.index: s for s in p.slots}
    for f in doc.get("files", []):
        target = by_index.get(int(f["slot"]))
        rel = PurePosixPath(str(f["path"]))
        if target is None or target.direction != "out" or rel.is_absolute() or ".." in rel.parts:
            raise EngineError(f"the server sent a file it was not asked for: {f['path']!r}")
        dest = Path(target.value).parent / Path(*rel.parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(base64.b64decode(f["content"]))
    sys.stdout.write(doc.get("stdout", ""))
    sys.stdout.flush()
    sys.stderr.write(doc.get("stderr", ""))
    return int(doc.get("exit_code", 1))


def _refusal(err: urllib.error.HTTPError) -> EngineError:
    try:
        detail = json.loads(err.read() or b"{}").get("detail") or err.reason
    except (ValueError, AttributeError):
        detail = err.reason
    if isinstance(detail, list):  # FastAPI's own validation errors
        detail = "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict))
    if err.code == 401:
        return Unauthenticated(f"the server did not accept your token: {detail}")
    if err.code == 403:
        return PermissionDenied(str(detail))
    if err.code == 503:
        return BackendUnavailable(f"the server is unavailable: {detail}")
    return EngineError(f"the server refused the command (HTTP {err.code}): {detail}")
