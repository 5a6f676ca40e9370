//! The PostgreSQL protocol as tokio-postgres speaks it: simple and extended queries,
//! parameters, types, errors, transactions, concurrent writers.

use tokio_postgres::error::SqlState;

use crate::harness::{ADMIN_PASSWORD, Site, message};

#[tokio::test]
async fn rows_written_with_parameters_survive_a_restart() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE DATABASE shop").await.unwrap();
    let shop = server.admin("shop").await;
    shop.batch_execute(
        "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, photo BLOB, note TEXT)",
    )
    .await
    .unwrap();
    let insert = shop
        .prepare("INSERT INTO items (id, name, price, photo, note) VALUES ($1, $2, $3, $4, $5)")
        .await
        .unwrap();
    for i in 0..20i64 {
        let photo: Vec<u8> = vec![i as u8, 0, 255];
        let note: Option<&str> = None;
        let n = shop
            .execute(
                &insert,
                &[&i, &format!("item-{i}"), &(i as f64 * 1.25), &photo, &note],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    drop((admin, shop));
    let (status, logs) = server.terminate();
    assert!(
        status.success(),
        "SIGTERM should exit 0, got {status:?}\n{logs}"
    );

    let server = site.start();
    let shop = server.admin("shop").await;
    let rows = shop
        .query(
            "SELECT id, name, price, photo, note FROM items WHERE id >= $1 ORDER BY id",
            &[&10i64],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 10);
    let first = &rows[0];
    assert_eq!(first.get::<_, i64>(0), 10);
    assert_eq!(first.get::<_, String>(1), "item-10");
    assert_eq!(first.get::<_, f64>(2), 12.5);
    assert_eq!(first.get::<_, Vec<u8>>(3), vec![10u8, 0, 255]);
    assert_eq!(first.get::<_, Option<String>>(4), None);
}

#[tokio::test]
async fn unknown_database_is_refused_with_3d000() {
    let site = Site::standard();
    let server = site.start();
    let err = server
        .connect("admin", ADMIN_PASSWORD, "nosuch")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err:?}");
    assert!(message(&err).contains("\"nosuch\" does not exist"), "{err}");
    server.assert_still_serving().await;
}

#[tokio::test]
async fn bad_sql_and_constraint_violations_leave_the_connection_usable() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let err = client.batch_execute("SELEKT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR), "{err:?}");
    assert!(message(&err).contains("syntax error"), "{err}");

    let err = client
        .query("SELECT * FROM missing", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err:?}");

    client
        .batch_execute("CREATE TABLE u (k TEXT PRIMARY KEY, n INTEGER NOT NULL)")
        .await
        .unwrap();
    client
        .execute("INSERT INTO u VALUES ($1, $2)", &[&"a", &1i64])
        .await
        .unwrap();
    let err = client
        .execute("INSERT INTO u VALUES ($1, $2)", &[&"a", &2i64])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION), "{err:?}");
    assert!(
        message(&err).contains("UNIQUE constraint failed: u.k"),
        "{err}"
    );
    let err = client
        .batch_execute("INSERT INTO u VALUES ('b', NULL)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::NOT_NULL_VIOLATION), "{err:?}");

    let n: i64 = client
        .query_one("SELECT count(*) FROM u", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn transactions_commit_and_roll_back() {
    let site = Site::standard();
    let server = site.start();
    let mut client = server.admin("default").await;
    client
        .batch_execute("CREATE TABLE t (x INTEGER)")
        .await
        .unwrap();

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&1i64])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO t VALUES ($1)", &[&2i64])
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // A failed statement aborts the transaction, as in PostgreSQL.
    client
        .batch_execute("BEGIN; INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    client.batch_execute("SELECT nope").await.unwrap_err();
    let err = client
        .batch_execute("INSERT INTO t VALUES (4)")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::IN_FAILED_SQL_TRANSACTION),
        "{err}"
    );
    client.batch_execute("ROLLBACK").await.unwrap();

    let values: Vec<i64> = client
        .query("SELECT x FROM t ORDER BY x", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(values, vec![2]);
}

