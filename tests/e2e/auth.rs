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

/// A user could be added, or a password changed, only by editing the config and restarting.
/// Now an admin makes users in SQL (psql's `\du` lists them with their role), a user changes
/// their own password with psql's `\password` (a SCRAM verifier crosses the wire, never the
/// password), users made in SQL survive a restart, and DROP USER ends the user's sessions.
/// The config's users stay as the config says.
#[tokio::test]
async fn users_could_only_be_added_by_editing_the_config() {
    use crate::psql::psql_as;
    let site = Site::standard();
    let server = site.start();
    let admin = ("admin", ADMIN_PASSWORD);
    let (ok, _, stderr) = psql_as(
        &server,
        admin,
        "default",
        &[
            "-c",
            "CREATE TABLE t(x INTEGER)",
            "-c",
            "CREATE USER alice WITH PASSWORD 'alice-1' IN ROLE readwrite",
            "-c",
            "CREATE ROLE bob LOGIN PASSWORD 'bob-1'",
        ],
        b"",
    );
    assert!(ok, "{stderr}");
    let (ok, stdout, stderr) = psql_as(&server, admin, "default", &["-c", "\\du"], b"");
    assert!(ok, "{stderr}");
    for row in [
        " alice     |                                               | {pg_read_all_data,pg_write_all_data}",
        " bob       |                                               | {pg_read_all_data}",
        " reader    |                                               | {pg_read_all_data}",
    ] {
        assert!(stdout.contains(row), "{row}\n{stdout}");
    }

    // alice writes (readwrite); bob only reads (readonly, the default) and may not make users.
    let alice = server.connect("alice", "alice-1", "default").await.unwrap();
    alice
        .batch_execute("INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let bob = server.connect("bob", "bob-1", "default").await.unwrap();
    let err = bob
        .batch_execute("INSERT INTO t VALUES (2)")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION));
    for statement in [
        "CREATE USER eve PASSWORD 'x'",
        "ALTER USER alice PASSWORD 'x'",
        "DROP USER alice",
    ] {
        let err = bob.batch_execute(statement).await.unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{statement}"
        );
        assert!(message(&err).contains("needs the admin role"), "{err}");
    }

    // alice's own \password: psql asks twice and sends ALTER USER … PASSWORD 'SCRAM-SHA-256$…'.
    let (ok, _, stderr) = psql_as(
        &server,
        ("alice", "alice-1"),
        "default",
        &["-c", "\\password"],
        b"alice-2\nalice-2\n",
    );
    assert!(ok, "{stderr}");
    for file in ["users.sqlite", "users.sqlite-wal"] {
        let stored = std::fs::read(site.data_dir().join("system").join(file)).unwrap_or_default();
        assert!(
            !stored.windows(7).any(|w| w == b"alice-2"),
            "a password was stored in {file}"
        );
    }

    // bob changes his own password; its text is not shown to an admin who looks.
    bob.batch_execute("ALTER USER CURRENT_USER PASSWORD 'bob-2'")
        .await
        .unwrap();
    let admin_client = server.admin("default").await;
    let sessions = admin_client.simple_query("SHOW SESSIONS").await.unwrap();
    let shown: Vec<String> = sessions
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => {
                Some(format!("{} {}", row.get("user")?, row.get("query")?))
            }
            _ => None,
        })
        .collect();
    assert!(shown.iter().any(|s| s.starts_with("bob ")), "{shown:?}");
    assert!(!shown.iter().any(|s| s.contains("bob-2")), "{shown:?}");
    let err = admin_client
        .batch_execute("BEGIN; CREATE USER zed")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::ACTIVE_SQL_TRANSACTION));
    drop(admin_client);

    // The config's users are the config's.
    for statement in [
        "ALTER USER reader PASSWORD 'x'",
        "DROP USER reader",
        "CREATE USER reader",
    ] {
        let (ok, _, stderr) = psql_as(&server, admin, "default", &["-c", statement], b"");
        assert!(!ok);
        assert!(stderr.contains("[users.reader]"), "{statement}: {stderr}");
    }

    drop((alice, bob));
    drop(server);
    let server = site.start();
    let err = server
        .connect("alice", "alice-1", "default")
        .await
        .err()
        .unwrap();
    assert_eq!(
        err.code(),
        Some(&SqlState::INVALID_PASSWORD),
        "the old password"
    );
    let alice = server.connect("alice", "alice-2", "default").await.unwrap();
    let n: i64 = alice
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    server.connect("bob", "bob-2", "default").await.unwrap();
    server
        .connect("reader", READER_PASSWORD, "default")
        .await
        .unwrap();

    // DROP USER ends alice's session, and she cannot log in again.
    let (ok, stdout, stderr) = psql_as(
        &server,
        admin,
        "default",
        &["-c", "DROP USER alice, bob"],
        b"",
    );
    assert!(ok && stdout.contains("DROP ROLE"), "{stderr}");
    let err = alice.simple_query("SELECT 1").await.unwrap_err();
    assert!(
        err.is_closed() || err.code() == Some(&SqlState::ADMIN_SHUTDOWN),
        "{err:?}"
    );
    let err = server
        .connect("alice", "alice-2", "default")
        .await
        .err()
        .unwrap();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
    // DROP USER answered once her sessions had ended: none is left to see.
    let admin_client = server.admin("default").await;
    let sessions = admin_client.simple_query("SHOW SESSIONS").await.unwrap();
    let users: Vec<&str> = sessions
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get("user"),
            _ => None,
        })
        .collect();
    assert!(
        !users.contains(&"alice") && !users.contains(&"bob"),
        "{users:?}"
    );
    admin_client
        .batch_execute("DROP USER IF EXISTS alice")
        .await
        .unwrap();
    server.assert_still_serving().await;
}
