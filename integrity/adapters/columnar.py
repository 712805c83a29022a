"""Columnar reads: a ``SELECT``'s result as Arrow tables, with no Python object per value.

Detection reads a few columns of every rating; through a DBAPI cursor each value
becomes a Python object (a tuple per row, a ``str`` per hash) before it is converted
again into arrays. With an ADBC driver for the database (``adbc-driver-sqlite``,
``adbc-driver-postgresql``: Apache Arrow's database connectivity) the database's rows
go straight into Arrow columns in C, about twice as fast.

PostgreSQL: the driver runs in process. SQLite: the driver brings its own copy of the
SQLite library, and two copies must never open one database file in one process
(POSIX locks belong to the process: one copy closing the file drops the other's
locks, and the next write fails or worse). So a large read goes through helper
processes (:mod:`integrity.adapters._sqlite_reader`, two at once on two cores, each
reading every other slice) that stream Arrow IPC back; small
reads, an in-memory database, or no driver installed: the same tables are built from
DBAPI rows (same schema, same values, slower).

Each result is cast to the caller's schema: the SQLite driver infers a column's type
from the values it sees, so a slice where a text column is NULL throughout comes back as
integers; the cast makes every slice alike.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Engine

log = logging.getLogger("integrity.columnar")

#: Rows per batch of the ADBC SQLite driver, which infers column types batch by batch:
#: one batch per slice, so a NULL-only head of a batch never fixes a column's type.
_SQLITE_BATCH = 1 << 20
#: Text columns the helper process dictionary-encodes (the scan's repeated values).
_ENCODED = frozenset(
    {"window_id", "staff_id", "service_type", "ip_hash", "prefix_hash", "device_hash"}
)
#: The folder the ``integrity`` package is in, for the helper process's imports.
_ROOT = str(Path(__file__).resolve().parents[2])


def _adbc_connect(engine: Engine) -> Any | None:
    """An in-process ADBC connection (PostgreSQL only), or ``None``."""
    url = engine.url
    if url.get_backend_name() != "postgresql":
        return None
    try:
        import adbc_driver_postgresql.dbapi as adbc_pg
    except ImportError:
        return None
    uri = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        return adbc_pg.connect(uri)
    except Exception as err:
        log.warning("columnar read: no ADBC connection (%s); reading through the DBAPI cursor", err)
        return None


def _sqlite_file(engine: Engine) -> str | None:
    """The SQLite database file a helper process can open, or ``None``."""
    if engine.url.get_backend_name() != "sqlite":
        return None
    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        return None
    if importlib.util.find_spec("adbc_driver_sqlite") is None:
        return None
    return db


def _literal_sql(engine: Engine, query: sa.Select[Any]) -> str:
    """The query's SQL with its (internal, typed) values inlined, for the ADBC driver."""
    dialect: Any = engine.dialect
    if engine.url.get_backend_name() == "postgresql":
        dialect = postgresql.psycopg.dialect(paramstyle="numeric_dollar")  # no %% escapes
    return str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


