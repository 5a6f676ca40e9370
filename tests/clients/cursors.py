"""Server-side cursors against a running Cairn server (run by the end-to-end test
`hostile::named_cursors_were_a_syntax_error`): psycopg2's named cursor (DECLARE … WITHOUT
HOLD in the transaction, FETCH FORWARD itersize), psycopg 3's ServerCursor (DECLARE through
the extended protocol with a parameter, FETCH FORWARD n), a WITH HOLD cursor that outlives
its commit, and SQLAlchemy's stream_results. Each reads every row once, in order, with its
column types.

Usage: python3 cursors.py HOST PORT USER PASSWORD DATABASE
"""

import sys

try:
    import psycopg
    import psycopg2
    import sqlalchemy
except ImportError as missing:
    sys.exit(f"{missing}: this test needs psycopg, psycopg2 and SQLAlchemy (.ci/run installs them)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]
DSN = f"host={HOST} port={PORT} user={USER} password={PASSWORD} dbname={DATABASE}"
ROWS = 5000


def setup():
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS big")
        conn.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, even BOOLEAN, name TEXT)")
        conn.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < %s) "
            "INSERT INTO big SELECT x, x %% 2 = 0, 'row ' || x FROM c",
            (ROWS,),
        )


def psycopg2_named():
    conn = psycopg2.connect(DSN)
    try:
        cur = conn.cursor(name="reader")
        cur.itersize = 700
        cur.execute("SELECT id, even, name FROM big ORDER BY id")
        seen = 0
        for id_, even, name in cur:
            seen += 1
            assert id_ == seen and even == (seen % 2 == 0) and name == f"row {seen}", (id_, even, name)
        assert seen == ROWS, seen
        cur.close()
        conn.commit()
        # The cursor ended with its transaction; a new one of the same name is made.
        cur = conn.cursor(name="reader")
        cur.execute("SELECT count(*) FROM big")
        assert cur.fetchone()[0] == ROWS
        cur.close()
        conn.rollback()
        # WITH HOLD: read after the commit.
        cur = conn.cursor(name="held", withhold=True)
        cur.execute("SELECT id FROM big WHERE id <= 10 ORDER BY id")
        conn.commit()
        assert [r[0] for r in cur.fetchmany(4)] == [1, 2, 3, 4]
        assert [r[0] for r in cur.fetchall()] == list(range(5, 11))
        cur.close()
    finally:
        conn.close()


def psycopg3_server_cursor():
    with psycopg.connect(DSN) as conn:
        with conn.cursor(name="p3") as cur:
            cur.itersize = 1000
            cur.execute("SELECT id, even FROM big WHERE id > %s ORDER BY id", (ROWS - 2500,))
            got = [row for row in cur]
            assert len(got) == 2500 and got[0] == (ROWS - 2499, (ROWS - 2499) % 2 == 0), got[:2]
            assert isinstance(got[0][1], bool)
        # pg_cursors lists the open ones; a named cursor closed before any use looks there.
        with conn.cursor(name="listed") as cur:
            cur.execute("SELECT 1")
            names = [r[0] for r in conn.execute("SELECT name FROM pg_catalog.pg_cursors ORDER BY name")]
            assert names == ["listed"], names
        with conn.cursor(name="never"):
            pass
        assert conn.execute("SELECT count(*) FROM pg_cursors").fetchone()[0] == 0


def sqlalchemy_stream():
    engine = sqlalchemy.create_engine(f"postgresql+psycopg2://{USER}:{PASSWORD}@{HOST}:{PORT}/{DATABASE}")
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, max_row_buffer=500).execute(
            sqlalchemy.text("SELECT id FROM big ORDER BY id")
        )
        total = sum(1 for _ in result)
        assert total == ROWS, total
    engine.dispose()


setup()
psycopg2_named()
psycopg3_server_cursor()
sqlalchemy_stream()
print("cursors: psycopg2, psycopg 3, SQLAlchemy ok")
