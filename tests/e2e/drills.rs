//! Restore drills with the real binary: the automatic-backup plugin's `drill` schedule and
//! `CALL automatic_backup.drill('db')` restore the newest archive into a scratch file, check
//! it and its row counts against the manifest, and say so in `status()`, `backups()` (kind
//! `drill`) and, on failure, an alert naming the database and the reason.

use std::path::{Path, PathBuf};
use std::process::Command;

use tokio_postgres::Client;

use crate::automatic_backup::{YEARLY, archive_dir, files, rows, site, status, wait_until};
use crate::harness::{message, run};

/// The one archive in the plugin's directory.
fn only_archive(site: &crate::harness::Site) -> PathBuf {
    let names = files(&archive_dir(site));
    let zips: Vec<&String> = names.iter().filter(|n| n.ends_with(".zip")).collect();
    assert_eq!(zips.len(), 1, "{names:?}");
    archive_dir(site).join(zips[0])
}

/// Rewrites `archive` (atomically, as a new file renamed over it) with the row count of
/// `table` in its manifest replaced by `rows`: the database entry and every hash unchanged.
fn tamper_row_count(archive: &Path, table: &str, rows: u64) {
    let script = "import json, os, sys, zipfile\n\
        src, table, rows = sys.argv[1], sys.argv[2], int(sys.argv[3])\n\
        with zipfile.ZipFile(src) as z:\n\
        \x20   manifest = json.loads(z.read('manifest.json'))\n\
        \x20   database = z.read('database.sqlite')\n\
        manifest['row_counts'][table] = rows\n\
        tmp = src + '.tampered'\n\
        with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:\n\
        \x20   z.writestr('database.sqlite', database)\n\
        \x20   z.writestr('manifest.json', json.dumps(manifest))\n\
        os.replace(tmp, src)\n";
    let (ok, out) = run(Command::new("python3")
        .args(["-c", script])
        .arg(archive)
        .arg(table)
        .arg(rows.to_string()));
    assert!(ok, "{out}");
}

/// Flips bytes in the middle of `archive` (its database entry's data).
fn corrupt(archive: &Path) {
    let mut bytes = std::fs::read(archive).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(archive, bytes).unwrap();
}

