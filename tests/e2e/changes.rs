//! Row changes of committed transactions delivered to a plugin (ABI 1.8), with the real
//! binary and the example audit plugin: a concurrent transfer workload with rolled-back
//! transactions, failed statements and savepoints rolled back, and the log holding exactly
//! the committed changes, in commit order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::harness::{Site, message, standard_config, texts};
use crate::plugins::install_rust_plugin;

/// What one committed transaction changed: (op, rowid) in order.
type Changes = Vec<(String, i64)>;

fn updates(ids: &[i64]) -> Changes {
    ids.iter().map(|id| ("update".to_owned(), *id)).collect()
}

/// The audit log's rows of `database`, one group per commit, in the order they were logged.
async fn logged(client: &tokio_postgres::Client, database: &str) -> Vec<(i64, Changes)> {
    let rows = client
        .query(
            "SELECT sequence, op, row_id FROM audit_log WHERE database_name = $1 ORDER BY id",
            &[&database],
        )
        .await
        .unwrap();
    let mut groups: Vec<(i64, Changes)> = Vec::new();
    for row in rows {
        let (sequence, op, rowid): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
        match groups.last_mut() {
            Some((s, changes)) if *s == sequence => changes.push((op, rowid)),
            _ => groups.push((sequence, vec![(op, rowid)])),
        }
    }
    groups
}

