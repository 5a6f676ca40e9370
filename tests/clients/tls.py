"""Drivers over TLS against a running Cairn server with [server.tls] (run by the end-to-end
test `tls::sslmode_require_could_not_connect`): psycopg 3 and psycopg2 (libpq) with
sslmode=verify-full and channel_binding=require, and asyncpg (Python's own TLS) with an SSL
context that trusts only the test CA and checks the host name. Each reads back a row and
sees its connection encrypted.

Usage: CAIRN_TEST_CA=ca.crt python3 tls.py HOST PORT USER PASSWORD DATABASE
"""

import asyncio
import os
import ssl
import sys

try:
    import asyncpg
    import psycopg
    import psycopg2
except ImportError as missing:
    sys.exit(f"{missing}: this test needs psycopg, psycopg2 and asyncpg (.ci/run installs them)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]
CA = os.environ["CAIRN_TEST_CA"]
DSN = (
    f"host=localhost port={PORT} user={USER} password={PASSWORD} dbname={DATABASE} "
    f"sslmode=verify-full sslrootcert={CA} channel_binding=require"
)


def libpq_drivers():
    with psycopg.connect(DSN) as conn:
        assert conn.pgconn.ssl_in_use, "psycopg: not encrypted"
        assert conn.execute("SELECT 'psycopg over tls'").fetchone()[0] == "psycopg over tls"
    conn = psycopg2.connect(DSN)
    try:
        cur = conn.cursor()
        cur.execute("SELECT %s", ("psycopg2 over tls",))
        assert cur.fetchone()[0] == "psycopg2 over tls"
        assert conn.info.ssl_in_use, "psycopg2: not encrypted"
    finally:
        conn.close()


async def asyncpg_driver():
    context = ssl.create_default_context(cafile=CA)
    conn = await asyncpg.connect(
        host="localhost", port=int(PORT), user=USER, password=PASSWORD, database=DATABASE,
        ssl=context,
    )
    try:
        assert await conn.fetchval("SELECT $1::text", "asyncpg over tls") == "asyncpg over tls"
        assert conn._transport.get_extra_info("ssl_object") is not None, "asyncpg: not encrypted"
    finally:
        await conn.close()
    # A context that trusts nothing of ours is refused by the client itself.
    try:
        await asyncpg.connect(
            host="localhost", port=int(PORT), user=USER, password=PASSWORD, database=DATABASE,
            ssl=ssl.create_default_context(),
        )
    except ssl.SSLCertVerificationError:
        pass
    else:
        raise AssertionError("asyncpg trusted a certificate no CA of its own signed")


libpq_drivers()
asyncio.run(asyncpg_driver())
print("tls: psycopg, psycopg2, asyncpg ok")
