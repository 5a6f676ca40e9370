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
    let reader = reader(&server).await;
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
    let reader = reader(&server).await;
    assert!(reader.batch_execute("VACUUM").await.is_err());
}

/// A site whose `[server]` table also has `keys`.
fn site_with(keys: &str) -> Site {
    Site::new(&crate::harness::standard_config().replace(
        "shutdown_grace_ms = 5000",
        &format!("shutdown_grace_ms = 5000\n{keys}"),
    ))
}

async fn reader(server: &crate::harness::TestServer) -> tokio_postgres::Client {
    server
        .connect("reader", READER_PASSWORD, "default")
        .await
        .unwrap()
}

/// Waits until SHOW SESSIONS lists an active statement containing `needle`.
pub(crate) async fn wait_for_running(admin: &tokio_postgres::Client, needle: &str) {
    loop {
        let rows = admin.simple_query("SHOW SESSIONS").await.unwrap();
        let running = rows.iter().any(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                r.get(4) == Some("active") && r.get(5).is_some_and(|q| q.contains(needle))
            }
            _ => false,
        });
        if running {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// A long query: a recursive CTE that counts to a billion.
pub(crate) const ENDLESS: &str = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT count(*) FROM c";

/// CancelRequest was ignored: a 60 M-row recursive CTE ran to its end.
#[tokio::test]
async fn a_cancel_request_was_ignored() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let cancel = client.cancel_token();
    let started = std::time::Instant::now();
    let (result, ()) = tokio::join!(client.simple_query(ENDLESS), async {
        // The cancel must reach a running statement: wait until the server shows it active.
        let watcher = server.admin("default").await;
        wait_for_running(&watcher, "RECURSIVE").await;
        cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let err = result.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(message(&err).contains("user request"), "{}", message(&err));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    // The session goes on.
    client.simple_query("SELECT 1").await.unwrap();
}

/// No statement_timeout, lock_timeout or idle_in_transaction_session_timeout existed.
#[tokio::test]
async fn timeouts_were_not_honoured() {
    let site = site_with("idle_in_transaction_session_timeout = \"300ms\"");
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute("SET statement_timeout = 200")
        .await
        .unwrap();
    let shown = client
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap();
    assert_eq!(shown.get::<_, String>(0), "200ms");
    let err = client.simple_query(ENDLESS).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(
        message(&err).contains("statement timeout"),
        "{}",
        message(&err)
    );
    client
        .batch_execute("RESET statement_timeout")
        .await
        .unwrap();

    // A startup option, as libpq's PGOPTIONS sends it.
    let url = format!(
        "{} options='-c statement_timeout=150'",
        server.url("admin", ADMIN_PASSWORD, "default")
    );
    let (optioned, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let err = optioned.simple_query(ENDLESS).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");

    // An idle write transaction blocked every other writer: now its connection ends.
    client.batch_execute("CREATE TABLE t(x)").await.unwrap();
    let idle = server.admin("default").await;
    idle.batch_execute("BEGIN; INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    client
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    let err = idle.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        err.to_string().contains("idle-in-transaction") || idle.is_closed(),
        "{err}"
    );
    let rows = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(
        rows.get::<_, i64>(0),
        1,
        "the idle transaction's row was rolled back"
    );

    // So does a transaction left with a portal suspended mid-result.
    let mut cursor = server.admin("default").await;
    let transaction = cursor.transaction().await.unwrap();
    // More rows than travel at once, so the statement is still running when it idles.
    let statement = transaction
        .prepare("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000) SELECT n FROM c")
        .await
        .unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    transaction.query_portal(&portal, 1).await.unwrap();
    let before = server
        .logs()
        .matches("idle in transaction too long")
        .count();
    server.wait_for_logs("idle in transaction too long", before + 1);
    assert!(transaction.query_portal(&portal, 1).await.is_err());
}

/// There was no way for an admin to see sessions or end one.
#[tokio::test]
async fn sessions_could_not_be_seen_or_ended() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    let reader = reader(&server).await;
    let id: i64 = reader
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let rows = admin.simple_query("SHOW SESSIONS").await.unwrap();
    let listed = rows.iter().any(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => {
            r.get(0) == Some(id.to_string().as_str()) && r.get(1) == Some("reader")
        }
        _ => false,
    });
    assert!(listed, "{rows:?}");
    let users = crate::harness::column(
        &admin,
        "SELECT \"user\" FROM sessions() WHERE state = 'active' ORDER BY id",
    )
    .await;
    assert_eq!(users, vec!["admin".to_owned()]);
    refused(&reader, "SHOW SESSIONS", "admin role").await;
    refused(&reader, "SELECT * FROM sessions()", "admin role").await;
    refused(
        &reader,
        &format!("SELECT pg_terminate_backend({id})"),
        "admin role",
    )
    .await;
    // SQLite has no boolean: true comes back as 1.
    let ended = crate::harness::column(&admin, &format!("SELECT pg_terminate_backend({id})")).await;
    assert_eq!(ended, vec!["1".to_owned()]);
    let err = reader.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        reader.is_closed() || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{err}"
    );
}

