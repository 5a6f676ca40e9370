//! Continuous archiving with the real binary: a writer whose commit times the test records,
//! `RESTORE … AS OF SYSTEM TIME` at instants between its commits restoring exactly the rows
//! committed by then, instants outside the window refused, a kill -9 during shipping that
//! loses no acknowledged transaction older than the interval and the upload, and old bases
//! and segments removed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use tokio_postgres::Client;

use crate::automatic_backup::wait_until;
use crate::harness::{Site, message, standard_config, texts};

fn continuous(settings: &str) -> String {
    format!("{}\n[backup.continuous]\n{settings}", standard_config())
}

/// The stream directory of `default` in the local collection `wal`.
fn stream_dir(site: &Site) -> PathBuf {
    crate::harness::backups_dir(site)
        .join("wal")
        .join("default.wal")
}

fn names(dir: &Path) -> Vec<String> {
    crate::automatic_backup::files(dir)
}

fn markers(dir: &Path) -> usize {
    names(dir)
        .iter()
        .filter(|n| n.starts_with("base-") && n.ends_with(".json"))
        .count()
}

fn text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Inserts rows 1..=n one transaction each; returns when each was sent and acknowledged.
async fn write_rows(client: &Client, n: usize) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
    let mut times = Vec::with_capacity(n);
    for i in 1..=n {
        let sent = Utc::now();
        client
            .execute(
                "INSERT INTO t (id, pad) VALUES ($1, hex(randomblob(300)))",
                &[&(i as i64)],
            )
            .await
            .unwrap();
        times.push((sent, Utc::now()));
    }
    times
}

/// Waits until `RESTORE … FROM LATEST IN 'wal'` gives `rows` rows (the last step shipped).
async fn newest_point_restores(server: &crate::harness::TestServer, admin: &Client, rows: usize) {
    let mut attempt = 0;
    wait_until("the newest point restores every row", || {
        attempt += 1;
        let name = format!("latest{attempt}");
        async move {
            admin
                .batch_execute(&format!(
                    "RESTORE DATABASE default FROM LATEST IN 'wal' WITH (new_db_name = '{name}')"
                ))
                .await
                .unwrap();
            // Until the newest point has the table (a stream that came back restores its
            // old window first), it is not yet the newest point.
            let restored = server.admin(&name).await;
            match restored.query_one("SELECT count(*) FROM t", &[]).await {
                Ok(row) => row.get::<_, i64>(0) == rows as i64,
                Err(_) => false,
            }
        }
    })
    .await;
}

/// A server archiving `default` continuously with `settings`, table `t` (id, `pad` of
/// `pad_type`) created, once its first base has its marker.
async fn archived(settings: &str, pad_type: &str) -> (Site, crate::harness::TestServer, Client) {
    let site = Site::new(&continuous(&format!(
        "destination = \"wal\"\ndatabases = [\"default\"]\n{settings}"
    )));
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute(&format!(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, pad {pad_type})"
        ))
        .await
        .unwrap();
    let dir = stream_dir(&site);
    wait_until("the first base has its marker", || async {
        markers(&dir) == 1
    })
    .await;
    (site, server, admin)
}

