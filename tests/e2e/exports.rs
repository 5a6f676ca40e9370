//! EXPORT and IMPORT DATABASE with the real binary: round trips proven by `sqlite3 .dump`,
//! files read by `zcat` and `jq`, damaged files refused, consistency under writers, and the
//! `cairn export` / `cairn import` CLI.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_postgres::SimpleQueryMessage;

use crate::harness::{Site, backups_dir, cairn, column, message, refused, run};
use crate::psql::psql;

fn database_file(site: &Site, name: &str) -> PathBuf {
    site.data_dir()
        .join("databases")
        .join(format!("{name}.sqlite"))
}

/// `sqlite3 file .dump` (waiting out the server's brief locks, as any second process must).
fn dump(file: &Path) -> String {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(file)
        .arg(".dump")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every storage class and its edge values, tables of every shape, indexes, a view and a
/// trigger, AUTOINCREMENT with a gap, and statistics.
const EVERYTHING: &str = "
    PRAGMA user_version = 42;
    CREATE TABLE kinds(a, b INTEGER, c REAL, d TEXT, e BLOB);
    INSERT INTO kinds VALUES (NULL, -9223372036854775808, 1.5, 'plain', x'');
    INSERT INTO kinds VALUES (9223372036854775807, 0, 0.1, 'emoji 🦀, accents é, CJK 漢字, ''quote''', x'00ff10');
    INSERT INTO kinds VALUES (-0.0, 42, 9e999, CAST(x'6e756c0062797465' AS TEXT), zeroblob(3));
    INSERT INTO kinds VALUES (5e-324, NULL, -9e999, replace(hex(zeroblob(300000)), '00', 'ab'), NULL);
    INSERT INTO kinds VALUES (1e300, 2.2250738585072014e-308, -1.7976931348623157e308, '', x'01');
    INSERT INTO kinds(rowid, a) VALUES (1000, 'after a gap in the rowids');
    CREATE TABLE people(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, email TEXT UNIQUE,
                        label TEXT GENERATED ALWAYS AS (name || ' <' || email || '>') VIRTUAL);
    INSERT INTO people(name, email) VALUES ('ann', 'a@example.com'), ('bob', 'b@example.com'), ('cy', 'c@example.com');
    DELETE FROM people WHERE id = 3;
    CREATE TABLE settings(key TEXT PRIMARY KEY, value) WITHOUT ROWID;
    INSERT INTO settings VALUES ('zeta', 1), ('alpha', x'beef');
    CREATE INDEX kinds_b ON kinds(b);
    CREATE INDEX people_name ON people(name DESC);
    CREATE VIEW names AS SELECT name FROM people ORDER BY name;
    CREATE TRIGGER people_audit AFTER INSERT ON people
      BEGIN INSERT INTO settings VALUES ('audit ' || new.id, new.name); END;
    ANALYZE main;
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_imports_into_a_database_whose_dump_is_identical() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE DATABASE everything")
        .await
        .unwrap();
    let source = server.admin("everything").await;
    source.batch_execute(EVERYTHING).await.unwrap();

    let (ok, stdout, stderr) = psql(
        &server,
        "everything",
        &["-A", "-t", "-c", "EXPORT DATABASE TO 'everything.json.gz'"],
    );
    assert!(ok, "{stderr}");
    let file = backups_dir(&site).join("everything.json.gz");
    // id|database|path|bytes|tables|rows|duration: 3 tables of our own and 3 SQLite made
    // (sqlite_sequence, and the server's SQLite keeps sqlite_stat4 besides sqlite_stat1).
    assert!(
        stdout.contains(&format!("|everything|{}|", file.display())) && stdout.contains("|6|27|"),
        "{stdout}"
    );

    // Ordinary tools read it: gzip checks it, jq reads every line.
    let (ok, out) = run(Command::new("gzip").arg("-t").arg(&file));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("sh").arg("-c").arg(format!(
        "zcat '{}' | jq -c 'if type == \"object\" then (.type // .format) else \"row\" end' | sort | uniq -c",
        file.display()
    )));
    assert!(ok, "{out}");
    for expected in [
        "1 \"cairn-export\"",
        "6 \"table\"",
        "27 \"row\"",
        "2 \"index\"",
        "1 \"view\"",
        "1 \"trigger\"",
        "1 \"end\"",
    ] {
        assert!(out.contains(expected), "{expected} in {out}");
    }

    let rows = column(&admin, "IMPORT DATABASE copy FROM 'everything.json.gz'").await;
    assert_eq!(rows, ["copy"; 6], "one row per table");
    let report = admin
        .simple_query("IMPORT DATABASE copy2 FROM 'everything.json.gz'")
        .await
        .unwrap();
    let per_table: Vec<String> = report
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(format!("{}={}", row.get(1)?, row.get(2)?)),
            _ => None,
        })
        .collect();
    assert_eq!(
        per_table,
        [
            "kinds=6",
            "people=2",
            "settings=2",
            "sqlite_sequence=1",
            "sqlite_stat1=4",
            "sqlite_stat4=12"
        ]
    );
    drop(source);

    let original = dump(&database_file(&site, "everything"));
    assert!(
        original.contains("9223372036854775807") && original.contains("1e999"),
        "{original}"
    );
    assert_eq!(dump(&database_file(&site, "copy")), original);
    assert_eq!(dump(&database_file(&site, "copy2")), original);
    // `.dump` prints -0.0 as 0.0; exporting the copy again shows every value bit for bit
    // (floats are written in their shortest exact form): only the header differs.
    admin
        .batch_execute("EXPORT DATABASE copy TO 'copy.json.gz'")
        .await
        .unwrap();
    let lines = |name: &str| {
        let (ok, text) = run(Command::new("zcat").arg(backups_dir(&site).join(name)));
        assert!(ok, "{text}");
        text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>()
    };
    let exported = lines("everything.json.gz");
    assert!(
        exported
            .iter()
            .any(|l| l.starts_with("[3,-0.0,42,{\"real\":\"Infinity\"},\"nul\\u0000byte\"")),
        "{exported:?}"
    );
    assert_eq!(lines("copy.json.gz"), exported);
    let copy = server.admin("copy").await;
    assert_eq!(column(&copy, "PRAGMA user_version").await, ["42"]);
    assert_eq!(
        column(&copy, "SELECT label FROM people WHERE id = 2").await,
        ["bob <b@example.com>"]
    );
    // The trigger came over, after the rows: it fires now, and did not during the import.
    copy.batch_execute("INSERT INTO people(name, email) VALUES ('dee', 'd@example.com')")
        .await
        .unwrap();
    assert_eq!(
        column(
            &copy,
            "SELECT id || ' ' || value FROM people JOIN settings ON key = 'audit ' || id"
        )
        .await,
        ["4 dee"]
    );

    let history = column(
        &admin,
        "SELECT kind || ' ' || status || ' ' || progress_percent FROM backups() ORDER BY id",
    )
    .await;
    assert_eq!(
        history,
        [
            "export complete 100.0",
            "import complete 100.0",
            "import complete 100.0",
            "export complete 100.0"
        ]
    );
    server.assert_still_serving().await;
}

