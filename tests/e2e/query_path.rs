//! The query path (issue 22): read-only queries are tried briefly on the connection's own
//! task; those that take longer, or return more than a brief run holds, run on a thread of
//! their own. Either way the client sees the same answers, timeouts and transactions.

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