/// DROP DATABASE right after a client disconnected was refused about half the time.
#[tokio::test]
async fn drop_database_after_a_disconnect_was_refused() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    for i in 0..20 {
        admin
            .batch_execute(&format!("CREATE DATABASE d{i}"))
            .await
            .unwrap();
        let user = server.admin(&format!("d{i}")).await;
        user.simple_query("SELECT 1").await.unwrap();
        drop(user);
        admin
            .batch_execute(&format!("DROP DATABASE d{i}"))
            .await
            .unwrap();
    }
}

/// A BOOLEAN column was int8 on the wire, so `UPDATE t SET flag = $1` with a bool was
/// refused by asyncpg (the parameter was text), and `count(*)` in a statement with a
/// parameter came back as text. Declared BOOLEAN columns are PostgreSQL's bool both ways
/// (stored as SQLite's 0 and 1), and a call whose result type is fixed types its column.
#[tokio::test]
async fn a_bool_parameter_was_refused_and_count_with_a_parameter_was_text() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute(
            "CREATE TABLE flags (id INTEGER PRIMARY KEY, flag BOOLEAN); INSERT INTO flags VALUES (1, FALSE), (2, TRUE), (3, NULL)",
        )
        .await
        .unwrap();
    let update = client
        .prepare("UPDATE flags SET flag = $1 WHERE id = $2")
        .await
        .unwrap();
    assert_eq!(update.params()[0], tokio_postgres::types::Type::BOOL);
    client.execute(&update, &[&true, &1i64]).await.unwrap();
    let rows = client
        .query("SELECT flag FROM flags ORDER BY id", &[])
        .await
        .unwrap();
    let flags: Vec<Option<bool>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(flags, vec![Some(true), Some(true), None]);
    let counted = client
        .prepare("SELECT count(*) FROM flags WHERE flag = $1")
        .await
        .unwrap();
    assert_eq!(
        counted.columns()[0].type_(),
        &tokio_postgres::types::Type::INT8
    );
    // Named as PostgreSQL names it, not after its text (`count(*)`).
    assert_eq!(counted.columns()[0].name(), "count");
    let named = client
        .prepare("SELECT max(id), id + 1, CAST(id AS TEXT), id AS ident FROM flags")
        .await
        .unwrap();
    let names: Vec<&str> = named.columns().iter().map(|c| c.name()).collect();
    assert_eq!(names, ["max", "?column?", "text", "ident"]);
    let n: i64 = client.query_one(&counted, &[&true]).await.unwrap().get(0);
    assert_eq!(n, 2);
    // The stored values are SQLite's integers, as sqlite3 and backups see them.
    let stored: Vec<String> = client
        .simple_query("SELECT typeof(flag) || ':' || flag FROM flags WHERE id = 1")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(stored, vec!["integer:1".to_owned()]);
}

