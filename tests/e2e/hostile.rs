//! Hostile and heavy clients (issue 14): driver idioms that must not store NULL, pragmas that
//! must not take the server down or corrupt a database, bounded messages and memory, cancel,
//! timeouts and limits.

use tokio_postgres::error::SqlState;

use crate::harness::{ADMIN_PASSWORD, READER_PASSWORD, Site, WRITER_PASSWORD, message, refused};

/// asyncpg, node-postgres, psycopg 3 and SQLAlchemy's asyncpg dialect cast parameters:
/// SQLite read `$1::INTEGER` as an unbound parameter and stored NULL.
#[tokio::test]
async fn a_cast_parameter_stored_null() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute("CREATE TABLE t(i INTEGER, s TEXT, b BLOB)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO t(i, s, b) VALUES ($1::INTEGER, $2::text, $3::bytea)")
        .await
        .unwrap();
    client
        .execute(&insert, &[&7i64, &"seven", &vec![0u8, 255]])
        .await
        .unwrap();
    let row = client
        .query_one("SELECT i, s, b FROM t WHERE i = $1::int", &[&7i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 7);
    assert_eq!(row.get::<_, String>(1), "seven");
    assert_eq!(row.get::<_, Vec<u8>>(2), vec![0u8, 255]);

    // Literals as psycopg2 writes them, through the simple protocol.
    client
        .batch_execute(
            "INSERT INTO t(i, s, b) VALUES ('5'::integer, '2024-01-02T03:04:05'::timestamp, '\\x00ff'::bytea)",
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT s, b FROM t WHERE i = 5", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "2024-01-02 03:04:05");
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![0u8, 255]);
    let err = refused(&client, "SELECT 'abc'::integer", "invalid input syntax").await;
    assert_eq!(err.code(), Some(&SqlState::INVALID_TEXT_REPRESENTATION));

    // A parameter that nothing binds is an error, never NULL.
    refused(
        &client,
        "INSERT INTO t(i) VALUES (:i)",
        "the statement requires 1",
    )
    .await;
    let mixed = client
        .prepare("INSERT INTO t(i, s) VALUES ($1::int, :s)")
        .await
        .unwrap();
    let err = client.execute(&mixed, &[&8i64]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_PARAMETER), "{err}");
    assert!(message(&err).contains("there is no parameter :s"), "{err}");
    let nulls = client
        .query_one("SELECT count(*) FROM t WHERE i IS NULL", &[])
        .await
        .unwrap();
    assert_eq!(nulls.get::<_, i64>(0), 0);
}

/// `PRAGMA hard_heap_limit=1` from a readonly user made every later login of every user fail
/// until restart.
#[tokio::test]
async fn a_readonly_pragma_locked_everyone_out() {
    let site = Site::standard();
    let server = site.start();
    let reader = server
        .connect("reader", READER_PASSWORD, "default")
        .await
        .unwrap();
    for sql in [
        "PRAGMA hard_heap_limit=1",
        "PRAGMA soft_heap_limit = 1",
        "PRAGMA main.cache_size = -100000000",
    ] {
        let err = refused(&reader, sql, "cannot be set by clients").await;
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}");
    }
    // Reading one is fine, and everyone can still log in.
    reader.simple_query("PRAGMA hard_heap_limit").await.unwrap();
    for (user, password) in [
        ("admin", ADMIN_PASSWORD),
        ("reader", READER_PASSWORD),
        ("writer", WRITER_PASSWORD),
    ] {
        let client = server.connect(user, password, "default").await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
    }
}

/// `PRAGMA schema_version=N` from a readwrite user made admin's inserts land in the wrong
/// b-trees (integrity_check failed).
#[tokio::test]
async fn a_readwrite_pragma_corrupted_the_database() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE a(x INTEGER); CREATE TABLE b(y TEXT)")
        .await
        .unwrap();
    let writer = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap();
    refused(
        &writer,
        "PRAGMA schema_version = 1",
        "cannot be set by clients",
    )
    .await;
    refused(
        &admin,
        "PRAGMA writable_schema = ON",
        "cannot be set by clients",
    )
    .await;
    writer
        .batch_execute("DROP TABLE a; CREATE TABLE c(z INTEGER)")
        .await
        .unwrap();
    admin
        .batch_execute("INSERT INTO b VALUES ('kept')")
        .await
        .unwrap();
    let check = admin
        .query_one("PRAGMA integrity_check", &[])
        .await
        .unwrap();
    assert_eq!(check.get::<_, String>(0), "ok");
    // Per-connection switches stay available.
    writer
        .batch_execute("PRAGMA foreign_keys = OFF")
        .await
        .unwrap();
}

/// Plain VACUUM by admin was refused with an error about VACUUM INTO.
#[tokio::test]
async fn a_plain_vacuum_was_refused() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t(x); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5000) INSERT INTO t SELECT randomblob(100) FROM c; DELETE FROM t",
        )
        .await
        .unwrap();
    admin.batch_execute("VACUUM").await.unwrap();
    let into = site.data_dir().join("copy.sqlite");
    let err = admin
        .batch_execute(&format!("VACUUM INTO '{}'", into.display()))
        .await
        .unwrap_err();
    assert!(message(&err).contains("VACUUM INTO"), "{}", message(&err));
    assert!(!into.exists());
    let reader = server
        .connect("reader", READER_PASSWORD, "default")
        .await
        .unwrap();
    assert!(reader.batch_execute("VACUUM").await.is_err());
}