/// The ids `database` holds, in order.
async fn ids(server: &crate::harness::TestServer, database: &str) -> Vec<i64> {
    server
        .admin(database)
        .await
        .query("SELECT id FROM t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_of_system_time_restores_exactly_the_transactions_committed_by_then() {
    let (_site, server, admin) = archived("interval = \"200ms\"\n", "TEXT").await;
    let times = write_rows(&admin, 150).await;
    // A larger transaction too: many pages at once.
    admin
        .batch_execute(
            "BEGIN; UPDATE t SET pad = hex(randomblob(1000)) WHERE id % 3 = 0; INSERT INTO t VALUES (1000, 'big'); COMMIT;",
        )
        .await
        .unwrap();
    let big_committed = Utc::now();
    newest_point_restores(&server, &admin, 151).await;

    // Between the acknowledgement of row k and the sending of row k + 1, exactly rows 1..=k
    // were committed.
    for k in [10usize, 64, 99, 149] {
        let (ack, _) = (times[k - 1].1, ());
        let next_sent = times[k].0;
        let instant = ack + (next_sent - ack) / 2;
        let name = format!("at{k}");
        let row = &texts(
            &admin,
            &format!(
                "RESTORE DATABASE default FROM LATEST IN 'wal' AS OF SYSTEM TIME '{}' WITH (new_db_name = '{name}')",
                text(instant)
            ),
        )
        .await[0];
        assert!(row[1].ends_with("default.wal/"), "{row:?}");
        let expected: Vec<i64> = (1..=k as i64).collect();
        assert_eq!(ids(&server, &name).await, expected, "as of row {k}");
        let check = texts(&server.admin(&name).await, "PRAGMA integrity_check").await;
        assert_eq!(check[0][0], "ok");
    }
    // After the large transaction, every row and the update, once the stream says it is
    // complete until then: the segment holding it was cut before the client saw the
    // acknowledgement, and the idle note carries the window past it.
    wait_until("the window reaches past the large transaction", || async {
        let until = texts(
            &admin,
            "SELECT restorable_until FROM archives('wal') WHERE kind = 'continuous' AND database = 'default'",
        )
        .await;
        until.first().is_some_and(|u| u[0] >= text(big_committed))
    })
    .await;
    let row = texts(
        &admin,
        &format!(
            "RESTORE DATABASE default FROM LATEST IN 'wal' AS OF SYSTEM TIME '{}' WITH (new_db_name = 'after_big')",
            text(big_committed)
        ),
    )
    .await;
    assert_eq!(row.len(), 1);
    let restored = server.admin("after_big").await;
    let expected = texts(&admin, "SELECT count(*), sum(length(pad)) FROM t").await;
    assert_eq!(
        texts(&restored, "SELECT count(*), sum(length(pad)) FROM t").await,
        expected
    );

    // archives() shows the window: the stream's row and its base's, from before the first
    // commit to after the last; restoring at its end gives every row.
    let listed = texts(
        &admin,
        "SELECT kind, restorable_from, restorable_until, problem, location FROM archives('wal') WHERE database = 'default' AND restorable_from IS NOT NULL ORDER BY kind",
    )
    .await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0][0], "continuous", "{listed:?}");
    assert_eq!(listed[1][0], "full", "{listed:?}");
    assert_eq!(listed[0][1..3], listed[1][1..3], "{listed:?}");
    assert_eq!(listed[0][3], "", "no problem: {listed:?}");
    assert!(listed[0][4].ends_with("default.wal/"), "{listed:?}");
    assert!(listed[0][1] <= text(times[0].0), "{listed:?}");
    assert!(listed[0][2] >= text(big_committed), "{listed:?}");
    let until = listed[0][2].clone();
    admin
        .batch_execute(&format!(
            "RESTORE DATABASE default FROM LATEST IN 'wal' AS OF SYSTEM TIME '{until}' WITH (new_db_name = 'at_until')"
        ))
        .await
        .unwrap();
    assert_eq!(ids(&server, "at_until").await.len(), 151);

    // Outside the window: before the base, and after the newest instant archived.
    let before = admin
        .batch_execute(&format!(
            "RESTORE DATABASE default FROM LATEST IN 'wal' AS OF SYSTEM TIME '{}' WITH (new_db_name = 'x')",
            text(times[0].0 - chrono::Duration::hours(1))
        ))
        .await
        .unwrap_err();
    // Before every base the stream has nothing to say: the collection's archives are looked
    // at, as without a stream, and none is that old.
    assert!(
        message(&before).contains("no backup archive of database \"default\" in 'wal'"),
        "{}",
        message(&before)
    );
    let future = admin
        .batch_execute(&format!(
            "RESTORE DATABASE default FROM LATEST IN 'wal' AS OF SYSTEM TIME '{}' WITH (new_db_name = 'x')",
            text(Utc::now() + chrono::Duration::hours(1))
        ))
        .await
        .unwrap_err();
    assert!(
        message(&future).contains("the newest instant archived is"),
        "{}",
        message(&future)
    );
    server.assert_still_serving().await;
}