/// `id SERIAL PRIMARY KEY`, the table ORMs create first, was taken by SQLite as a column of
/// a type named SERIAL that nothing numbers: every inserted row's id was NULL. It is
/// SQLite's INTEGER PRIMARY KEY now, and so is an IDENTITY key; the index methods and the
/// UNIQUE constraint ORMs add are said in SQLite's words; what SQLite cannot say is refused
/// with 0A000 naming the construct.
#[tokio::test]
async fn serial_ids_were_null() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute(
            "CREATE TABLE users (id SERIAL PRIMARY KEY, name VARCHAR(40) NOT NULL);
             CREATE TABLE events (id BIGINT GENERATED BY DEFAULT AS IDENTITY, at TIMESTAMP WITHOUT TIME ZONE, CONSTRAINT events_pkey PRIMARY KEY (id));
             CREATE INDEX users_name ON users USING btree (name);
             ALTER TABLE users ADD CONSTRAINT users_name_key UNIQUE (name)",
        )
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    for (n, name) in ["ada", "grace"].into_iter().enumerate() {
        let id: i64 = client
            .query_one(
                "INSERT INTO users (name) VALUES ($1) RETURNING id",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(id, n as i64 + 1);
        let id: i64 = client
            .query_one(
                "INSERT INTO events (at) VALUES ('2026-12-04 10:00:00') RETURNING id",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(id, n as i64 + 1);
    }
    let duplicate = client
        .execute("INSERT INTO users (name) VALUES ('ada')", &[])
        .await
        .unwrap_err();
    assert_eq!(
        duplicate.code(),
        Some(&SqlState::UNIQUE_VIOLATION),
        "{}",
        message(&duplicate)
    );
    for (sql, construct) in [
        (
            "CREATE TABLE c (id INTEGER PRIMARY KEY, n SERIAL)",
            "SERIAL on column \"n\"",
        ),
        (
            "CREATE INDEX docs ON users USING gin (name)",
            "index method \"gin\"",
        ),
        (
            "ALTER TABLE events ADD CONSTRAINT fk FOREIGN KEY (id) REFERENCES users (id)",
            "FOREIGN",
        ),
    ] {
        let err = refused(&client, sql, construct).await;
        assert_eq!(err.code(), Some(&SqlState::FEATURE_NOT_SUPPORTED), "{sql}");
    }
}

/// A client gone inside a transaction took the server down (SIGSEGV): its session closed
/// the connection with the transaction open, and SQLite, closing, rolled it back through a
/// rollback hook rusqlite had already freed (a write into freed memory, which crashed the
/// release binary within a few hundred such clients). The sessions' ends are waited for
/// before the server is asked again.
#[tokio::test]
async fn a_client_gone_inside_a_transaction_crashed_the_server() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE TABLE t(a)").await.unwrap();
    for round in 0..300 {
        let user = server.admin("default").await;
        user.batch_execute(&format!("BEGIN; INSERT INTO t VALUES ({round})"))
            .await
            .unwrap();
        drop(user);
    }
    // Every one of them has ended (its connection closed) once only this one is left.
    let mut left = usize::MAX;
    for _ in 0..1000 {
        let rows = admin
            .query("SELECT id FROM sessions()", &[])
            .await
            .unwrap_or_else(|e| panic!("the server stopped answering: {}", message(&e)));
        left = rows.len();
        if left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(left, 1, "sessions still open");
    let rows: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, 0, "what the gone clients wrote was rolled back");
    server.assert_still_serving().await;
}

/// Sends raw bytes on a fresh connection and returns what the server answers.
async fn raw_exchange(server: &crate::harness::TestServer, bytes: &[u8]) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    socket.write_all(bytes).await.unwrap();
    // Nothing more comes: a server still waiting for the rest reads the end and closes.
    socket.shutdown().await.unwrap();
    let mut answer = Vec::new();
    let _ = socket.read_to_end(&mut answer).await;
    answer
}

fn startup_packet(major: u16, minor: u16, user: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&major.to_be_bytes());
    body.extend_from_slice(&minor.to_be_bytes());
    body.extend_from_slice(b"user\0");
    body.extend_from_slice(user.as_bytes());
    body.extend_from_slice(b"\0\0");
    let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

/// The ErrorResponse in `answer`: its SQLSTATE and message.
fn error_fields(answer: &[u8]) -> (String, String) {
    let at = answer
        .iter()
        .position(|b| *b == b'E')
        .expect("an ErrorResponse");
    let fields = &answer[at + 5..];
    let mut code = String::new();
    let mut message = String::new();
    for field in fields.split(|b| *b == 0) {
        match field.first() {
            Some(b'C') => code = String::from_utf8_lossy(&field[1..]).into(),
            Some(b'M') => message = String::from_utf8_lossy(&field[1..]).into(),
            _ => {}
        }
    }
    (code, message)
}