class ColumnarReader:
    """Reads queries as Arrow tables of a fixed schema; use as a context manager.

    :meth:`read_all` reads several queries at once (through the SQLite helper process
    when ``bulk``), yielding one table per query in order.
    """

    def __init__(
        self, engine: Engine, schema: pa.Schema, *, use_adbc: bool = True, bulk: bool = False
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.use_adbc = use_adbc
        self.bulk = bulk
        self._adbc: Any = None
        self._conn: Any = None
        #: How the last read went: ``adbc``, ``adbc-process`` or ``dbapi``.
        self.path = "dbapi"

    def __enter__(self) -> ColumnarReader:
        if self.use_adbc:
            self._adbc = _adbc_connect(self.engine)
        if self._adbc is None:
            self._conn = self.engine.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._adbc is not None:
            self._adbc.close()
            self._adbc = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def read_all(self, queries: Sequence[sa.Select[Any]]) -> Iterator[pa.Table]:
        """Each query's rows as a table of :attr:`schema`, in order."""
        db = _sqlite_file(self.engine) if self.use_adbc and self.bulk else None
        done = 0
        if db is not None and queries:
            self.path = "adbc-process"
            try:
                for table in self._helper(db, [_literal_sql(self.engine, q) for q in queries]):
                    done += 1
                    yield table
                return
            except RuntimeError as err:
                if done:  # part of the read is already with the caller: no going back
                    raise
                log.warning("columnar read: %s; reading through the DBAPI cursor instead", err)
        for q in queries[done:]:
            yield self.read(q)

    def read(self, query: sa.Select[Any]) -> pa.Table:
        """The query's rows as a table of :attr:`schema` (its columns in that order)."""
        if self._adbc is not None:
            self.path = "adbc"
            with self._adbc.cursor() as cur:
                cur.execute(_literal_sql(self.engine, query))
                table = cur.fetch_arrow_table()
            return _conform(table, self.schema)
        assert self._conn is not None
        self.path = "dbapi"
        rows = self._conn.execute(query).cursor.fetchall()
        cols = list(zip(*rows, strict=True)) if rows else [() for _ in self.schema]
        del rows
        arrays = [
            pa.array(col, type=field.type, from_pandas=False)
            for col, field in zip(cols, self.schema, strict=True)
        ]
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def _helper(self, db: str, sql: list[str]) -> Iterator[pa.Table]:
        """Run :mod:`integrity.adapters._sqlite_reader` and read its streams slice by slice.

        The helper encodes text as dictionaries (:func:`encoded_schema`), so the tables
        yielded here carry dictionary columns where :attr:`schema` has text. With two
        slices or more and two cores, two helpers read at once, one the even slices and
        the other the odd ones (each its own reader of the database), and the slices are
        yielded in order, alternating between them. A thread per helper reads its stream
        ahead (at most a few slices), so the helpers keep reading while the caller works
        on the slice before.
        """
        wire = encoded_schema(self.schema)
        n = max(1, min(_HELPERS, os.cpu_count() or 1, len(sql)))
        helpers = [_Helper(db, wire, sql[i::n]) for i in range(n)]
        done = 0
        failure: BaseException | None = None
        try:
            for h in helpers:
                h.start()
            while done < len(sql):
                item = helpers[done % n].slices.get()
                if item is None or isinstance(item, BaseException):
                    failure = item
                    break
                done += 1
                yield item
        finally:
            errors = [h.finish(kill=done < len(sql)) for h in helpers]
        failed = [(code, err) for code, err in errors if code != 0]
        if failed or done != len(sql) or failure is not None:
            code, err = failed[0] if failed else errors[0]
            raise RuntimeError(
                f"the SQLite reader process failed (exit {code}): {err.strip() or failure}"
            )


#: Helper processes that read one bulk read's slices at once (a core each).
_HELPERS = 2


class _Helper:
    """One :mod:`integrity.adapters._sqlite_reader` process reading ``sql`` in order,
    its slices put in :attr:`slices` by a thread (``None`` after the last, or after an
    error, which is put first)."""

    def __init__(self, db: str, wire: pa.Schema, sql: list[str]) -> None:
        self.req = {
            "db": db,
            "schema": base64.b64encode(wire.serialize().to_pybytes()).decode(),
            "sql": sql,
            "batch_rows": _SQLITE_BATCH,
        }
        self.wire = wire
        self.slices: queue.Queue[pa.Table | BaseException | None] = queue.Queue(maxsize=3)
        self.proc: subprocess.Popen[bytes] | None = None
        self.reader: threading.Thread | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
        }
        self.proc = proc = subprocess.Popen(
            [sys.executable, "-m", "integrity.adapters._sqlite_reader"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        assert proc.stdin is not None
        self.reader = threading.Thread(target=self._pump, name="sqlite-reader", daemon=True)
        proc.stdin.write((json.dumps(self.req) + "\n").encode())
        proc.stdin.close()
        self.reader.start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        try:
            batches: list[pa.RecordBatch] = []
            with pa.ipc.open_stream(self.proc.stdout) as stream:
                for batch in stream:
                    if batch.num_rows:
                        batches.append(batch)
                        continue
                    self.slices.put(pa.Table.from_batches(batches, schema=self.wire))
                    batches = []
        except BaseException as err:
            self.slices.put(err)
        finally:
            self.slices.put(None)

    def finish(self, *, kill: bool) -> tuple[int, str]:
        """Wait for the process (killed first if ``kill`` and still running); its exit
        code and what it wrote on stderr."""
        proc = self.proc
        if proc is None:
            return 0, ""
        if kill and proc.poll() is None:
            proc.kill()  # the caller stopped early, or a stream broke
        reader = self.reader
        while reader is not None and reader.is_alive():  # let the pump see the end
            with suppress(queue.Empty):
                self.slices.get(timeout=0.1)
        if reader is not None:
            reader.join()
        if proc.stdout is not None:
            proc.stdout.close()
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        return proc.wait(), err


def encoded_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its text columns as dictionaries (``int32`` indices)."""
    return pa.schema(
        [
            pa.field(f.name, pa.dictionary(pa.int32(), f.type))
            if pa.types.is_string(f.type) and f.name in _ENCODED
            else f
            for f in schema
        ]
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` column by column (an all-NULL column of any type too)."""
    arrays = []
    for i, field in enumerate(schema):
        col = table.column(i)
        if col.type != field.type:
            col = (
                pa.nulls(len(col), field.type)
                if col.null_count == len(col)
                else col.cast(field.type)
            )
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


@contextmanager
def columnar(
    engine: Engine, schema: pa.Schema, *, use_adbc: bool = True, bulk: bool = False
) -> Iterator[ColumnarReader]:
    """A :class:`ColumnarReader` on ``engine``, closed afterwards."""
    with ColumnarReader(engine, schema, use_adbc=use_adbc, bulk=bulk) as reader:
        yield reader
