"""What a package needs to keep its own tables beside the ledger, and nothing more.

Packages (``appeals``, ``audit_sampling``, ``rules``) own tables for their own
records (appeals, audit frames, detection runs). They declare them on the one shared
:data:`metadata` (one schema, one Alembic history per package branch), write them on
the connection of a :class:`~integrity.ports.UnitOfWork` so their rows commit with
the ledger events that record them, and read them on :meth:`Ledger.reading`. They
never touch the ledger's own tables (ratings, events, status): the core's ports do.

Driver errors are translated here, once: a unique key already taken becomes
``AlreadyExists``; a server that is gone, or any other refusal of a write, becomes
``BackendUnavailable`` (nothing was written).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from integrity.errors import AlreadyExists, BackendUnavailable

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes everywhere: ``timestamptz`` on PostgreSQL, naive UTC on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ledger")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


#: A SHA-256 in hex. On PostgreSQL compared byte by byte (collation "C"): hex digits
#: sort the same in every collation, and under the database's own (``en_US.UTF-8``, or
#: even ``C.UTF-8`` before PostgreSQL 17) each comparison in their indexes, a dozen per
#: row written, goes through the C library's locale-aware ``strcoll``.
Hash = sa.String(64).with_variant(sa.String(64, collation="C"), "postgresql")
#: A keyed-hash pseudonym of an address or device (hex; collation "C" as :data:`Hash`).
Pseudonym = sa.String(32).with_variant(sa.String(32, collation="C"), "postgresql")
#: An autoincrementing id: BIGINT on PostgreSQL, INTEGER (the rowid) on SQLite.
Id = sa.BigInteger().with_variant(sa.Integer, "sqlite")


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 text: the same value always gives the same bytes."""
    # one encoder: json.dumps with these options would build a new one on every call
    return _CANONICAL.encode(value)


class Encoded(dict[str, Any]):
    """A JSON object whose canonical text (``text``, what :func:`canonical_json` gives of
    it) is already known: whoever writes many objects that share most of their values
    (a finding's evidence in thousands of hold events) encodes each value once and
    joins them with :func:`canonical_object`; the ledger writes ``text`` as it is."""

    text: str

    @classmethod
    def of(cls, value: dict[str, Any], parts: dict[str, str]) -> Encoded:
        """``value`` with its text joined from ``parts`` (each key's value, encoded)."""
        out = cls(value)
        out.text = canonical_object(parts)
        return out


#: Object keys already encoded (a writer of many objects uses the same few keys).
_KEY_TEXT: dict[str, str] = {}


def canonical_object(parts: Mapping[str, str]) -> str:
    """The canonical JSON of an object given each key's value already encoded (by
    :func:`canonical_json`): the same text as encoding the whole object at once."""
    keys = _KEY_TEXT
    out = []
    for k in sorted(parts):  # keys are unique: the order of sorting the items
        text = keys.get(k)
        if text is None:
            text = _CANONICAL.encode(k)
            if type(k) is str and len(keys) < 4096:
                keys[k] = text
        out.append(text + ":" + parts[k])
    return "{" + ",".join(out) + "}"


@contextmanager
def translate_errors() -> Iterator[None]:
    """Driver failures as engine errors: a unique key already taken -> ``AlreadyExists``;
    server gone, disk full, any other refusal -> ``BackendUnavailable``. Either way the
    transaction is rolled back."""
    try:
        yield
    except sa.exc.IntegrityError as err:
        if _unique_violation(err):
            raise AlreadyExists(f"already recorded: {_first_line(err.orig or err)}") from err
        # any other refusal (a foreign key, a trigger) is the backend failing the write
        raise BackendUnavailable(
            f"the database refused the write: {_first_line(err.orig or err)}"
        ) from err
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as err:
        raise BackendUnavailable(f"database unavailable: {err.orig or err}") from err


def _unique_violation(err: sa.exc.IntegrityError) -> bool:
    code = getattr(err.orig, "sqlstate", None)  # psycopg
    if code is not None:
        return str(code) == "23505"
    return "UNIQUE constraint failed" in str(err.orig)  # sqlite3


def _first_line(err: object) -> str:
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__


def insert_or_ignore(dialect: str, table: sa.Table, row: Mapping[str, Any]) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` on SQLite and PostgreSQL alike (add ``returning``)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).values(dict(row)).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).values(dict(row)).on_conflict_do_nothing()


def id_in(dialect: str, column: Any, ids: Iterable[int]) -> Any:
    """``column IN ids`` as one statement with one parameter however many ``ids`` there
    are (a detection run's 42,000 held ratings: one query, not 47 lists of 900 values
    compiled and bound one by one): ``= ANY(array)`` on PostgreSQL, the rows of a JSON
    array (``json_each``, built into SQLite since 3.38 and in the JSON1 extension Python
    ships before) elsewhere. An integer column only."""
    values = [int(i) for i in ids]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(sa.BigInteger)))
    each = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.Text)).table_valued(
        "value"
    )
    return column.in_(sa.select(each.c.value))