/// A client that had not logged in could announce a 1 GB message and have it buffered.
#[tokio::test]
async fn a_huge_message_before_login_was_buffered() {
    let site = Site::standard();
    let server = site.start();
    let mut bytes = startup_packet(3, 0, "admin");
    bytes.push(b'p');
    bytes.extend_from_slice(&(1u32 << 30).to_be_bytes());
    bytes.extend_from_slice(&[0; 1024]);
    let answer = raw_exchange(&server, &bytes).await;
    let (code, message) = error_fields(&answer);
    assert_eq!(code, "54000", "{message}");
    assert!(message.contains("before login"), "{message}");
    server.assert_still_serving().await;
}

/// Protocol 2.0 startups and malformed messages got a silent close.
#[tokio::test]
async fn odd_startups_were_closed_silently() {
    let site = Site::standard();
    let server = site.start();
    let answer = raw_exchange(&server, &startup_packet(2, 0, "admin")).await;
    let (code, message) = error_fields(&answer);
    assert_eq!(code, "0A000", "{message}");
    assert!(message.contains("protocol 3.0"), "{message}");
    let answer = raw_exchange(&server, &[0, 0, 0, 2, 0, 0, 0, 0]).await;
    assert_eq!(error_fields(&answer).0, "08P01");
    server.assert_still_serving().await;
}

/// There was no max_connections.
#[tokio::test]
async fn connections_were_unlimited() {
    let site = site_with("max_connections = 2");
    let server = site.start();
    let _a = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap();
    let _b = reader(&server).await;
    let err = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{err}");
    // The admin has a reserve, to look and to end sessions.
    server.assert_still_serving().await;
}

/// The server's resident memory, from /proc (Linux).
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

/// The whole result was built in the server before the first row was sent: 210 MiB per
/// million small rows.
#[tokio::test]
async fn a_large_result_was_built_whole_in_memory() {
    use futures::{StreamExt, pin_mut};
    let site = Site::standard();
    let server = site.start();
    let reader = reader(&server).await;
    reader.simple_query("SELECT 1").await.unwrap();
    let idle = resident_bytes(server.pid());
    let mut peak = idle;
    // 2,000,000 rows of ~120 bytes: about 240 MB if held at once.
    let rows = reader
        .query_raw(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000000) SELECT n, printf('%0100d', n) FROM c",
            std::iter::empty::<i64>(),
        )
        .await
        .unwrap();
    pin_mut!(rows);
    let mut count = 0u64;
    while let Some(row) = rows.next().await {
        let row = row.unwrap();
        count += 1;
        if count.is_multiple_of(50_000) {
            assert_eq!(row.get::<_, i64>(0), count as i64);
            peak = peak.max(resident_bytes(server.pid()));
        }
    }
    assert_eq!(count, 2_000_000);
    let grown = peak.saturating_sub(idle);
    assert!(
        grown < 32 << 20,
        "the server grew by {} MiB for one large SELECT",
        grown >> 20
    );
}

/// The extended protocol's row limit: a portal is read a few rows at a time, as drivers'
/// cursors and fetch sizes do; another statement meanwhile closes it with an error, never a
/// silently short result.
#[tokio::test]
async fn portals_are_read_in_pieces() {
    let site = Site::standard();
    let server = site.start();
    let mut client = server.admin("default").await;
    client
        .batch_execute(
            "CREATE TABLE t(x INTEGER); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000) INSERT INTO t SELECT n FROM c",
        )
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    let statement = transaction
        .prepare("SELECT x FROM t ORDER BY x")
        .await
        .unwrap();
    let portal = transaction.bind(&statement, &[]).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let rows = transaction.query_portal(&portal, 300).await.unwrap();
        if rows.is_empty() {
            break;
        }
        seen.extend(rows.iter().map(|r| r.get::<_, i64>(0)));
    }
    assert_eq!(seen, (1..=1000).collect::<Vec<i64>>());

    // Larger than what travels between the session and the socket at once.
    let large = transaction
        .prepare("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000) SELECT n FROM c")
        .await
        .unwrap();
    let portal = transaction.bind(&large, &[]).await.unwrap();
    let first = transaction.query_portal(&portal, 10).await.unwrap();
    assert_eq!(first.len(), 10);
    let other = transaction
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap();
    assert_eq!(other.get::<_, i64>(0), 1000);
    // Rows already on their way still arrive; then the portal says it was closed.
    let mut fetched = first.len();
    let err = loop {
        match transaction.query_portal(&portal, 10_000).await {
            Ok(rows) => {
                assert!(
                    !rows.is_empty(),
                    "the portal ended silently after {fetched} rows"
                );
                fetched += rows.len();
            }
            Err(e) => break e,
        }
    };
    assert!(message(&err).contains("portal closed"), "{}", message(&err));
    assert!(fetched < 1_000_000);
}

