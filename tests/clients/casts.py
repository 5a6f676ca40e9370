"""PostgreSQL drivers' cast idioms against a running Cairn server (run by the end-to-end
test `hostile::drivers_cast_idioms_stored_null`): asyncpg's `$1::INTEGER`, psycopg 3's
`%s::int` and psycopg2's `'\\x00ff'::bytea` must store the values, never NULL.

Usage: python3 casts.py HOST PORT USER PASSWORD DATABASE
"""

import asyncio
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


async def with_asyncpg():
    conn = await asyncpg.connect(
        host=HOST, port=int(PORT), user=USER, password=PASSWORD, database=DATABASE
    )
    await conn.execute("CREATE TABLE a(i INTEGER, s TEXT)")
    await conn.execute("INSERT INTO a(i, s) VALUES ($1::INTEGER, $2::text)", 7, "seven")
    row = await conn.fetchrow("SELECT i, s FROM a WHERE i = $1::int", 7)
    assert (row["i"], row["s"]) == (7, "seven"), row
    await conn.close()


def with_psycopg3():
    with psycopg.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE
    ) as conn:
        conn.execute("CREATE TABLE p3(i INTEGER)")
        conn.execute("INSERT INTO p3(i) VALUES (%s::int)", (8,))
        (value,) = conn.execute("SELECT i FROM p3").fetchone()
        assert value == 8, value
        conn.commit()


def with_psycopg2():
    conn = psycopg2.connect(
        host=HOST, port=PORT, user=USER, password=PASSWORD, dbname=DATABASE
    )
    cur = conn.cursor()
    cur.execute("CREATE TABLE p2(b BLOB, n INTEGER)")
    # psycopg2 writes bytes as '\x00ff'::bytea in the statement text.
    cur.execute("INSERT INTO p2(b, n) VALUES (%s, %s)", (b"\x00\xff", 9))
    cur.execute("SELECT b, n FROM p2")
    blob, number = cur.fetchone()
    assert bytes(blob) == b"\x00\xff" and number == 9, (blob, number)
    conn.commit()
    conn.close()


asyncio.run(with_asyncpg())
with_psycopg3()
with_psycopg2()
print("ok")
