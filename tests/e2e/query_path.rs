//! The query path (issue 22): each connection is served on a thread of its own; read-only
//! queries, and single writes outside a transaction, are tried briefly on it; those that take
//! longer, wait for a lock, or return more than a brief run holds, run on a statement thread.
//! Either way the client sees the same answers, timeouts and transactions.

use tokio_postgres::error::SqlState;

use crate::harness::{Site, message};

const ENDLESS: &str = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1::bigint) SELECT max(x) FROM c";

#[tokio::test]
async fn reads_that_outgrow_a_brief_run_answer_in_full_and_keep_their_transaction() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) INSERT INTO t SELECT x, hex(randomblob(16)) FROM c",
        )
        .await
        .unwrap();
    let point = client
        .prepare("SELECT id, v FROM t WHERE id = $1")
        .await
        .unwrap();
    for id in [1i64, 777, 200_000] {
        let row = client.query_one(&point, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), id);
        assert_eq!(row.get::<_, String>(1).len(), 32);
    }

    client.batch_execute("BEGIN").await.unwrap();
    // More rows than a brief run holds: every one arrives.
    let rows = client.query("SELECT id FROM t", &[]).await.unwrap();
    assert_eq!(rows.len(), 200_000);
    let sum: i64 = rows.iter().map(|r| r.get::<_, i64>(0)).sum();
    assert_eq!(sum, 200_000 * 200_001 / 2);
    // Longer than a brief run: the answer is the whole query's.
    let row = client.query_one(ENDLESS, &[&3_000_000i64]).await.unwrap();
    // (An expression's column is text when parameters keep it from being typed by its rows.)
    assert_eq!(row.get::<_, String>(0), "3000000");
    // Neither left the transaction failed.
    client
        .execute("INSERT INTO t(v) VALUES ('after')", &[])
        .await
        .unwrap();
    client.batch_execute("COMMIT").await.unwrap();
    let row = client
        .query_one("SELECT count(*) FROM t WHERE v = 'after'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);

    // A read-only query still ends at its statement timeout, and the session goes on.
    client
        .batch_execute("SET statement_timeout = 100")
        .await
        .unwrap();
    let err = client
        .query_one(ENDLESS, &[&i64::MAX])
        .await
        .expect_err("an endless query finished");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
    assert!(message(&err).contains("statement timeout"), "{err:?}");
    let row = client.query_one(&point, &[&5i64]).await.unwrap();
    assert_eq!(row.get::<_, i64>(0), 5);
}

/// The threads of the server process that serve connections, by their name.
fn connection_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "cairn-client")
        .count()
}

#[tokio::test]
async fn each_connection_is_served_on_a_thread_of_its_own_that_ends_with_it() {
    let site = Site::standard();
    let server = site.start();
    let pid = server.pid();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(server.admin("default").await);
    }
    assert_eq!(connection_threads(pid), 3);
    for client in &clients {
        client.simple_query("SELECT 1").await.unwrap();
    }
    drop(clients);
    // The threads end once the server has read each connection's end.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while connection_threads(pid) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connection threads outlived their connections"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    server.assert_still_serving().await;
}

/// A single write outside a transaction is tried on the connection's thread, waiting for a
/// lock only until its brief deadline; when another connection holds the write lock longer,
/// it waits for it on a statement thread as any write does, and is written once.
#[tokio::test]
async fn a_single_write_waits_for_a_held_lock_and_is_written_once() {
    let site = Site::standard();
    let server = site.start();
    let holder = server.admin("default").await;
    let writer = server.admin("default").await;
    holder
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE)")
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN IMMEDIATE; INSERT INTO t(v) VALUES ('held')")
        .await
        .unwrap();
    let insert = writer
        .prepare("INSERT INTO t(v) VALUES ($1)")
        .await
        .unwrap();
    let written = tokio::spawn(async move {
        let n = writer.execute(&insert, &[&"waited"]).await;
        (writer, n)
    });
    // The writer waits: its row is not there until the holder lets go.
    let count = holder
        .query_one("SELECT count(*) FROM t WHERE v = 'waited'", &[])
        .await
        .unwrap();
    assert_eq!(count.get::<_, i64>(0), 0);
    holder.batch_execute("COMMIT").await.unwrap();
    let (writer, n) = written.await.unwrap();
    assert_eq!(n.unwrap(), 1);
    let rows = writer
        .query("SELECT v FROM t ORDER BY id", &[])
        .await
        .unwrap();
    let values: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(values, ["held", "waited"]);
}

/// A single write of a value over what a brief run may make (1 MiB) failed with "string or
/// blob too big" once writes ran briefly (found in review): it is written the usual way.
#[tokio::test]
async fn a_single_write_of_a_value_over_a_mebibyte_is_written() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute("CREATE TABLE files(id INTEGER PRIMARY KEY, body BLOB)")
        .await
        .unwrap();
    let body = vec![7u8; 2 << 20];
    let n = client
        .execute("INSERT INTO files(body) VALUES ($1)", &[&body])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let row = client
        .query_one("SELECT length(body) FROM files", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 2 << 20);
}

/// A cancel did not end a wait for a lock (found after the session's own lock wait replaced
/// SQLite's busy timeout): the waiting statement went on waiting until its lock timeout and
/// then failed as a lock timeout. It ends at the cancel, as PostgreSQL's does.
#[tokio::test]
async fn a_cancel_did_not_end_a_wait_for_a_lock() {
    let site = Site::standard();
    let server = site.start();
    let holder = server.admin("default").await;
    let waiter = server.admin("default").await;
    holder
        .batch_execute("CREATE TABLE t(v TEXT); BEGIN IMMEDIATE; INSERT INTO t VALUES ('held')")
        .await
        .unwrap();
    waiter
        .batch_execute("SET lock_timeout = '20s'")
        .await
        .unwrap();
    let cancel = waiter.cancel_token();
    let (result, ()) = tokio::join!(
        waiter.simple_query("INSERT INTO t VALUES ('waiting')"),
        async {
            let watcher = server.admin("default").await;
            crate::hostile::wait_for_running(&watcher, "'waiting'").await;
            cancel.cancel_query(tokio_postgres::NoTls).await.unwrap();
        }
    );
    // The holder still holds the lock: only the cancel can have ended the wait.
    let err = result.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::QUERY_CANCELED),
        "{}",
        message(&err)
    );
    holder.batch_execute("COMMIT").await.unwrap();
    let rows = waiter.query("SELECT v FROM t", &[]).await.unwrap();
    let values: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(values, ["held"]);
}
