"""PostgreSQL's session SQL as drivers and ORMs send it, against a running Cairn server (run
by the end-to-end test `hostile::drivers_session_sql_was_a_syntax_error`). Each of these
failed with a raw SQLite syntax error or "no such function" (or, for the nested
transaction, with "current transaction is aborted"): psycopg 3's `DEALLOCATE ALL`
after a rollback, Django's `set_config('TimeZone', …)`, pgJDBC's `SET extra_float_digits`,
SQLAlchemy's `select pg_catalog.version()`, `current_user`, `SHOW`, `DISCARD ALL`.

Usage: python3 session_sql.py HOST PORT USER PASSWORD DATABASE
"""

import sys

try:
    import psycopg
    import psycopg2
except ImportError as missing:
    sys.exit(f"{missing}: this test needs psycopg and psycopg2 (.ci/run installs them)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]
DSN = f"host={HOST} port={PORT} user={USER} password={PASSWORD} dbname={DATABASE}"


def one(cur, sql, *params):
    cur.execute(sql, params or None)
    return cur.fetchone()[0]


def psycopg3():
    with psycopg.connect(DSN, application_name="session-test") as conn:
        cur = conn.cursor()
        assert one(cur, "SHOW application_name") == "session-test"
        # What the startup answer reported is what SHOW says.
        for name in ["TimeZone", "DateStyle", "IntervalStyle", "server_version", "client_encoding"]:
            assert conn.info.parameter_status(name) == one(cur, f"SHOW {name}"), name
        assert one(cur, "SELECT current_setting('application_name')") == "session-test"
        # SQLAlchemy's first statements.
        version = one(cur, "select pg_catalog.version()")
        assert version.startswith("PostgreSQL 15"), version
        assert one(cur, "select current_schema()") == "public"
        assert one(cur, "SELECT current_user") == USER
        assert one(cur, "SELECT session_user") == USER
        assert one(cur, "SELECT current_database()") == DATABASE
        assert one(cur, "show standard_conforming_strings") == "on"
        assert one(cur, "SHOW transaction isolation level") == "serializable"
        # Django's time zone.
        assert one(cur, "SELECT set_config('TimeZone', %s, false)", "UTC") == "UTC"
        assert one(cur, "SHOW TimeZone") == "UTC"
        cur.execute("SET TIME ZONE 'Europe/Paris'")
        assert one(cur, "SHOW TIME ZONE") == "Europe/Paris"
        # Told to the client, as PostgreSQL tells it (ParameterStatus).
        assert conn.info.parameter_status("TimeZone") == "Europe/Paris"
        cur.execute("SET application_name = 'renamed'")
        assert conn.info.parameter_status("application_name") == "renamed"
        # pgJDBC's startup settings, by SQL.
        cur.execute("SET extra_float_digits = 3")
        assert one(cur, "SHOW extra_float_digits") == "3"
        cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED")
        cur.execute("SET statement_timeout = '5s'")
        assert one(cur, "SELECT current_setting('statement_timeout')") == "5s"
        cur.execute("RESET statement_timeout")
        # A custom parameter, for the session and for a transaction.
        cur.execute("SET myapp.tenant = 'acme'")
        assert one(cur, "SELECT current_setting('myapp.tenant')") == "acme"
        assert one(cur, "SELECT current_setting('myapp.nobody', true)") is None
        conn.commit()
        with conn.transaction():
            cur.execute("SET LOCAL myapp.tenant = 'other'")
            assert one(cur, "SHOW myapp.tenant") == "other"
        assert one(cur, "SHOW myapp.tenant") == "acme"
        conn.commit()
        conn.autocommit = True
        cur.execute("BEGIN; SET LOCAL myapp.tenant = 'brief'; COMMIT")
        assert one(cur, "SHOW myapp.tenant") == "acme"
        conn.autocommit = False
        # Errors say what; the session goes on.
        for bad, code in [
            ("SET no_such_parameter = 1", "42704"),
            ("SET client_encoding = 'LATIN1'", "22023"),
            ("SET server_version = '9.6'", "55P02"),
        ]:
            try:
                cur.execute(bad)
            except psycopg.Error as e:
                assert e.sqlstate == code, (bad, e.sqlstate, e)
                conn.rollback()
            else:
                raise AssertionError(f"{bad} was accepted")
        # A prepared statement, a rollback, then what psycopg 3 sends after it.
        cur.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
        conn.commit()
        for i in range(8):
            cur.execute("INSERT INTO t(v) VALUES (%s)", (f"v{i}",), prepare=True)
        conn.rollback()
        cur.execute("DEALLOCATE ALL")
        for i in range(3):
            cur.execute("INSERT INTO t(v) VALUES (%s)", (f"w{i}",), prepare=True)
        conn.commit()
        assert one(cur, "SELECT count(*) FROM t") == 3
        # Django's nested atomic(), as psycopg 3's nested transaction(): an error inside the
        # inner block rolls back to its savepoint, and the outer block commits.
        conn.commit()
        with conn.transaction():
            cur.execute("INSERT INTO t(id, v) VALUES (100, 'outer')")
            try:
                with conn.transaction():
                    cur.execute("INSERT INTO t(id, v) VALUES (100, 'duplicate')")
            except psycopg.errors.IntegrityError:
                pass
            cur.execute("INSERT INTO t(id, v) VALUES (101, 'after')")
        conn.commit()
        assert one(cur, "SELECT count(*) FROM t WHERE id >= 100") == 2
        # What a pool sends when a connection comes back.
        cur.execute("CREATE TEMP TABLE scratch(a)")
        conn.commit()
        conn.autocommit = True
        cur.execute("DISCARD ALL")
        assert one(cur, "SHOW TimeZone") == "UTC"
        assert conn.info.parameter_status("TimeZone") == "UTC"
        assert conn.info.parameter_status("application_name") == "session-test"
        assert one(cur, "SHOW application_name") == "session-test"
        assert one(cur, "SELECT count(*) FROM temp.sqlite_master") == 0
        assert one(cur, "SELECT current_setting('myapp.tenant', true)") is None


def psycopg2_driver():
    conn = psycopg2.connect(DSN)
    cur = conn.cursor()
    # psycopg2 sends its SETs inside its implicit transaction.
    cur.execute("SET DateStyle TO 'ISO, DMY'")
    assert one(cur, "SHOW DateStyle") == "ISO, DMY"
    conn.commit()
    assert one(cur, "SHOW datestyle") == "ISO, DMY"
    cur.execute("SHOW ALL")
    names = {row[0] for row in cur.fetchall()}
    assert {"TimeZone", "application_name", "statement_timeout"} <= names, names
    conn.close()


psycopg3()
psycopg2_driver()
print("session SQL: ok")