/// Running out of file descriptors made the accept loop spin, writing millions of warnings.
#[tokio::test]
async fn running_out_of_descriptors_spun_the_accept_loop() {
    let site = Site::standard();
    let server = crate::harness::TestServer::start_with_fd_limit(&site.config_path(), 64);
    let mut held = Vec::new();
    for _ in 0..100 {
        if let Ok(socket) = tokio::net::TcpStream::connect(("127.0.0.1", server.port)).await {
            held.push(socket);
        }
    }
    server.wait_for_log("accepting a connection failed");
    drop(held);
    server.assert_still_serving().await;
    let warnings = server
        .logs()
        .matches("accepting a connection failed")
        .count();
    assert_eq!(warnings, 1, "{}", server.logs());
}

/// A query kept a core busy after its client disconnected.
#[tokio::test]
async fn a_query_ran_on_after_its_client_left() {
    let site = Site::standard();
    let server = site.start();
    let watcher = server.admin("default").await;
    let (client, connection) = tokio_postgres::connect(
        &server.url("admin", ADMIN_PASSWORD, "default"),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    // The client and its connection live in one task: aborting it closes the socket.
    let running = tokio::spawn(async move {
        let _ = tokio::join!(connection, client.simple_query(ENDLESS));
    });
    wait_for_running(&watcher, "RECURSIVE").await;
    // Dropping the task drops the client and closes its socket.
    running.abort();
    assert!(running.await.unwrap_err().is_cancelled());
    server.wait_for_log("client went away; its statement is interrupted");
    loop {
        let rows = watcher.simple_query("SHOW SESSIONS").await.unwrap();
        let sessions = rows
            .iter()
            .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
            .count();
        if sessions == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
}

/// A readonly user wrote 300 MB of temporary tables in 0.6 s.
#[tokio::test]
async fn temporary_tables_were_unlimited() {
    let site = Site::new(&crate::harness::standard_config().replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\ntemp_storage_limit = \"1MiB\"",
    ));
    let server = site.start();
    let reader = reader(&server).await;
    reader
        .batch_execute("CREATE TEMP TABLE scratch(x)")
        .await
        .unwrap();
    let err = reader
        .batch_execute(
            "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000) INSERT INTO scratch SELECT randomblob(100) FROM c",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::CONFIGURATION_LIMIT_EXCEEDED),
        "{err}"
    );
    assert!(
        message(&err).contains("temp_storage_limit"),
        "{}",
        message(&err)
    );
    reader
        .batch_execute("DROP TABLE temp.scratch")
        .await
        .unwrap();
    server.assert_still_serving().await;
}

/// A cleartext password message was met with a silent close, and failed logins were
/// logged with an empty user name.
#[tokio::test]
async fn a_cleartext_password_was_closed_silently() {
    let site = Site::standard();
    let server = site.start();
    let mut bytes = startup_packet(3, 0, "admin");
    let password = b"admin-pw\0";
    bytes.push(b'p');
    bytes.extend_from_slice(&((password.len() + 4) as u32).to_be_bytes());
    bytes.extend_from_slice(password);
    let answer = raw_exchange(&server, &bytes).await;
    let (code, refusal) = error_fields(&answer);
    assert_eq!(code, "08P01", "{refusal}");
    assert!(refusal.contains("SCRAM-SHA-256 only"), "{refusal}");

    let err = server
        .connect("writer", "not-the-password", "default")
        .await
        .unwrap_err();
    assert!(message(&err).contains("\"writer\""), "{}", message(&err));
    server.wait_for_log("login refused user=writer");
    assert!(
        !server.logs().contains("for user \"\""),
        "{}",
        server.logs()
    );
    server.assert_still_serving().await;
}

/// Timeouts per user, from the config.
#[tokio::test]
async fn a_users_own_statement_timeout() {
    let site = Site::new(&crate::harness::standard_config().replace(
        "role = \"readonly\"",
        "role = \"readonly\"\nstatement_timeout = \"150ms\"",
    ));
    let server = site.start();
    let reader = reader(&server).await;
    let shown = reader
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap();
    assert_eq!(shown.get::<_, String>(0), "150ms");
    let err = reader.simple_query(ENDLESS).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    let admin = server.admin("default").await;
    let shown = admin
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap();
    assert_eq!(shown.get::<_, String>(0), "0");
}

