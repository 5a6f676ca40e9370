//! The real `psql` client against the real server.

use std::process::Command;

use crate::harness::{ADMIN_PASSWORD, Site, TestServer};

pub(crate) fn psql(server: &TestServer, database: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("psql")
        .arg(format!(
            "postgresql://admin@127.0.0.1:{}/{database}",
            server.port
        ))
        .args(["-X", "-v", "ON_ERROR_STOP=1"])
        .args(args)
        .env("PGPASSWORD", ADMIN_PASSWORD)
        .env("PGCONNECT_TIMEOUT", "30")
        .output()
        .expect("psql must be installed (.ci/run installs postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn psql_runs_a_script_and_shows_rows_and_tags() {
    let site = Site::standard();
    let server = site.start();
    let script = site.dir.path().join("script.sql");
    std::fs::write(
        &script,
        "CREATE DATABASE inventory;\n\\connect inventory\nCREATE TABLE parts (id INTEGER PRIMARY KEY, name TEXT);\nINSERT INTO parts (name) VALUES ('bolt'), ('nut');\nSELECT id, name FROM parts ORDER BY id;\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = psql(&server, "default", &["-f", script.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("CREATE DATABASE"), "{stdout}");
    assert!(stdout.contains("INSERT 0 2"), "{stdout}");
    assert!(stdout.contains("  1 | bolt"), "{stdout}");
    assert!(stdout.contains("(2 rows)"), "{stdout}");

    let (ok, stdout, _) = psql(
        &server,
        "inventory",
        &["-A", "-t", "-c", "SELECT count(*) FROM parts"],
    );
    assert!(ok);
    assert_eq!(stdout.trim(), "2");
}

#[test]
fn psql_reports_errors_with_sqlite_messages_and_keeps_going() {
    let site = Site::standard();
    let server = site.start();
    let (ok, _, stderr) = psql(&server, "default", &["-c", "SELECT * FROM nowhere"]);
    assert!(!ok);
    assert!(
        stderr.contains("ERROR:  no such table: nowhere"),
        "{stderr}"
    );
    let (ok, _, stderr) = psql(&server, "missing", &["-c", "SELECT 1"]);
    assert!(!ok);
    assert!(
        stderr.contains("FATAL:  database \"missing\" does not exist"),
        "{stderr}"
    );
    let (ok, stdout, _) = psql(&server, "default", &["-A", "-t", "-c", "SELECT 40 + 2"]);
    assert!(ok);
    assert_eq!(stdout.trim(), "42");
}