/// Waits until the log holds `rows` rows (the plugin writes them asynchronously).
async fn until_logged(client: &tokio_postgres::Client, rows: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let count: i64 = client
            .query_one("SELECT count(*) FROM audit_log", &[])
            .await
            .unwrap()
            .get(0);
        assert!(
            count <= rows,
            "the log has {count} rows, more than the {rows} expected"
        );
        if count == rows {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the log has {count} rows of {rows} after a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_plugin_logs_exactly_the_committed_changes_in_commit_order() {
    let site = Site::new(&format!(
        "{}\n[plugins.audit]\nlibrary = \"libaudit_plugin.so\"\nrole = \"readwrite\"\n[plugins.audit.config]\ndatabases = [\"bank\"]\ntables = [\"accounts\"]\nlog_database = \"default\"\n",
        standard_config()
    ));
    install_rust_plugin(&site, "audit_plugin", "libaudit_plugin.so");
    let server = site.start();
    let log = server.admin("default").await;
    log.batch_execute("CREATE DATABASE bank").await.unwrap();
    let bank = server.admin("bank").await;
    bank.batch_execute(
        "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL CHECK (balance >= 0));
         CREATE TABLE notes(n TEXT);
         WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 10) INSERT INTO accounts(id, balance) SELECT n, 100 FROM c;
         INSERT INTO notes VALUES ('not audited')",
    )
    .await
    .unwrap_or_else(|e| panic!("{}", message(&e)));
    let mut expected: Vec<Changes> = vec![(1..=10).map(|id| ("insert".to_owned(), id)).collect()];

    // Four clients moving money: every fifth transfer rolled back, every seventh overdraws
    // (the CHECK fails it, then it is rolled back), every third takes back part of itself
    // with ROLLBACK TO a savepoint.
    let mut clients = Vec::new();
    for worker in 0..4i64 {
        let client = server.admin("bank").await;
        clients.push(tokio::spawn(async move {
            let mut committed: Vec<Changes> = Vec::new();
            for i in 0..40i64 {
                let n = worker * 40 + i;
                let (from, to, third) = (n % 10 + 1, (n * 3 + 1) % 10 + 1, (n * 7 + 2) % 10 + 1);
                let amount: i64 = if n % 7 == 3 { 1_000_000 } else { 1 };
                client.batch_execute("BEGIN IMMEDIATE").await.unwrap();
                let debit = client
                    .execute(
                        "UPDATE accounts SET balance = balance - CAST($1 AS INTEGER) WHERE id = CAST($2 AS INTEGER)",
                        &[&amount, &from],
                    )
                    .await;
                if let Err(e) = debit {
                    // Only the overdrafts fail, on the CHECK.
                    assert_eq!(amount, 1_000_000, "{}", message(&e));
                    client.batch_execute("ROLLBACK").await.unwrap();
                    continue;
                }
                let credit = format!("UPDATE accounts SET balance = balance + {amount} WHERE id = {to}");
                let changes = if n % 3 == 0 {
                    client
                        .batch_execute(&format!(
                            "SAVEPOINT undo; {credit}; ROLLBACK TO undo; UPDATE accounts SET balance = balance + {amount} WHERE id = {third}; RELEASE undo"
                        ))
                        .await
                        .unwrap_or_else(|e| panic!("{}", message(&e)));
                    updates(&[from, third])
                } else {
                    client.batch_execute(&credit).await.unwrap();
                    updates(&[from, to])
                };
                if n % 5 == 4 {
                    client.batch_execute("ROLLBACK").await.unwrap();
                } else {
                    client.batch_execute("COMMIT").await.unwrap();
                    committed.push(changes);
                }
            }
            committed
        }));
    }
    for client in clients {
        expected.extend(client.await.unwrap());
    }
    // Emptied in one statement: still one delete per row.
    bank.batch_execute("DELETE FROM accounts; INSERT INTO notes VALUES ('still not')")
        .await
        .unwrap();
    expected.push((1..=10).map(|id| ("delete".to_owned(), id)).collect());

    let total: usize = expected.iter().map(Vec::len).sum();
    until_logged(&log, total as i64).await;
    let groups = logged(&log, "bank").await;
    // In commit order: numbers increase as logged.
    assert!(
        groups.windows(2).all(|w| w[0].0 < w[1].0),
        "commit numbers out of order: {:?}",
        groups.iter().map(|g| g.0).collect::<Vec<_>>()
    );
    let got: Vec<Changes> = groups.into_iter().map(|(_, changes)| changes).collect();
    assert_eq!(got.first(), expected.first(), "the first commit");
    assert_eq!(got.last(), expected.last(), "the last commit");
    // The transfers committed concurrently: the same commits, whichever order they took.
    let count = |commits: &[Changes]| {
        let mut counted: BTreeMap<Changes, usize> = BTreeMap::new();
        for c in commits {
            *counted.entry(c.clone()).or_default() += 1;
        }
        counted
    };
    assert_eq!(count(&got), count(&expected));
    assert!(
        texts(&log, "SHOW PLUGIN audit").await.contains(
            &["row changes", "bank", "accounts", ""]
                .map(String::from)
                .to_vec()
        ),
        "SHOW PLUGIN audit lists its subscription"
    );
    // Nothing of the unsubscribed table, nothing missed.
    assert_eq!(
        texts(
            &log,
            "SELECT count(*) FROM audit_log WHERE table_name <> 'accounts' OR op IN ('missed', 'truncated')"
        )
        .await,
        [["0"]]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_sees_the_statements_of_every_session_but_its_own() {
    let site = Site::new(&format!(
        "{}\n[plugins.audit]\nlibrary = \"libaudit_plugin.so\"\nrole = \"readwrite\"\n[plugins.audit.config]\ndatabases = [\"nothing_here\"]\nlog_statements_over_ms = 0\n",
        standard_config()
    ));
    install_rust_plugin(&site, "audit_plugin", "libaudit_plugin.so");
    let server = site.start();
    let client = server.admin("default").await;
    // Both protocols, one failing; a marker keeps the test's own polling out of the count.
    client
        .batch_execute("CREATE TABLE marked(x INTEGER); INSERT INTO marked VALUES (1), (2)")
        .await
        .unwrap();
    client
        .query("SELECT x FROM marked WHERE x > $1", &[&0i64])
        .await
        .unwrap();
    let failed = client
        .simple_query("SELECT * FROM marked_missing")
        .await
        .unwrap_err();
    assert!(
        message(&failed).contains("no such table"),
        "{}",
        message(&failed)
    );
    let wanted = 4;
    let deadline = Instant::now() + Duration::from_secs(60);
    let rows = loop {
        let rows = client
            .query(
                "SELECT user_name, text, rows, coalesce(sqlstate, ''), duration_ms >= 0 FROM statement_log WHERE text LIKE '%marked%' AND text NOT LIKE '%statement_log%' ORDER BY id",
                &[],
            )
            .await
            .unwrap();
        if rows.len() >= wanted {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {wanted} statements logged",
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let got: Vec<(String, String, i64, String, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let row = |text: &str, rows: i64, sqlstate: &str| {
        (
            "admin".to_owned(),
            text.to_owned(),
            rows,
            sqlstate.to_owned(),
            1,
        )
    };
    assert_eq!(
        got,
        [
            row("CREATE TABLE marked(x INTEGER)", 0, ""),
            row("INSERT INTO marked VALUES (1), (2)", 2, ""),
            row("SELECT x FROM marked WHERE x > $1", 2, ""),
            row("SELECT * FROM marked_missing", 0, "42P01"),
        ]
    );
    // The plugin's own INSERTs into its log are not in it.
    assert_eq!(
        texts(
            &client,
            "SELECT count(*) FROM statement_log WHERE user_name LIKE 'plugin:%'"
        )
        .await,
        [["0"]]
    );
    assert!(
        texts(&client, "SHOW PLUGIN audit").await.contains(
            &["statements", "running at least 0 ms", "", ""]
                .map(String::from)
                .to_vec()
        )
    );
}