/// pgwire reads a Query up to its NUL: bytes left inside its announced length were decoded
/// as a next message whose length was never checked (found in review).
#[tokio::test]
async fn a_message_hidden_inside_another_escaped_the_limits() {
    let site = Site::standard();
    let server = site.start();
    let mut bytes = startup_packet(3, 0, "admin");
    bytes.push(b'Q');
    bytes.extend_from_slice(&10u32.to_be_bytes());
    bytes.extend_from_slice(&[0, b'Q', 0x3f, 0xff, 0xff, 0xf0]);
    let answer = raw_exchange(&server, &bytes).await;
    let (code, message) = error_fields(&answer);
    assert_eq!(code, "08P01", "{message}");
    server.assert_still_serving().await;
}

/// Connections still logging in were not counted: each could hold a socket for a minute.
#[tokio::test]
async fn connections_logging_in_were_unlimited() {
    let site = site_with("max_connections = 1");
    let server = site.start();
    // One session and the admins' reserve of three may be logging in at once.
    let mut waiting = Vec::new();
    for _ in 0..4 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        // An SSLRequest answered proves the server is serving this connection.
        socket
            .write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])
            .await
            .unwrap();
        let mut answer = [0u8; 1];
        socket.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"N");
        waiting.push(socket);
    }
    let answer = raw_exchange(&server, &startup_packet(3, 0, "admin")).await;
    let (code, message) = error_fields(&answer);
    assert_eq!(code, "53300", "{message}");
    drop(waiting);
    crate::automatic_backup::wait_until("the waiting connections are gone", || async {
        server
            .connect("admin", ADMIN_PASSWORD, "default")
            .await
            .is_ok()
    })
    .await;
}

/// A client that stopped reading a result held its statement, and the write lock of an
/// INSERT … RETURNING, beyond the reach of cancel, timeouts and pg_terminate_backend (found
/// in review).
#[tokio::test]
async fn a_client_that_stopped_reading_could_not_be_ended() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE src(x); CREATE TABLE dst(x); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 300000) INSERT INTO src SELECT printf('%0200d', n) FROM c",
        )
        .await
        .unwrap();
    let mut psql = std::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-d",
            &server.url("admin", ADMIN_PASSWORD, "default"),
            "-c",
            "INSERT INTO dst SELECT x FROM src RETURNING x",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // psql stops reading: its pipe is never read, so it blocks, and so does its socket.
    wait_for_running(&admin, "RETURNING").await;
    let id = crate::harness::column(
        &admin,
        "SELECT id FROM sessions() WHERE query LIKE '%RETURNING%' AND id <> pg_backend_pid()",
    )
    .await;
    let writer = server.admin("default").await;
    writer
        .batch_execute("SET lock_timeout = 200")
        .await
        .unwrap();
    assert!(
        writer
            .batch_execute("INSERT INTO dst VALUES ('x')")
            .await
            .is_err(),
        "the stalled INSERT should still hold the write lock"
    );
    crate::harness::column(&admin, &format!("SELECT pg_terminate_backend({})", id[0])).await;
    // Its statement ends and lets go of the lock (bounded by the test's patience).
    writer.batch_execute("SET lock_timeout = 0").await.unwrap();
    writer
        .batch_execute("INSERT INTO dst VALUES ('after')")
        .await
        .unwrap();
    let _ = psql.kill();
    let _ = psql.wait();
}

/// pg_terminate_backend called from a trigger ran with the rights of whoever fired it (found
/// in review).
#[tokio::test]
async fn a_trigger_could_end_sessions_with_the_admins_rights() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE TABLE audit(x)").await.unwrap();
    let writer = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap();
    writer
        .batch_execute(
            "CREATE TRIGGER t AFTER INSERT ON audit BEGIN SELECT pg_terminate_backend(1); END",
        )
        .await
        .unwrap();
    let err = admin
        .batch_execute("INSERT INTO audit VALUES (1)")
        .await
        .unwrap_err();
    assert!(message(&err).contains("unsafe use of"), "{}", message(&err));
}

