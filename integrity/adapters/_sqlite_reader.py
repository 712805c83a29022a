"""A helper process that reads SQLite queries with the ADBC driver and streams them out.

Started by :mod:`integrity.adapters.columnar`, never imported by the engine itself. The
ADBC SQLite driver carries its own copy of the SQLite library; two copies in one
process must not open the same database (POSIX locks are per process, so closing a
file in one copy drops the other's locks), hence a process of its own: to the
database it is one more reader. It reads one request (JSON on stdin: the database
path, the schema as base64 Arrow IPC, the SQL statements) and writes one Arrow IPC
stream on stdout: each statement's rows cast to the schema (text columns the schema
declares as dictionaries are dictionary-encoded here, on this process's core), then an
empty batch as the end of that statement's slice. Imports nothing of the engine, so it
starts fast.
"""

from __future__ import annotations

import base64
import json
import sys


def main() -> int:
    import adbc_driver_sqlite.dbapi as adbc_sqlite
    import pyarrow as pa
    import pyarrow.compute as pc

    req = json.loads(sys.stdin.readline())
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(req["schema"])))
    out = sys.stdout.buffer
    con = adbc_sqlite.connect(req["db"])
    try:
        with pa.ipc.new_stream(out, schema) as writer:
            for sql in req["sql"]:
                with con.cursor() as cur:
                    cur.adbc_statement.set_options(
                        **{"adbc.sqlite.query.batch_rows": str(int(req["batch_rows"]))}
                    )
                    cur.execute(sql)
                    table = cur.fetch_arrow_table()
                arrays = []
                for i, field in enumerate(schema):
                    col = table.column(i)
                    want = field.type
                    plain = want.value_type if pa.types.is_dictionary(want) else want
                    if col.type != plain:
                        # a column NULL throughout the slice comes back untyped
                        col = (
                            pa.chunked_array([pa.nulls(len(col), plain)])
                            if col.null_count == len(col)
                            else col.cast(plain)
                        )
                    if pa.types.is_dictionary(want):
                        col = pc.dictionary_encode(col.combine_chunks())
                    arrays.append(col)
                del table
                for batch in (
                    pa.Table.from_arrays(arrays, schema=schema).combine_chunks().to_batches()
                ):
                    writer.write_batch(batch)
                del arrays
                writer.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
    finally:
        con.close()
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
