"""psycopg 3's parameters of types SQLite has none of, against a running Cairn server (run
by the end-to-end test `hostile::psycopg3s_date_uuid_and_json_parameters_were_refused`):
psycopg names their types (date, timestamp, timestamptz, time, uuid, jsonb, numeric) in
its Parse, and each was refused ("has type date, which Cairn does not take"). They are now
stored as PostgreSQL's text forms of them and compare as such.

Usage: python3 typed_parameters.py HOST PORT USER PASSWORD DATABASE
"""

import datetime
import decimal
import sys
import uuid

try:
    import psycopg
    from psycopg.types.json import Jsonb
except ImportError as missing:
    sys.exit(f"{missing}: this test needs psycopg (.ci/run installs it)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]
DSN = f"host={HOST} port={PORT} user={USER} password={PASSWORD} dbname={DATABASE}"

ID = uuid.UUID("01234567-89ab-cdef-0123-456789abcdef")
with psycopg.connect(DSN, autocommit=True) as conn:
    conn.execute(
        "CREATE TABLE typed (day DATE, at TIMESTAMP, at_tz TIMESTAMPTZ, clock TIME, id UUID, doc JSONB, price NUMERIC(10, 2))"
    )
    conn.execute(
        "INSERT INTO typed VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (
            datetime.date(2024, 1, 2),
            datetime.datetime(2024, 1, 2, 3, 4, 5),
            datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            datetime.time(1, 2, 3),
            ID,
            Jsonb({"a": [1, 2]}),
            decimal.Decimal("12.50"),
        ),
    )
    row = conn.execute("SELECT day, at, clock, id, doc, price FROM typed").fetchone()
    assert row[0] == "2024-01-02", row
    assert row[1] == "2024-01-02 03:04:05", row
    assert row[2] == "01:02:03", row
    assert row[3] == str(ID), row
    assert row[4].replace(" ", "") == '{"a":[1,2]}', row
    assert float(row[5]) == 12.5, row
    found = conn.execute(
        "SELECT count(*) FROM typed WHERE day = %s AND id = %s", (datetime.date(2024, 1, 2), ID)
    ).fetchone()[0]
    assert found == 1, found
    # NULL of those types.
    conn.execute("INSERT INTO typed (day, id) VALUES (%s, %s)", (None, None))
    assert conn.execute("SELECT count(*) FROM typed WHERE day IS NULL").fetchone()[0] == 1
print("typed parameters ok")