/// kill -9 while a writer commits and segments are shipped to an S3 bucket: another server
/// restores from the bucket every transaction acknowledged more than the interval plus the
/// upload time before the kill, and nothing out of order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_shipping_loses_no_acknowledged_transaction_older_than_the_interval() {
    let crate::destinations::Offsite { s3, site, server } = crate::destinations::offsite(|site| {
        let config = std::fs::read_to_string(site.config_path()).unwrap();
        std::fs::write(
                site.config_path(),
                format!(
                    "{config}\n[backup.continuous]\ndestination = \"offsite:wal\"\ninterval = \"200ms\"\ndatabases = [\"default\"]\n"
                ),
            )
            .unwrap();
    });
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)")
        .await
        .unwrap();
    wait_until("the first base has its marker", || async {
        s3.client(&["list", "cairn-backups", "prod/wal/default.wal/"])
            .contains(".json")
    })
    .await;
    // A writer for two seconds, then the kill while it still writes.
    let writer = server.admin("default").await;
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&acked);
    let writing = tokio::spawn(async move {
        for i in 1i64.. {
            let done = writer
                .execute("INSERT INTO t (id, pad) VALUES ($1, 'x')", &[&i])
                .await;
            if done.is_err() {
                return;
            }
            log.lock().unwrap().push((i, Instant::now()));
        }
    });
    let start = Instant::now();
    wait_until("two seconds of writes", || async {
        start.elapsed() >= Duration::from_secs(2)
    })
    .await;
    let killed_at = Instant::now();
    let (status, _) = server.stop("KILL");
    assert!(!status.success());
    let _ = writing.await;
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "the writer committed {}", acked.len());

    // Another server, reading the same bucket.
    let other = Site::new(
        &std::fs::read_to_string(site.config_path())
            .unwrap()
            .replace(
                "[backup.continuous]\ndestination = \"offsite:wal\"",
                "[backup.continuous]\ndestination = \"offsite:other\"",
            ),
    );
    let restorer = crate::harness::TestServer::start_with_env(
        &other.config_path(),
        &[],
        &[
            ("CAIRN_TEST_S3_ID", "testing"),
            ("CAIRN_TEST_S3_SECRET", "testing"),
        ],
    );
    restorer
        .admin("default")
        .await
        .batch_execute(
            "RESTORE DATABASE default FROM LATEST IN 'offsite:wal' WITH (new_db_name = 'restored')",
        )
        .await
        .unwrap();
    let restored = ids(&restorer, "restored").await;
    let window = texts(
        &restorer.admin("default").await,
        "SELECT restorable_from, restorable_until FROM archives('offsite:wal') WHERE kind = 'continuous' AND database = 'default'",
    )
    .await;
    assert_eq!(window.len(), 1, "{window:?}");
    assert!(window[0][0] < window[0][1], "{window:?}");
    let expected_prefix: Vec<i64> = (1..=restored.len() as i64).collect();
    assert_eq!(
        restored, expected_prefix,
        "the transactions restored are a prefix"
    );
    let must_have = acked
        .iter()
        .filter(|(_, at)| killed_at.duration_since(*at) > Duration::from_millis(1200))
        .count();
    assert!(
        restored.len() >= must_have,
        "restored {} rows, but {must_have} were acknowledged more than 1.2 s before the kill",
        restored.len()
    );
    assert!(restored.len() <= acked.len() + 1);
}

/// A base every second, two kept: older bases, their markers and the segments only they
/// needed are removed, and the newest point still restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_bases_and_the_segments_only_they_need_are_removed() {
    let site = Site::new(&continuous(
        "destination = \"wal\"\ninterval = \"100ms\"\nbase_every = \"1s\"\nkeep_bases = 2\ndatabases = [\"default\"]\n",
    ));
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT)")
        .await
        .unwrap();
    let collection = crate::harness::backups_dir(&site).join("wal");
    let dir = stream_dir(&site);
    let mut written = 0;
    let bases = || {
        names(&collection)
            .into_iter()
            .filter(|n| n.ends_with("-full.zip"))
            .count()
    };
    let mut seen_removal = false;
    wait_until("bases were taken and old ones removed", || {
        written += 1;
        let admin = &admin;
        let n = written;
        let removed = bases() == 2 && markers(&dir) == 2 && n > 30;
        seen_removal |= removed;
        async move {
            admin
                .execute("INSERT INTO t (id, pad) VALUES ($1, 'x')", &[&(n as i64)])
                .await
                .unwrap();
            removed
        }
    })
    .await;
    assert!(seen_removal);
    // No segment older than the oldest kept base's replay start is left.
    let kept: Vec<serde_json::Value> = names(&dir)
        .iter()
        .filter(|n| n.starts_with("base-"))
        .map(|n| serde_json::from_slice(&std::fs::read(dir.join(n)).unwrap()).unwrap())
        .collect();
    let oldest = kept
        .iter()
        .map(|m| m["replay_from"].as_u64().unwrap())
        .min()
        .unwrap();
    assert!(oldest > 1, "{kept:?}");
    for name in names(&dir).iter().filter(|n| n.ends_with(".seg")) {
        let sequence: u64 = name.trim_end_matches(".seg").parse().unwrap();
        assert!(sequence >= oldest, "{name} is older than {oldest}");
    }
    let rows: usize = texts(&admin, "SELECT count(*) FROM t").await[0][0]
        .parse()
        .unwrap();
    newest_point_restores(&server, &admin, rows).await;
}

