"""Which partitions of a partitioned configuration table a write statement names
(``integrity.adapters.sql._partitions_written``), and what may be registered as one.

A statement that does not say (``None``) counts as a write to every partition, so the
answer may be ``None`` too often (only slower), never a set too small (unsound)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from audit_sampling import tables as at
from integrity.adapters.sql import _partitions_written
from integrity.config_tables import PARTITION_INFO, ConfigTables, config_subject
from integrity.sqlkit import metadata

it = at.audit_items


def named(stmt: Any, multiparams: Any = (), params: Any = None) -> set[Any] | None:
    got = _partitions_written(stmt, multiparams, params or {}, "sample_id")
    return None if got is None else set(got.values())


def test_inserts_name_the_values_they_carry() -> None:
    rows = [{"sample_id": 3, "rating_id": 1}, {"sample_id": 4, "rating_id": 2}]
    assert named(it.insert(), rows) == {3, 4}
    assert named(it.insert(), [], {"sample_id": 5, "rating_id": 1}) == {5}
    assert named(it.insert().values(sample_id=6, rating_id=1)) == {6}
    assert named(it.insert(), [{"rating_id": 1}]) is None  # no value: every partition
    assert named(it.insert().from_select(["sample_id"], sa.select(sa.literal(1)))) is None


def test_updates_and_deletes_name_their_condition_on_the_column() -> None:
    assert named(it.update().where(it.c.sample_id == 7).values(rank=1)) == {7}
    where = sa.and_(it.c.sample_id == 7, it.c.rating_id.in_([1, 2]))
    assert named(it.update().where(where).values(batch_id=None)) == {7}
    assert named(it.delete().where(it.c.sample_id.in_([8, 9]))) == {8, 9}
    by_row = it.update().where(it.c.sample_id == sa.bindparam("s")).values(rank=1)
    assert named(by_row, [{"s": 1}, {"s": 2}]) == {1, 2}


@pytest.mark.parametrize(
    "stmt",
    [
        it.update().values(rank=1),  # every row
        it.update().where(it.c.rating_id == 1).values(rank=1),  # any sample
        it.update().where(sa.or_(it.c.sample_id == 1, it.c.rating_id == 2)).values(rank=1),
        it.delete().where(it.c.sample_id > 3),
        it.delete(),
    ],
)
def test_a_write_that_does_not_name_its_partitions_counts_as_every_one(stmt: Any) -> None:
    assert named(stmt) is None


def test_moving_rows_to_another_partition_names_both() -> None:
    moved = it.update().where(it.c.sample_id == 1).values(sample_id=2)
    assert named(moved) == {1, 2}
    per_row = it.update().where(it.c.sample_id == 1)
    assert named(per_row, [{"sample_id": 2}]) is None


def test_only_the_first_key_column_may_partition_a_table() -> None:
    tables = ConfigTables(())
    tables.register(it.name)
    assert tables.partition_column(it.name) == "sample_id"
    assert tables.partition_column("people") is None
    bad = sa.Table(
        "partitioned_badly",
        metadata,
        sa.Column("a", sa.Integer, primary_key=True),
        sa.Column("b", sa.Integer, primary_key=True),
        info={PARTITION_INFO: "b"},
    )
    try:
        with pytest.raises(ValueError, match="must be the first column of its primary key"):
            tables.register(bad.name)
    finally:
        metadata.remove(bad)
    assert config_subject(it.name, ("sample_id", 12)) == "table:audit_items/sample_id=12"