/// A gzip file holding `text`.
fn gzip(path: &Path, text: &str) {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_exports_are_refused_with_the_line_and_leave_no_database() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute(EVERYTHING).await.unwrap();
    admin
        .batch_execute("EXPORT DATABASE TO 'good.json.gz'")
        .await
        .unwrap();
    let dir = backups_dir(&site);
    let good = std::fs::read(dir.join("good.json.gz")).unwrap();
    let (ok, text) = run(Command::new("zcat").arg(dir.join("good.json.gz")));
    assert!(ok, "{text}");
    let lines: Vec<&str> = text.lines().collect();

    // Cut inside the compressed stream.
    std::fs::write(dir.join("cut.json.gz"), &good[..good.len() * 2 / 3]).unwrap();
    // Cut at a line boundary, in a valid gzip file: the end line is missing.
    gzip(
        &dir.join("short.json.gz"),
        &(lines[..lines.len() - 1].join("\n") + "\n"),
    );
    // A version from the future.
    let future = text.replacen("\"version\":1,", "\"version\":2,", 1);
    gzip(&dir.join("future.json.gz"), &future);
    // Line 4 (a row of `kinds`) broken in the middle.
    let mut broken: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    broken[3] = broken[3][..broken[3].len() / 2].to_owned();
    gzip(&dir.join("broken.json.gz"), &(broken.join("\n") + "\n"));
    // A row dropped: the table's count no longer matches.
    let mut dropped: Vec<&str> = lines.clone();
    dropped.remove(3);
    gzip(&dir.join("dropped.json.gz"), &(dropped.join("\n") + "\n"));

    for (file, expected) in [
        ("cut.json.gz", "line "),
        (
            "short.json.gz",
            &format!("line {}: the file ends before its end line", lines.len()) as &str,
        ),
        (
            "future.json.gz",
            "line 1: format version 2 is not one this server reads",
        ),
        ("broken.json.gz", "line 4: malformed row"),
        ("dropped.json.gz", "declared 6 rows but the file has 5"),
    ] {
        let err = refused(
            &admin,
            &format!("IMPORT DATABASE restored FROM '{file}'"),
            expected,
        )
        .await;
        assert!(message(&err).contains(file), "{}", message(&err));
        assert_eq!(err.code().unwrap().code(), "XX001", "{file}");
    }
    assert_eq!(column(&admin, "SHOW DATABASES").await, ["default"]);
    let leftovers: Vec<_> = std::fs::read_dir(site.data_dir().join("databases"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("default.sqlite"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        column(
            &admin,
            "SELECT count(*) FROM backups() WHERE kind = 'import' AND status = 'failed'"
        )
        .await,
        ["5"]
    );
    // The good file still imports, with the OrientDB console form (into the database the
    // file names, which must not exist yet).
    refused(
        &admin,
        "IMPORT DATABASE good.json.gz",
        "the file holds database \"default\", which already exists",
    )
    .await;
    admin
        .batch_execute("IMPORT DATABASE restored FROM 'good.json.gz'")
        .await
        .unwrap();
    // An export at level 0 is refused before it starts: gzip has no stored mode.
    refused(
        &admin,
        "EXPORT DATABASE TO 'stored.json.gz' WITH (compression_level = 0)",
        "compression_level of an export must be 1 (fastest) to 9",
    )
    .await;
    assert!(!dir.join("stored.json.gz").exists());
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_under_concurrent_transfers_is_one_instant_and_writers_go_on() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
             INSERT INTO accounts SELECT x, 100, hex(randomblob(100)) FROM c",
        )
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for w in 0..2u64 {
        let client = server.admin("default").await;
        let (stop, commits) = (Arc::clone(&stop), Arc::clone(&commits));
        writers.push(tokio::spawn(async move {
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let (from, to) = (i % 50_000 + 1, (i * 7919) % 50_000 + 1);
                client
                    .batch_execute(&format!(
                        "BEGIN; UPDATE accounts SET balance = balance - 1 WHERE id = {from};
                         UPDATE accounts SET balance = balance + 1 WHERE id = {to}; COMMIT"
                    ))
                    .await
                    .unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
                i += 2;
            }
        }));
    }
    // Exports taken while the transfers run, slowed down so that many commits land during
    // each; the writers commit throughout (in WAL mode a reader never blocks them).
    for n in 0..2 {
        let before = commits.load(Ordering::Relaxed);
        admin
            .batch_execute(&format!(
                "EXPORT DATABASE TO 'moving{n}.json.gz' WITH (max_rate = '2MiB', compression_level = 1)"
            ))
            .await
            .unwrap();
        let during = commits.load(Ordering::Relaxed) - before;
        assert!(
            during > 10,
            "writers stalled during the export: {during} commits"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    for n in 0..2 {
        admin
            .batch_execute(&format!(
                "IMPORT DATABASE moving{n} FROM 'moving{n}.json.gz'"
            ))
            .await
            .unwrap();
        let copy = server.admin(&format!("moving{n}")).await;
        assert_eq!(
            column(
                &copy,
                "SELECT count(*) || ' ' || sum(balance) FROM accounts"
            )
            .await,
            ["50000 5000000"]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exports_a_live_database_and_imports_into_a_stopped_server() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute(EVERYTHING).await.unwrap();
    let file = site.dir.path().join("cli.json.gz");
    let (ok, out) = run(cairn()
        .arg("export")
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "default", "--to"])
        .arg(&file));
    assert!(ok, "{out}");
    assert!(
        out.contains("tables:    6") && out.contains("rows:      27"),
        "{out}"
    );
    let (ok, out) = run(cairn()
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "from_cli"]));
    assert!(
        !ok,
        "importing under a running server must be refused: {out}"
    );
    assert!(out.contains("stopped server"), "{out}");
    drop(admin);
    let (status, _) = server.terminate();
    assert!(status.success());

    let (ok, out) = run(cairn()
        .arg("import")
        .arg(&file)
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "from_cli"]));
    assert!(ok, "{out}");
    assert!(
        out.contains("imported 6 rows into table \"kinds\""),
        "{out}"
    );
    assert_eq!(
        dump(&database_file(&site, "from_cli")),
        dump(&database_file(&site, "default"))
    );
    // A file that is not an export names itself and the problem.
    let (ok, out) = run(cairn()
        .arg("import")
        .arg(site.config_path())
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "nothing"]));
    assert!(!ok);
    assert!(out.contains("line 1: not a gzip file"), "{out}");
    assert!(!database_file(&site, "nothing").exists());
}