/// The destination fails (the stream's directory is a file now): the log grows only to
/// `max_wal`, then is checkpointed anyway with an alert saying the stream has a gap; once the
/// destination works again a new base is taken and the newest point restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_keeps_the_log_bounded_and_says_so() {
    let (site, server, admin) =
        archived("interval = \"100ms\"\nmax_wal = \"16MiB\"\n", "BLOB").await;
    let dir = stream_dir(&site);
    std::fs::rename(&dir, dir.with_extension("moved")).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let wal = site.data_dir().join("databases").join("default.sqlite-wal");
    // 80 MiB of changes, 256 kB a transaction: five times max_wal, twice the bound.
    for i in 0..320 {
        admin
            .execute(
                "INSERT INTO t (id, pad) VALUES ($1, randomblob(262144))",
                &[&(i as i64)],
            )
            .await
            .unwrap();
        // Twice max_wal, and what commits while a checkpoint runs: a commit's checkpoint is
        // busy while the archiver's own runs (on a loaded machine, a second or so of these
        // 256 kB transactions), and the log restarts only after one completes.
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        assert!(size < 40 << 20, "the log grew to {size} bytes");
    }
    server.wait_for_log("the log was checkpointed unshipped to keep it bounded");
    assert!(server.logs().contains("alert=true"));
    // Back: a new base, and the newest point restores.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(dir.with_extension("moved"), &dir).unwrap();
    newest_point_restores(&server, &admin, 320).await;
}

/// An offline `cairn restore` could restore only an archive, not an instant of a continuous
/// archive: `--from-latest LOCATION --as-of INSTANT` on a stopped server's data directory
/// restores exactly the transactions committed by then, as SQL's AS OF SYSTEM TIME does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_restores_a_continuous_archive_to_an_instant() {
    let (site, server, admin) = archived("interval = \"200ms\"\n", "TEXT").await;
    let times = write_rows(&admin, 30).await;
    let last_ack = times[29].1;
    wait_until("the window reaches the last row", || async {
        let until = texts(
            &admin,
            "SELECT restorable_until FROM archives('wal') WHERE kind = 'continuous' AND database = 'default'",
        )
        .await;
        until.first().is_some_and(|u| u[0] >= text(last_ack))
    })
    .await;
    drop(admin);
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");

    let collection = crate::harness::backups_dir(&site).join("wal");
    let data_dir = site.data_dir();
    let restore = |name: &str, as_of: Option<String>| {
        let mut command = crate::harness::cairn();
        command
            .arg("restore")
            .arg("--from-latest")
            .arg(&collection)
            .args(["--database", "default", "--new-db-name", name])
            .arg("--data-dir")
            .arg(&data_dir);
        if let Some(as_of) = as_of {
            command.args(["--as-of", &as_of]);
        }
        command.output().unwrap()
    };
    let k = 17;
    let instant = times[k - 1].1 + (times[k].0 - times[k - 1].1) / 2;
    let out = restore("at17", Some(text(instant)));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("default.wal"), "{said}");
    let out = restore("newest", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = restore("never", Some("soon".into()));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--as-of 'soon' is not a time"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let server = site.start();
    assert_eq!(
        ids(&server, "at17").await,
        (1..=k as i64).collect::<Vec<_>>()
    );
    assert_eq!(ids(&server, "newest").await.len(), 30);
    let check = texts(&server.admin("at17").await, "PRAGMA integrity_check").await;
    assert_eq!(check[0][0], "ok");
}
