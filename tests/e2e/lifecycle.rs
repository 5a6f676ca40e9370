//! Start-up, shutdown, the data directory lock, log formats.

use crate::harness::{Site, TestServer, serve_until_exit};

#[tokio::test]
async fn sigterm_exits_zero_after_checkpointing() {
    let site = Site::standard();
    let server = site.start();
    let client = server.admin("default").await;
    client
        .batch_execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
        .await
        .unwrap();
    let (status, logs) = server.terminate();
    assert!(status.success(), "{status:?}\n{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    // Checkpointed: the write-ahead log was folded into the database file and emptied.
    let wal = site.data_dir().join("databases/default.sqlite-wal");
    let wal_len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
    assert_eq!(wal_len, 0, "WAL still holds {wal_len} bytes");
    let out = std::process::Command::new("sqlite3")
        .arg(site.data_dir().join("databases/default.sqlite"))
        .arg("SELECT sum(x) FROM t; PRAGMA integrity_check;")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "6\nok\n");
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let site = Site::standard();
    let first = site.start();
    let (status, stderr) = serve_until_exit(&site.config_path());
    // Refused: exit status 4, as the README's table says.
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("is in use by another cairn server"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", first.pid())), "{stderr}");
    // The first one is unaffected.
    let (status, logs) = first.terminate();
    assert!(status.success(), "{logs}");
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let site = Site::standard();
    let server = TestServer::start(&site.config_path(), &["--log-format", "json"]);
    let (status, logs) = server.terminate();
    assert!(status.success());
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not JSON: {line}"
        );
        assert!(line.contains("\"level\":"), "{line}");
    }
    assert!(
        logs.contains("\"message\":\"listening on 127.0.0.1:"),
        "{logs}"
    );
}

#[test]
fn every_resolved_path_is_logged_at_start_up() {
    let site = Site::standard();
    let server = site.start();
    let logs = server.logs();
    for path in [
        site.config_path(),
        site.data_dir(),
        site.data_dir().join("databases"),
        site.data_dir().join("cairn.lock"),
    ] {
        assert!(
            logs.contains(&path.display().to_string()),
            "{} not logged:\n{logs}",
            path.display()
        );
    }
    let (status, logs) = server.stop("INT");
    assert!(status.success(), "SIGINT should exit 0 too\n{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_statement_finish() {
    let site = Site::standard();
    let server =
        TestServer::start_with_log_level(&site.config_path(), &[], "info,cairn_server=debug");
    let client = server.admin("default").await;
    // A statement that runs for a while: counting to a few million in a recursive CTE. Sent
    // as one simple-protocol message, so that it is wholly running when shutdown begins.
    let running = tokio::spawn(async move {
        let messages = client
            .simple_query(
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 3000000) SELECT count(*) FROM c",
            )
            .await?;
        Ok::<_, tokio_postgres::Error>(messages.into_iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        }))
    });
    let stopped = tokio::task::spawn_blocking(move || {
        server.wait_for_log("statement running");
        server.terminate()
    });
    let count = running
        .await
        .unwrap()
        .expect("the running statement must complete");
    assert_eq!(count.as_deref(), Some("3000000"));
    let (status, logs) = stopped.await.unwrap();
    assert!(status.success(), "{logs}");
    assert!(logs.contains("waiting for running statements"), "{logs}");
}
