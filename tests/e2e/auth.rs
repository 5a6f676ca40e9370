//! Logins and roles.

use std::os::unix::fs::PermissionsExt;

use tokio_postgres::error::SqlState;

use crate::harness::{ADMIN_PASSWORD, READER_PASSWORD, Site, WRITER_PASSWORD, message};

#[tokio::test]
async fn wrong_password_and_unknown_user_are_refused_alike() {
    let site = Site::standard();
    let server = site.start();
    let err = server
        .connect("admin", "not-the-password", "default")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
    assert!(message(&err).contains("admin"), "{err}");
    let err = server
        .connect("mallory", "x", "default")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD), "{err:?}");
    server.assert_still_serving().await;
}

#[tokio::test]
async fn readonly_user_reads_but_cannot_write() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let reader = server
        .connect("reader", READER_PASSWORD, "default")
        .await
        .unwrap();
    let n: i64 = reader
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    for write in [
        "INSERT INTO t VALUES (2)",
        "CREATE TABLE u (y)",
        "DELETE FROM t",
    ] {
        let err = reader.batch_execute(write).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
            "{write}: {err}"
        );
        assert!(message(&err).contains("role readonly"), "{err}");
    }
    let err = reader.batch_execute("CREATE DATABASE x").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
    let n: i64 = admin
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}

#[tokio::test]
async fn readwrite_user_from_a_cairn_passwd_secret_writes_but_cannot_manage_databases() {
    let site = Site::standard();
    let server = site.start();
    let writer = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap();
    writer
        .batch_execute("CREATE TABLE w (x INTEGER); INSERT INTO w VALUES (1)")
        .await
        .unwrap();
    let err = writer
        .batch_execute("DROP DATABASE default")
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unset_password_variable_gets_a_generated_private_password() {
    let site = Site::new(
        r#"
[server]
listen = "127.0.0.1:0"
data_dir = "data"
[users.admin]
role = "admin"
password_env = "CAIRN_TEST_VARIABLE_NOBODY_SETS"
"#,
    );
    let server = site.start();
    let file = site.data_dir().join("credentials/admin.password");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        server.logs().contains(&file.display().to_string()),
        "the log must say where it is"
    );
    let password = std::fs::read_to_string(&file).unwrap();
    let client = server
        .connect("admin", password.trim(), "default")
        .await
        .unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(
        server
            .connect("admin", ADMIN_PASSWORD, "default")
            .await
            .is_err()
    );
}

/// A connection to a database that does not exist was refused without a log line (issue 17,
/// item 4).
#[tokio::test]
async fn a_login_to_an_unknown_database_left_no_trace() {
    let site = crate::harness::Site::standard();
    let server = site.start();
    let err = server
        .connect("admin", crate::harness::ADMIN_PASSWORD, "nope")
        .await
        .unwrap_err();
    assert!(
        crate::harness::message(&err).contains("does not exist"),
        "{err}"
    );
    server.wait_for_log("login refused");
    let logs = server.logs();
    let line = logs.lines().find(|l| l.contains("login refused")).unwrap();
    assert!(
        line.contains("user=admin")
            && line.contains("database=nope")
            && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    // The reason as the client reads it, with its SQLSTATE; it was pgwire's rendering,
    // "User provided error: ErrorInfo: FATAL, 3D000, …".
    assert!(
        line.contains("database \"nope\" does not exist") && line.contains("(3D000)"),
        "{line}"
    );
    assert!(!line.contains("ErrorInfo"), "{line}");
}