/// pgwire's decoders panicked on about a hundred malformed messages before login, each
/// dropping its connection without a word.
#[tokio::test]
async fn malformed_messages_before_login_got_no_answer() {
    let site = Site::standard();
    let server = site.start();
    // A fixed pseudo-random sequence, so a failure can be replayed.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let kinds = [
        b'p', b'Q', b'P', b'B', b'E', b'D', b'C', b'S', b'H', b'd', b'c', b'f', b'F', 0xff,
    ];
    for round in 0..120 {
        let body: Vec<u8> = (0..next() % 48).map(|_| next() as u8).collect();
        let mut bytes = if round % 4 == 0 {
            // A startup packet with a garbled body.
            let mut packet = ((body.len() + 8) as u32).to_be_bytes().to_vec();
            packet.extend_from_slice(&196_608u32.to_be_bytes());
            packet.extend_from_slice(&body);
            packet
        } else {
            startup_packet(3, 0, "admin")
        };
        if round % 4 != 0 {
            bytes.push(kinds[(next() % kinds.len() as u64) as usize]);
            bytes.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
            bytes.extend_from_slice(&body);
        }
        let answer = raw_exchange(&server, &bytes).await;
        if round % 4 != 0 {
            let (code, message) = error_fields(&answer);
            assert!(
                code == "08P01" || code == "28P01",
                "round {round}: {code} {message}"
            );
        }
    }
    server.assert_still_serving().await;
}

/// The drivers' own spellings: asyncpg's `$1::INTEGER`, psycopg 3's `%s::int`, psycopg2's
/// `'\x00ff'::bytea` (the script says what to install if a driver is missing).
#[tokio::test]
async fn drivers_cast_idioms_stored_null() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "casts.py");
}

/// COPY was a SQLite syntax error through every driver: psycopg 3's `cursor.copy()` both
/// ways, psycopg2's `copy_expert`, asyncpg's `copy_records_to_table` (binary format),
/// `copy_to_table` and `copy_from_query`; a bad row and a client's CopyFail leave nothing,
/// a COPY inside a transaction is the transaction's, and a client gone in the middle of its
/// data leaves nothing either (the script says what to install if a driver is missing).
#[tokio::test]
async fn copy_was_a_sqlite_syntax_error_through_the_drivers() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "copy_both_ways.py");
    server.assert_still_serving().await;
}

/// Runs `tests/clients/<script>` (Python, or JavaScript for node; real drivers) against
/// `server` as the admin, on the database `default`; it fails the test with its output if
/// it fails.
fn run_client_script(server: &crate::harness::TestServer, script: &str) {
    run_client_script_with_env(server, script, &[]);
}

/// Runs a client script as [`run_client_script`] does, with `env` set for it.
pub(crate) fn run_client_script_with_env(
    server: &crate::harness::TestServer,
    script: &str,
    env: &[(&str, &str)],
) {
    // A Java client runs as a single source file, with Debian's pgJDBC.
    let (interpreter, first): (&str, &[&str]) = if script.ends_with(".js") {
        ("node", &[])
    } else if script.ends_with(".java") {
        ("java", &["-cp", "/usr/share/java/postgresql.jar"])
    } else {
        ("python3", &[])
    };
    let script = format!("{}/../tests/clients/{script}", env!("CARGO_MANIFEST_DIR"));
    let port = server.port.to_string();
    let (ok, output) = crate::harness::run(
        std::process::Command::new(interpreter)
            .args(first)
            .args([
                script.as_str(),
                "127.0.0.1",
                &port,
                "admin",
                ADMIN_PASSWORD,
                "default",
            ])
            .envs(env.iter().copied()),
    );
    assert!(ok, "{output}");
}

/// Server-side cursors were SQLite syntax errors (`DECLARE … CURSOR`, `FETCH FORWARD n`),
/// so psycopg2's and psycopg 3's named cursors and SQLAlchemy's `stream_results` failed at
/// once. Each now reads every row, in order, with its types; a cursor WITH HOLD outlives
/// its commit.
#[tokio::test]
async fn named_cursors_were_a_syntax_error() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "cursors.py");
    server.assert_still_serving().await;
}

/// psycopg 3 names a date, timestamp, timestamptz, time, uuid, jsonb or numeric parameter's
/// type in its Parse, and Cairn refused each ("has type date, which Cairn does not take").
/// They are stored as PostgreSQL's text forms and compare as such.
#[tokio::test]
async fn psycopg3s_date_uuid_and_json_parameters_were_refused() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "typed_parameters.py");
    server.assert_still_serving().await;
}

