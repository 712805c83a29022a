"""Servers the tests start as real processes, and how tests wait for them without sleeping:
every line a process writes is read as it comes, and a test blocks on the line it needs."""

from __future__ import annotations

import os
import queue
import select
import subprocess
import threading
from pathlib import Path
from typing import IO

import pytest


class Output:
    """The lines a process writes to ``stream`` (its stdout, with stderr merged into it)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.lines.put(raw.decode(errors="replace"))
        self.lines.put(None)

    def wait_for(self, text: str, times: int = 1, what: str = "process") -> None:
        """Block until ``text`` was written ``times`` times; fail if the process exits
        first (or writes nothing for a minute: it hangs)."""
        seen: list[str] = []
        while times > 0:
            try:
                line = self.lines.get(timeout=60)
            except queue.Empty:
                pytest.fail(f"{what} never wrote {text!r}:\n" + "".join(seen[-50:]))
            if line is None:
                pytest.fail(f"{what} exited before writing {text!r}:\n" + "".join(seen[-50:]))
            seen.append(line)
            times -= text in line


def start(args: list[str], **kwargs: object) -> tuple[subprocess.Popen[bytes], Output]:
    """Start ``args`` with stdout and stderr captured line by line."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]
    assert proc.stdout is not None
    return proc, Output(proc.stdout)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        if int(text.rsplit(")", 1)[1].split()[1]) == pid:  # after "pid (comm) state"
            kids.append(int(stat.parent.name))
    return kids


def wait_until_dead(pids: list[int], timeout: float = 30) -> bool:
    """Block until every process in ``pids`` has ended (a pidfd turns readable when it
    does: no polling); ``False`` if one still runs after ``timeout`` seconds."""
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
        finally:
            os.close(fd)
        if not ready:
            return False
    return True