async fn drills(client: &Client) -> Vec<std::collections::BTreeMap<String, String>> {
    rows(
        client,
        "SELECT status, path, backup_error FROM backups() WHERE database = 'default' AND kind = 'drill' ORDER BY id",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_proves_the_newest_archive_and_fails_loudly_when_it_does_not_restore() {
    // Drills every second, backups once a year (run by hand below).
    let site = site(&format!("{YEARLY}drill = \"* * * * * *\"\n"));
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100)
             INSERT INTO t SELECT x, hex(randomblob(50)) FROM c;
             CREATE TABLE u(x); INSERT INTO u VALUES (1), (2);",
        )
        .await
        .unwrap();

    // Nothing to restore yet: a failed drill, alerted, saying so.
    wait_until("a drill with no archive has failed", || async {
        status(&admin, "default")
            .await
            .get("last_drill_status")
            .is_some_and(|s| s == "failed")
    })
    .await;
    let before = status(&admin, "default").await;
    assert!(
        before["last_drill_error"].contains("no archive"),
        "{before:?}"
    );
    server.wait_for_log("restore drill of");

    // Backed up: the scheduled drill passes, and the history says so (kind drill).
    rows(&admin, "CALL automatic_backup.run('default')").await;
    let archive = only_archive(&site);
    wait_until("a scheduled drill has passed", || async {
        status(&admin, "default")
            .await
            .get("last_drill_status")
            .is_some_and(|s| s == "ok")
    })
    .await;
    let passed = status(&admin, "default").await;
    assert!(passed.contains_key("next_drill"), "{passed:?}");
    assert!(passed.contains_key("last_drill"), "{passed:?}");
    let history = drills(&admin).await;
    assert!(
        history
            .iter()
            .any(|r| r["status"] == "complete" && r["path"] == archive.display().to_string()),
        "{history:?}"
    );
    let now = rows(&admin, "CALL automatic_backup.drill('default')").await;
    assert_eq!(now[0]["tables"], "2", "{now:?}");
    assert_eq!(now[0]["rows"], "102", "{now:?}");
    assert_eq!(now[0]["archive"], archive.display().to_string());

    // The manifest's row counts tampered with: the drill fails naming the table.
    let good = std::fs::read(&archive).unwrap();
    tamper_row_count(&archive, "t", 99);
    let e = admin
        .simple_query("CALL automatic_backup.drill('default')")
        .await
        .unwrap_err();
    assert!(
        message(&e).contains("table t has 100 rows, the manifest recorded 99"),
        "{}",
        message(&e)
    );
    let failed = status(&admin, "default").await;
    assert_eq!(failed["last_drill_status"], "failed", "{failed:?}");
    assert!(
        failed["last_drill_error"].contains("table t has 100 rows"),
        "{failed:?}"
    );
    server.wait_for_log("table t has 100 rows, the manifest recorded 99");

    // The database corrupted after its verification: the drill fails naming the entry.
    std::fs::write(&archive, &good).unwrap();
    corrupt(&archive);
    let e = admin
        .simple_query("CALL automatic_backup.drill('default')")
        .await
        .unwrap_err();
    assert!(message(&e).contains("database.sqlite"), "{}", message(&e));
    let history = drills(&admin).await;
    assert!(
        history
            .iter()
            .any(|r| r["status"] == "failed" && r["backup_error"].contains("database.sqlite")),
        "{history:?}"
    );
    // The scratch copies are gone: nothing but the archive in the directory, no database
    // made in the catalog.
    let left: Vec<String> = files(&archive_dir(&site))
        .into_iter()
        .filter(|n| !n.ends_with(".zip"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let databases = crate::harness::column(&admin, "SHOW DATABASES").await;
    assert_eq!(databases, ["default"], "{databases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_chain_is_written_drilled_and_restored_with_its_key() {
    let site = site(
        "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nmode = \"incremental\"\nencryption_key = \"auto\"\ndrill = \"weekly\"\n",
    );
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.dir.path().join("auto.key"),
        "a long random passphrase, 32 bytes",
    )
    .unwrap();
    std::fs::write(
        site.config_path(),
        format!("{config}\n[backup.keys.auto]\nkey_file = \"auto.key\"\n\n[server.http]\nlisten = \"127.0.0.1:0\"\n"),
    )
    .unwrap();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    rows(&admin, "CALL automatic_backup.run('default')").await;
    admin
        .batch_execute("INSERT INTO t VALUES (3)")
        .await
        .unwrap();
    rows(&admin, "CALL automatic_backup.run('default')").await;

    // A full archive and an increment, both sealed with the key.
    let names = files(&archive_dir(&site));
    let archives: Vec<&String> = names.iter().filter(|n| n.ends_with(".zip")).collect();
    assert_eq!(archives.len(), 2, "{names:?}");
    assert!(
        archives.iter().any(|n| n.ends_with("-incr.zip")),
        "{names:?}"
    );
    for name in &archives {
        let (ok, manifest) = run(Command::new("unzip")
            .arg("-p")
            .arg(archive_dir(&site).join(name))
            .arg("manifest.json"));
        assert!(ok, "{manifest}");
        assert!(manifest.contains("\"key\": \"auto\""), "{name}: {manifest}");
    }

    // The drill rebuilds the chain with the key and counts the newest snapshot's rows.
    let drilled = rows(&admin, "CALL automatic_backup.drill('default')").await;
    assert_eq!(drilled[0]["rows"], "3", "{drilled:?}");
    assert!(drilled[0]["archive"].ends_with("-incr.zip"), "{drilled:?}");
    assert_eq!(status(&admin, "default").await["last_drill_status"], "ok");
    let (code, scrape) = crate::metrics::get(&crate::metrics::endpoint(&server), "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        scrape.contains(
            "cairn_backup_last_success_timestamp_seconds{database=\"default\",kind=\"drill\"}"
        ),
        "{scrape}"
    );

    admin
        .batch_execute("RESTORE DATABASE default FROM LATEST IN 'auto' WITH (new_db_name = 'copy')")
        .await
        .unwrap_or_else(|e| panic!("{}", message(&e)));
    let copy = server.admin("copy").await;
    assert_eq!(
        crate::harness::column(&copy, "SELECT count(*) FROM t").await,
        ["3"]
    );
}