#[tokio::test]
async fn a_multi_statement_query_runs_in_order_and_atomically() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let messages = client
        .simple_query("CREATE TABLE m (x INTEGER UNIQUE); INSERT INTO m VALUES (1), (2); SELECT sum(x) AS s FROM m")
        .await
        .unwrap();
    let sum = messages
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get("s").map(str::to_owned),
            _ => None,
        })
        .unwrap();
    assert_eq!(sum, "3");
    // The second statement fails, so the first is rolled back with it.
    client
        .batch_execute("INSERT INTO m VALUES (5); INSERT INTO m VALUES (1)")
        .await
        .unwrap_err();
    let n: i64 = client
        .query_one("SELECT count(*) FROM m", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);
}

#[tokio::test]
async fn values_keep_their_types_in_the_binary_protocol() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    let row = client
        .query_one(
            "SELECT 9223372036854775807 AS big, -0.5 AS half, 'héllo ✓' AS text, x'00ff' AS bytes, NULL AS absent",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, i64>("big"), i64::MAX);
    assert_eq!(row.get::<_, f64>("half"), -0.5);
    assert_eq!(row.get::<_, String>("text"), "héllo ✓");
    assert_eq!(row.get::<_, Vec<u8>>("bytes"), vec![0u8, 255]);
    assert_eq!(row.get::<_, Option<String>>("absent"), None);
}

#[tokio::test]
async fn eight_concurrent_writers_lose_no_rows() {
    const WRITERS: i64 = 8;
    const INSERTS: i64 = 500;
    let site = Site::standard();
    let server = site.start();
    let setup = server.admin("default").await;
    setup
        .batch_execute("CREATE TABLE hits (writer INTEGER, n INTEGER, PRIMARY KEY (writer, n))")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let client = server.admin("default").await;
        tasks.push(tokio::spawn(async move {
            let insert = client
                .prepare("INSERT INTO hits (writer, n) VALUES ($1, $2)")
                .await
                .unwrap();
            for n in 0..INSERTS {
                client.execute(&insert, &[&writer, &n]).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let n: i64 = setup
        .query_one("SELECT count(*) FROM hits", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, WRITERS * INSERTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_write_transactions_wait_instead_of_failing() {
    const CLIENTS: i64 = 4;
    const TRANSFERS: i64 = 50;
    let site = Site::standard();
    let server = site.start();
    let setup = server.admin("default").await;
    setup
        .batch_execute(
            "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
             INSERT INTO accounts VALUES (1, 1000), (2, 1000), (3, 1000), (4, 1000)",
        )
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let mut client = server.admin("default").await;
        tasks.push(tokio::spawn(async move {
            for t in 0..TRANSFERS {
                let (from, to) = (1 + (c + t) % 4, 1 + (c + t + 1) % 4);
                let tx = client.transaction().await?;
                let balance: i64 = tx
                    .query_one("SELECT balance FROM accounts WHERE id = $1", &[&from])
                    .await?
                    .get(0);
                tx.execute(
                    "UPDATE accounts SET balance = $1 WHERE id = $2",
                    &[&(balance - 7), &from],
                )
                .await?;
                tx.execute(
                    "UPDATE accounts SET balance = balance + 7 WHERE id = $1",
                    &[&to],
                )
                .await?;
                tx.commit().await?;
            }
            Ok::<_, tokio_postgres::Error>(())
        }));
    }
    for task in tasks {
        if let Err(e) = task.await.unwrap() {
            panic!("a transfer failed: {}", message(&e));
        }
    }
    let total: i64 = setup
        .query_one("SELECT sum(balance) FROM accounts", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(total, 4000);
}

/// ROLLBACK (or COMMIT) with no transaction open was an error ("cannot rollback - no
/// transaction is active"), where PostgreSQL answers it (with a warning): pools and ORMs
/// that roll back on every return of a connection logged an error each time. It is answered.
#[tokio::test]
async fn a_rollback_with_no_transaction_was_an_error() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    for sql in ["ROLLBACK", "COMMIT", "END", "ROLLBACK TRANSACTION"] {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", message(&e)));
    }
    // A transaction still begins, commits and rolls back as before.
    client
        .batch_execute("CREATE TABLE t(x); BEGIN; INSERT INTO t VALUES (1); ROLLBACK")
        .await
        .unwrap();
    let n: i64 = client
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // ROLLBACK TO a savepoint that does not exist is still refused.
    let err = client
        .batch_execute("ROLLBACK TO SAVEPOINT nowhere")
        .await
        .unwrap_err();
    assert!(message(&err).contains("nowhere"), "{}", message(&err));
}
