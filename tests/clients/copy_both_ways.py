"""COPY through real drivers against a running Cairn server (run by the end-to-end test
`hostile::copy_was_a_sqlite_syntax_error_through_the_drivers`): psycopg 3's
`cursor.copy()` both ways, psycopg2's `copy_expert`, asyncpg's `copy_records_to_table`
(binary), `copy_to_table` and `copy_from_query`; a bad row, a client's CopyFail, a COPY
inside a transaction, a client gone in the middle of its data and one that sent another
message there.

Usage: python3 copy_both_ways.py HOST PORT USER PASSWORD DATABASE
"""

import asyncio
import io
import os
import struct
import sys

try:
    import asyncpg
    import psycopg
    import psycopg2
except ImportError as missing:
    sys.exit(
        f"{missing}: the driver tests need asyncpg, psycopg 3 and psycopg2 "
        "(.ci/run installs them: pip install asyncpg 'psycopg[binary]' psycopg2-binary)"
    )

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]

ROWS = [(1, "one", True, 1.5), (2, "tab\there, new\nline", False, -2.0), (3, None, None, None)]


def with_psycopg3():
    with psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE, autocommit=True
    ) as conn:
        conn.execute("CREATE TABLE p3(id INTEGER PRIMARY KEY, s TEXT, ok BOOLEAN, x REAL)")
        cur = conn.cursor()
        with cur.copy("COPY p3 (id, s, ok, x) FROM STDIN") as copy:
            for row in ROWS:
                copy.write_row(row)
        assert cur.rowcount == 3, cur.rowcount
        got = conn.execute("SELECT id, s, ok, x FROM p3 ORDER BY id").fetchall()
        assert got == ROWS, got
        with cur.copy("COPY (SELECT id, s, ok FROM p3 ORDER BY id) TO STDOUT") as copy:
            copy.set_types(["int8", "text", "bool"])
            out = list(copy.rows())
        assert out == [r[:3] for r in ROWS], out
        # A bad row: nothing of the COPY stays, and the connection goes on.
        try:
            with cur.copy("COPY p3 (id, s) FROM STDIN") as copy:
                copy.write_row((10, "fine"))
                copy.write_row(("eleven", "bad"))
            raise AssertionError("a row with text for an integer was taken")
        except psycopg.errors.InvalidTextRepresentation as e:
            assert "eleven" in str(e), e
        assert conn.execute("SELECT count(*) FROM p3").fetchone() == (3,)
        # The client gives up (CopyFail): rolled back too.
        try:
            with cur.copy("COPY p3 (id) FROM STDIN") as copy:
                copy.write_row((20,))
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
        except psycopg.errors.QueryCanceled:
            pass
        assert conn.execute("SELECT count(*) FROM p3").fetchone() == (3,)
        # Inside a transaction: the COPY's rows are the transaction's.
        with conn.transaction():
            with cur.copy("COPY p3 (id, s) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(b'30,"a, b"\n31,\n')
            assert conn.execute("SELECT s FROM p3 WHERE id = 30").fetchone() == ("a, b",)
        assert conn.execute("SELECT count(*) FROM p3").fetchone() == (5,)
    # A client gone in the middle of its data: none of it stays. The write below waits
    # for the write lock the COPY held until its session rolled back.
    gone = psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE, autocommit=True
    )
    pgconn = gone.pgconn
    pgconn.send_query(b"COPY p3 (id) FROM STDIN")
    result = pgconn.get_result()
    assert result.status == psycopg.pq.ExecStatus.COPY_IN, result.status
    pgconn.put_copy_data(b"100\n101\n")
    pgconn.flush()
    gone.close()
    with psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE, autocommit=True
    ) as conn:
        conn.execute("INSERT INTO p3 (id) VALUES (200)")
        ids = [r[0] for r in conn.execute("SELECT id FROM p3 WHERE id >= 100").fetchall()]
        assert ids == [200], ids
    # A client that sends another message in the middle of its data (written past libpq,
    # which refuses to): the COPY ends with it, and lets go of its write lock, which the
    # write below waits for (it failed at the lock's timeout while the COPY waited on).
    stray = psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE, autocommit=True
    )
    pgconn = stray.pgconn
    pgconn.send_query(b"COPY p3 (id) FROM STDIN")
    result = pgconn.get_result()
    assert result.status == psycopg.pq.ExecStatus.COPY_IN, result.status
    pgconn.put_copy_data(b"300\n")
    pgconn.flush()
    query = b"SELECT 1\0"
    os.write(pgconn.socket, b"Q" + struct.pack("!i", len(query) + 4) + query)
    with psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE, autocommit=True
    ) as conn:
        conn.execute("INSERT INTO p3 (id) VALUES (301)")
        ids = [r[0] for r in conn.execute("SELECT id FROM p3 WHERE id >= 300").fetchall()]
        assert ids == [301], ids
    stray.close()


def with_psycopg2():
    conn = psycopg2.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE
    )
    cur = conn.cursor()
    cur.execute("CREATE TABLE p2(id INTEGER, s TEXT)")
    conn.commit()
    cur.copy_expert("COPY p2 FROM STDIN WITH CSV HEADER", io.StringIO("id,s\n1,x\n2,\"y,z\"\n"))
    conn.commit()
    out = io.StringIO()
    cur.copy_expert("COPY p2 TO STDOUT WITH (FORMAT csv, HEADER)", out)
    assert out.getvalue() == 'id,s\n1,x\n2,"y,z"\n', repr(out.getvalue())
    conn.close()


async def with_asyncpg():
    conn = await asyncpg.connect(
        host=HOST, port=int(PORT), user=USER, password=PASSWORD, database=DATABASE
    )
    await conn.execute("CREATE TABLE a(id INTEGER, s TEXT, ok BOOLEAN, x REAL, b BYTEA)")
    records = [(i, f"r{i}", i % 2 == 0, i / 4, bytes([i % 256, 255])) for i in range(1000)]
    records.append((None, None, None, None, None))
    result = await conn.copy_records_to_table("a", records=records)
    assert result == "COPY 1001", result
    got = await conn.fetch("SELECT id, s, ok, x, b FROM a ORDER BY id NULLS LAST")
    assert [tuple(r) for r in got] == records, got[:3]
    result = await conn.copy_to_table(
        "a", source=io.BytesIO(b"5000\tfrom text\tt\t\\N\t\\\\x0102\n"), columns=["id", "s", "ok", "x", "b"]
    )
    assert result == "COPY 1", result
    assert await conn.fetchval("SELECT b FROM a WHERE id = 5000") == b"\x01\x02"
    out = io.BytesIO()
    result = await conn.copy_from_query(
        "SELECT id, s FROM a WHERE id < 3 ORDER BY id", output=out, format="csv"
    )
    assert result == "COPY 3", result
    assert out.getvalue() == b"0,r0\n1,r1\n2,r2\n", out.getvalue()
    await conn.close()


with_psycopg3()
with_psycopg2()
asyncio.run(with_asyncpg())
print("copy: psycopg 3, psycopg2 and asyncpg all copied both ways")
