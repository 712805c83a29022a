"""Ways to make the ledger fail on purpose, for the fault tests.

:class:`CrashOn` raises a driver error from the statements that match a pattern (a
connection lost mid-transaction); :func:`run_ddl` with :data:`FAIL_TRIGGER` makes the
database itself refuse an insert into a table (after earlier statements of the same
transaction went in). Either way the transaction is rolled back and nothing is written.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import sqlalchemy as sa

from integrity.app import App

#: A ledger URL nothing answers on.
DEAD_PG = "postgresql://postgres@127.0.0.1:1/nowhere"


class CrashOn:
    """Raise a driver-level error from every statement that matches ``pattern``, after
    letting the first ``after`` matches through.

    Statements through SQLAlchemy are caught by its ``before_cursor_execute`` event; the
    ledger's bulk ``COPY`` on PostgreSQL goes straight to psycopg, so its ``Cursor.copy``
    is wrapped as well.
    """

    def __init__(self, engine: sa.Engine, pattern: str, after: int = 0) -> None:
        self.engine = engine
        self.pattern = re.compile(pattern, re.IGNORECASE)
        self.after = after
        self.seen = 0
        self.fired = 0
        sa.event.listen(engine, "before_cursor_execute", self)
        self._copy = psycopg.Cursor.copy
        crash = self

        def copy(cursor: Any, statement: Any, *args: Any, **kwargs: Any) -> Any:
            if crash._fire(str(statement)):
                raise psycopg.OperationalError("simulated crash")
            return crash._copy(cursor, statement, *args, **kwargs)

        psycopg.Cursor.copy = copy  # type: ignore[assignment,method-assign]

    def _fire(self, statement: str) -> bool:
        if not self.pattern.search(statement):
            return False
        self.seen += 1
        if self.seen <= self.after:
            return False
        self.fired += 1
        return True

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if self._fire(statement):
            raise sa.exc.OperationalError(statement, None, RuntimeError("simulated crash"))

    def remove(self) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self)
        psycopg.Cursor.copy = self._copy  # type: ignore[method-assign]

    def __enter__(self) -> CrashOn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


FAIL_TRIGGER = {
    "sqlite": [
        "CREATE TRIGGER crash BEFORE INSERT ON {table} "
        "BEGIN SELECT RAISE(ABORT, 'simulated crash'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'simulated crash'; END $$",
        "CREATE TRIGGER crash BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION crash()",
    ],
}
DROP_TRIGGER = {
    "sqlite": ["DROP TRIGGER crash"],
    "postgresql": ["DROP TRIGGER crash ON {table}", "DROP FUNCTION crash()"],
}


def run_ddl(app: App, statements: list[str], table: str) -> None:
    with app.ledger.engine.begin() as conn:
        for s in statements:
            conn.exec_driver_sql(s.format(table=table))