/// pgJDBC's DatabaseMetaData.getPrimaryKeys and getIndexInfo were SQLite syntax errors
/// (`(information_schema._pg_expandarray(i.indkey)).n`, `(keys).x`, `trim(both '"' from
/// …)`); with them, what an unmodified pgJDBC does: typed parameters, a batch, a savepoint,
/// a fetch size, getTables and getColumns.
#[tokio::test]
async fn pgjdbcs_key_and_index_metadata_were_syntax_errors() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "PgJdbc.java");
    server.assert_still_serving().await;
}

/// The session SQL drivers and ORMs send at connect and around transactions was a SQLite
/// syntax error or "no such function": `SET extra_float_digits` (pgJDBC), `set_config`
/// (Django), `select pg_catalog.version()` and `current_user` (SQLAlchemy), `SHOW`,
/// `DEALLOCATE ALL` after a rollback (psycopg 3), `DISCARD ALL` (pools). Through psycopg 3
/// and psycopg2, with no overrides.
#[tokio::test]
async fn drivers_session_sql_was_a_syntax_error() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "session_sql.py");
    server.assert_still_serving().await;
}

/// SQLAlchemy failed at its first catalog query (pg_type, `pg_catalog.version()`), so no
/// model could be created or reflected. Its ORM now runs with no overrides through the
/// psycopg2, psycopg 3 and asyncpg dialects: create_all, reflection of columns, keys and
/// indexes (its pg_catalog queries: `unnest`, `generate_subscripts`, `array_agg` read as
/// arrays, `ANY(ARRAY[…])`, int2vector), CRUD with a relationship, a rolled-back flush.
#[tokio::test]
async fn sqlalchemy_reflection_failed_on_pg_catalog() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "sqlalchemy_orm.py");
    server.assert_still_serving().await;
}

/// node-postgres, with no overrides: parameters, RETURNING, a rolled-back transaction,
/// information_schema and `= ANY($1::int[])` work; and `count(*) OVER () AS total` came
/// back named `count` (the alias after a window lost to the call's name).
#[tokio::test]
async fn node_postgres_read_an_aliased_window_column_by_the_calls_name() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "node_pg.js");
    server.assert_still_serving().await;
}

/// asyncpg's pool resets a connection it takes back with `SELECT pg_advisory_unlock_all();
/// CLOSE ALL; UNLISTEN *; RESET ALL;`: the first failed ("no such function"), so the pool
/// threw the connection away at every release, and no advisory lock existed.
#[tokio::test]
async fn an_asyncpg_pool_could_not_take_a_connection_back() {
    let site = Site::standard();
    let server = site.start();
    run_client_script(&server, "pools.py");
    server.assert_still_serving().await;
}

/// A binary array parameter whose header claims 2^31 - 1 elements and carries none is
/// refused as an invalid binary value before anything is sized by its header (the decoder
/// sizes its buffer from the count: tens of GiB, which on a machine without overcommit is an
/// allocation failure, an abort of the whole server), and the server goes on.
#[tokio::test]
async fn an_array_parameter_claiming_more_elements_than_it_holds_is_refused() {
    #[derive(Debug)]
    struct Claiming;
    impl tokio_postgres::types::ToSql for Claiming {
        fn to_sql(
            &self,
            _: &tokio_postgres::types::Type,
            out: &mut bytes::BytesMut,
        ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
        {
            // One dimension, no NULLs, int8 elements, 0x7fffffff of them from index 1.
            for n in [1i32, 0, 20, 0x7fff_ffff, 1] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            Ok(tokio_postgres::types::IsNull::No)
        }
        fn accepts(_: &tokio_postgres::types::Type) -> bool {
            true
        }
        tokio_postgres::types::to_sql_checked!();
    }
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let refused = client
        .query("SELECT 1 WHERE 5 = ANY($1::int8[])", &[&Claiming])
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(&SqlState::INVALID_BINARY_REPRESENTATION),
        "{}",
        message(&refused)
    );
    // A real array works, and the server is still there.
    let rows = client
        .query("SELECT 1 WHERE 5 = ANY($1::int8[])", &[&vec![4i64, 5]])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    server.assert_still_serving().await;
}
