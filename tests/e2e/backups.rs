//! Backups with the real binary: BACKUP and RESTORE through psql and tokio-postgres, archives
//! checked by `unzip`, Python's `zipfile` and `sqlite3`, and the `cairn` CLI.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio_postgres::Client;

use crate::harness::{
    Site, TestServer, backups_dir, cairn, column, refused, run, standard_config, temporaries,
    texts, wait_for_progress,
};
use crate::psql::psql;

/// `rows` accounts holding 100 each, padded so that a backup takes a while.
async fn accounts(client: &Client, rows: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, note TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO accounts SELECT x, 100, 'account ' || x || ' ' || hex(randomblob(200)) FROM c"
        ))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_through_psql_give_identical_rows_and_a_standard_archive() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 2000).await;

    let (ok, stdout, stderr) = psql(
        &server,
        "default",
        &["-A", "-t", "-c", "BACKUP DATABASE TO 'first.zip'"],
    );
    assert!(ok, "{stderr}");
    let archive = backups_dir(&site).join("first.zip");
    assert!(
        stdout.contains(&format!("|default|{}|", archive.display())),
        "{stdout}"
    );

    let (ok, out) = run(Command::new("unzip").arg("-t").arg(&archive));
    assert!(ok && out.contains("No errors detected"), "{out}");
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import json, sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); assert z.testzip() is None; m = json.loads(z.read('manifest.json')); print(m['database'], m['entries'][0]['name'], len(m['entries'][0]['sha256']))",
    ]).arg(&archive));
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "default database.sqlite 64");
    let unpacked = tempfile::tempdir().unwrap();
    let (ok, out) = run(Command::new("unzip")
        .arg("-q")
        .arg(&archive)
        .arg("-d")
        .arg(unpacked.path()));
    assert!(ok, "{out}");
    let (ok, out) = run(Command::new("sqlite3")
        .arg(unpacked.path().join("database.sqlite"))
        .arg("PRAGMA integrity_check; SELECT count(*), sum(balance) FROM accounts;"));
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "ok\n2000|200000");
    let (ok, out) = run(cairn().arg("verify").arg(&archive));
    assert!(ok && out.contains("result:    ok"), "{out}");

    let (ok, stdout, stderr) = psql(
        &server,
        "default",
        &["-A", "-t", "-c", "RESTORE DATABASE copy FROM 'first.zip'"],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("copy|first.zip|"), "{stdout}");
    let copy = server.admin("copy").await;
    let query = "SELECT id || ':' || balance || ':' || note FROM accounts ORDER BY id";
    assert_eq!(column(&admin, query).await, column(&copy, query).await);

    let history = column(
        &admin,
        "SELECT kind || ' ' || status FROM backups() ORDER BY id",
    )
    .await;
    assert_eq!(history, ["backup complete", "restore complete"]);
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_taken_during_concurrent_transfers_restore_to_the_constant_total() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 20_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let commits = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for seed in 0..2u64 {
        let client = server.admin("default").await;
        let (stop, commits) = (Arc::clone(&stop), Arc::clone(&commits));
        writers.push(tokio::spawn(async move {
            let mut i = seed;
            while !stop.load(Ordering::Relaxed) {
                i = i.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let from = (i >> 33) % 20_000 + 1;
                let to = (i >> 17) % 20_000 + 1;
                let amount = (i >> 50) % 50 + 1;
                client
                    .batch_execute(&format!(
                        "BEGIN; UPDATE accounts SET balance = balance - {amount} WHERE id = {from}; UPDATE accounts SET balance = balance + {amount} WHERE id = {to}; COMMIT"
                    ))
                    .await
                    .unwrap();
                commits.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut during = Vec::new();
    for n in 0..3 {
        let before = commits.load(Ordering::Relaxed);
        admin
            .simple_query(&format!(
                "BACKUP DATABASE TO 'load-{n}.zip' WITH (compression_level = 9)"
            ))
            .await
            .unwrap();
        during.push(commits.load(Ordering::Relaxed) - before);
    }
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    assert!(
        during.iter().any(|&n| n > 0),
        "writers never committed while a backup ran: {during:?}"
    );
    for n in 0..3 {
        admin
            .simple_query(&format!(
                "RESTORE DATABASE restored_{n} FROM 'load-{n}.zip'"
            ))
            .await
            .unwrap();
        let restored = server.admin(&format!("restored_{n}")).await;
        let total = column(
            &restored,
            "SELECT sum(balance) || '/' || count(*) FROM accounts",
        )
        .await;
        assert_eq!(total, ["2000000/20000"], "archive {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_archive_is_refused_by_restore_and_verify_naming_the_entry() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 3000).await;
    admin
        .simple_query("BACKUP DATABASE TO 'good.zip'")
        .await
        .unwrap();
    let good = backups_dir(&site).join("good.zip");
    let mut bytes = std::fs::read(&good).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let bad = backups_dir(&site).join("bad.zip");
    std::fs::write(&bad, bytes).unwrap();

    let err = refused(
        &admin,
        "RESTORE DATABASE broken FROM 'bad.zip'",
        "\"database.sqlite\" is damaged",
    )
    .await;
    assert_eq!(err.code().unwrap().code(), "XX001");
    assert_eq!(
        column(&admin, "SHOW DATABASES").await,
        ["default"],
        "a failed restore must not create the database"
    );
    assert!(temporaries(&site.data_dir().join("databases")).is_empty());

    let (ok, out) = run(cairn().arg("verify").arg(&bad));
    assert!(!ok, "{out}");
    assert!(out.contains("\"database.sqlite\" is damaged"), "{out}");

    // An archive whose entries try to leave the restore directory.
    let evil = backups_dir(&site).join("evil.zip");
    let (ok, out) = run(Command::new("python3").args([
        "-c",
        "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1], 'w'); z.writestr('manifest.json', '{}'); z.writestr('../escaped.sqlite', 'x'); z.writestr('/abs.sqlite', 'x'); z.close()",
    ]).arg(&evil));
    assert!(ok, "{out}");
    refused(
        &admin,
        "RESTORE DATABASE evil FROM 'evil.zip'",
        "unsafe entry name",
    )
    .await;
    assert!(!site.dir.path().join("escaped.sqlite").exists());
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_backup_refuses_a_second_and_drop_and_aborting_it_leaves_no_file() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin.simple_query("CREATE DATABASE big").await.unwrap();
    let big = server.admin("big").await;
    accounts(&big, 10_000).await;

    // 64 KiB a second keeps the backup running for a minute: long enough to act on it.
    let started = column(
        &admin,
        "BACKUP DATABASE big TO 'slow.zip' WITH (max_rate = '64KiB', buffer_size = '64KiB', detached)",
    )
    .await;
    let id = started[0].clone();

    refused(
        &admin,
        "BACKUP DATABASE big TO 'second.zip'",
        "already running",
    )
    .await;
    drop(big);
    refused(&admin, "DROP DATABASE big", "in use by a backup (job").await;
    let status = column(
        &admin,
        &format!("SELECT status FROM backups() WHERE id = {id}"),
    )
    .await;
    assert_eq!(status, ["running"]);

    let big = server.admin("big").await;
    let aborted = column(&big, "BACKUP ABORT").await;
    assert_eq!(aborted, std::slice::from_ref(&id));
    assert!(!backups_dir(&site).join("slow.zip").exists());
    assert!(
        temporaries(&backups_dir(&site)).is_empty(),
        "{:?}",
        temporaries(&backups_dir(&site))
    );
    let status = column(
        &admin,
        &format!("SELECT status FROM backups() WHERE id = {id}"),
    )
    .await;
    assert_eq!(status, ["aborted"]);
    assert_eq!(
        column(&big, "BACKUP ABORT").await,
        [""],
        "nothing left to abort"
    );
    refused(&admin, "CANCEL BACKUP 999", "no job with id 999").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_the_allowed_directories_and_read_only_users_are_refused() {
    let site = Site::standard();
    let outside = site.dir.path().join("outside.zip");
    let server = site.start();
    let admin = server.admin("default").await;
    for (sql, expected) in [
        (
            format!("BACKUP DATABASE TO '{}'", outside.display()),
            "outside the directories",
        ),
        (
            "BACKUP DATABASE TO '../outside.zip'".into(),
            "leaves the backup directory",
        ),
        (
            "BACKUP DATABASE TO 'x.zip' WITH (compression_level = 12)".into(),
            "0 (store) to 9",
        ),
    ] {
        refused(&admin, &sql, expected).await;
    }
    assert!(!outside.exists());
    let reader = server
        .connect("reader", crate::harness::READER_PASSWORD, "default")
        .await
        .unwrap();
    let err = refused(
        &reader,
        "BACKUP DATABASE TO 'r.zip'",
        "needs the admin or backup role",
    )
    .await;
    assert_eq!(err.code().unwrap().code(), "42501");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_backs_up_a_live_server_and_restores_into_a_stopped_one() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 1000).await;
    let archive = site.dir.path().join("cli.zip");
    let (ok, out) = run(cairn()
        .arg("backup")
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "default", "--to"])
        .arg(&archive));
    assert!(ok, "{out}");
    let (ok, out) = run(cairn()
        .arg("restore")
        .arg(&archive)
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "from_cli"]));
    assert!(
        !ok,
        "restoring under a running server must be refused: {out}"
    );
    assert!(out.contains("stopped server"), "{out}");
    drop(admin);
    let (status, _) = server.terminate();
    assert!(status.success());

    let (ok, out) = run(cairn()
        .arg("restore")
        .arg(&archive)
        .arg("--data-dir")
        .arg(site.data_dir())
        .args(["--database", "from_cli"]));
    assert!(ok, "{out}");
    let server = site.start();
    let restored = server.admin("from_cli").await;
    assert_eq!(
        column(&restored, "SELECT sum(balance) FROM accounts").await,
        ["100000"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_and_import_with_a_mistyped_data_dir_are_refused() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 10).await;
    admin
        .batch_execute("BACKUP DATABASE TO 'cli.zip'; EXPORT DATABASE TO 'cli.json.gz'")
        .await
        .unwrap();
    drop(admin);
    let (status, _) = server.terminate();
    assert!(status.success());
    let archive = backups_dir(&site).join("cli.zip");
    let export = backups_dir(&site).join("cli.json.gz");
    let typo = site.dir.path().join("dta");
    for (command, file) in [("restore", &archive), ("import", &export)] {
        let (ok, out) = run(cairn()
            .arg(command)
            .arg(file)
            .arg("--data-dir")
            .arg(&typo)
            .args(["--database", "copy"]));
        assert!(
            !ok,
            "{command} into a missing data directory succeeded: {out}"
        );
        assert!(
            out.contains("does not exist") && out.contains("--create-data-dir"),
            "{command}: {out}"
        );
        assert!(!typo.exists(), "{command} made the mistyped directory");
        // An existing directory that is not a data directory is refused too.
        let (ok, out) = run(cairn()
            .arg(command)
            .arg(file)
            .arg("--data-dir")
            .arg(site.dir.path())
            .args(["--database", "copy"]));
        assert!(!ok, "{out}");
        assert!(out.contains("not a Cairn data directory"), "{out}");
    }
    // Asked for, a new data directory is made: restoring onto a new machine.
    for (command, file, fresh) in [
        ("restore", &archive, "fresh_restore"),
        ("import", &export, "fresh_import"),
    ] {
        let fresh = site.dir.path().join(fresh);
        let (ok, out) = run(cairn()
            .arg(command)
            .arg(file)
            .arg("--data-dir")
            .arg(&fresh)
            .args(["--database", "copy", "--create-data-dir"]));
        assert!(ok, "{command}: {out}");
        assert!(fresh.join("databases/copy.sqlite").is_file());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_leaves_no_archive_or_export_and_the_next_start_removes_its_temporaries() {
    for (kind, file) in [("BACKUP", "killed.zip"), ("EXPORT", "killed.json.gz")] {
        let site = Site::new(&standard_config());
        let server = site.start();
        let admin = server.admin("default").await;
        accounts(&admin, 10_000).await;
        let id = column(
            &admin,
            &format!(
                "{kind} DATABASE TO '{file}' WITH (max_rate = '64KiB', buffer_size = '64KiB', detached)"
            ),
        )
        .await[0]
            .clone();
        wait_for_progress(&admin, &id).await;
        assert!(!temporaries(&backups_dir(&site)).is_empty());
        drop(admin);
        let _ = server.stop("KILL");
        assert!(!backups_dir(&site).join(file).exists());

        let server = TestServer::start(&site.config_path(), &[]);
        assert!(temporaries(&backups_dir(&site)).is_empty(), "{kind}");
        let admin = server.admin("default").await;
        let status = column(
            &admin,
            &format!("SELECT kind || ' ' || status || ': ' || backup_error FROM backups() WHERE id = {id}"),
        )
        .await;
        assert_eq!(
            status,
            [format!(
                "{} failed: the server stopped while this ran",
                kind.to_lowercase()
            )]
        );
    }
}

/// CockroachDB's job control over a rate-limited backup: PAUSE JOB stops it at its next step
/// (no progress, the temporary file no longer grows), RESUME JOB lets it finish a good archive,
/// CANCEL JOB stops a paused one leaving no file; SHOW JOBS and SHOW JOB show the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_paused_holds_still_and_resumed_finishes_a_good_archive() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 10_000).await;
    let dir = backups_dir(&site);
    let status_of = |id: String| {
        let admin = &admin;
        async move {
            texts(
                admin,
                &format!("SELECT status, progress_percent FROM backups() WHERE id = {id}"),
            )
            .await
            .remove(0)
        }
    };
    let temporary_bytes = || -> u64 {
        temporaries(&dir)
            .iter()
            .map(|name| std::fs::metadata(dir.join(name)).map_or(0, |m| m.len()))
            .sum()
    };

    // About 4.5 MB at 1 MiB/s: a few seconds of work, paused in the middle.
    let id = column(
        &admin,
        "BACKUP DATABASE TO 'paused.zip' WITH (max_rate = '1MiB', buffer_size = '64KiB', detached)",
    )
    .await
    .remove(0);
    wait_for_progress(&admin, &id).await;
    assert_eq!(
        texts(&admin, &format!("PAUSE JOB {id}")).await,
        [[id.clone(), "paused".to_owned()]]
    );
    let at_pause = status_of(id.clone()).await;
    assert_eq!(at_pause[0], "paused");
    // What the compressor had been handed before the pause still lands: wait for the file
    // to settle, then watch it.
    let mut written = temporary_bytes();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        let now = temporary_bytes();
        if now == written {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the paused job's file never settled"
        );
        written = now;
    }
    assert!(written > 0, "the paused job keeps its temporary file");
    // Observed over a window longer than the history's one-second refresh.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        status_of(id.clone()).await,
        at_pause,
        "no progress while paused"
    );
    assert_eq!(temporary_bytes(), written, "nothing written while paused");
    let shown = texts(&admin, &format!("SHOW JOB {id}")).await;
    assert_eq!((shown.len(), &shown[0][3]), (1, &"paused".to_owned()));
    assert!(
        column(&admin, "SHOW JOBS").await.contains(&id),
        "SHOW JOBS lists the job"
    );
    // Paused is still running: a second backup of the database waits its turn.
    refused(&admin, "BACKUP DATABASE TO 'second.zip'", "already running").await;

    assert_eq!(
        texts(&admin, &format!("RESUME JOB {id}")).await,
        [[id.clone(), "running".to_owned()]]
    );
    crate::automatic_backup::wait_until("the resumed backup ends", || {
        let status = status_of(id.clone());
        async move { !["running", "paused"].contains(&status.await[0].as_str()) }
    })
    .await;
    assert_eq!(status_of(id.clone()).await, ["complete", "100"]);
    let archive = dir.join("paused.zip");
    let (ok, out) = run(Command::new("unzip").arg("-t").arg(&archive));
    assert!(ok, "unzip -t: {out}");
    admin
        .simple_query("RESTORE DATABASE again FROM 'paused.zip'")
        .await
        .unwrap();
    let again = server.admin("again").await;
    assert_eq!(
        texts(&again, "SELECT count(*), sum(balance) FROM accounts").await,
        [["10000", "1000000"]]
    );

    // A paused job cancelled: no archive, no temporary file, aborted in the history.
    let id = column(
        &admin,
        "BACKUP DATABASE TO 'cancelled.zip' WITH (max_rate = '64KiB', buffer_size = '64KiB', detached)",
    )
    .await
    .remove(0);
    wait_for_progress(&admin, &id).await;
    column(&admin, &format!("PAUSE JOB {id}")).await;
    assert_eq!(
        texts(&admin, &format!("CANCEL JOB {id}")).await,
        [[id.clone(), "aborted".to_owned()]]
    );
    assert!(!dir.join("cancelled.zip").exists());
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));
    assert_eq!(status_of(id.clone()).await[0], "aborted");

    // Only a running job can be paused or resumed.
    for sql in [format!("PAUSE JOB {id}"), format!("RESUME JOB {id}")] {
        let err = refused(&admin, &sql, "has ended (aborted)").await;
        assert_eq!(err.code().unwrap().code(), "55000");
    }
    for sql in ["PAUSE JOB 999", "SHOW JOB 999", "CANCEL JOB 999"] {
        let err = refused(&admin, sql, "no job with id 999").await;
        assert_eq!(err.code().unwrap().code(), "42704");
    }
    server.assert_still_serving().await;
}

/// Restoring or importing over an existing database said only "already exists", not how to
/// do it (issue 17, item 6).
#[tokio::test]
async fn a_restore_over_an_existing_database_did_not_say_how() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("BACKUP DATABASE TO 'a.zip'; EXPORT DATABASE TO 'a.json.gz'")
        .await
        .unwrap();
    for (sql, statement) in [
        ("RESTORE DATABASE default FROM 'a.zip'", "RESTORE"),
        ("IMPORT DATABASE default FROM 'a.json.gz'", "IMPORT"),
    ] {
        let err = admin.batch_execute(sql).await.unwrap_err();
        assert_eq!(err.code().map(|c| c.code()), Some("42P04"), "{err}");
        let message = crate::harness::message(&err);
        assert!(
            message.contains("WITH (replace)") && message.contains(statement),
            "{message}"
        );
    }
}

/// Doris's per-job timeout: a rate-limited backup that would take a minute stops at its
/// `timeout`, fails naming itself and its timeout, and leaves no file; a bad timeout is
/// refused before a job exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_past_its_timeout_fails_on_time_and_leaves_no_file() {
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    accounts(&admin, 10_000).await;
    let started = std::time::Instant::now();
    let err = refused(
        &admin,
        "BACKUP DATABASE TO 'slow.zip' WITH (max_rate = '64KiB', buffer_size = '64KiB', timeout = '2s')",
        "stopped at its timeout of 2s",
    )
    .await;
    let took = started.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(30),
        "{took:?}"
    );
    assert_eq!(err.code().unwrap().code(), "57014");
    let message = crate::harness::message(&err);
    assert!(
        message.starts_with("backup ") && message.contains("no file was written"),
        "{message}"
    );
    assert!(!backups_dir(&site).join("slow.zip").exists());
    assert!(temporaries(&backups_dir(&site)).is_empty());
    assert_eq!(
        column(
            &admin,
            "SELECT status FROM backups() WHERE path LIKE '%slow.zip'"
        )
        .await,
        ["failed"]
    );
    // Doris writes seconds; a text needs a unit it knows.
    refused(
        &admin,
        "BACKUP DATABASE TO 'x.zip' WITH (timeout = 'soon')",
        "timeout: invalid value",
    )
    .await;
    admin
        .simple_query("BACKUP DATABASE TO 'quick.zip' WITH (timeout = 3600)")
        .await
        .unwrap();
    assert!(backups_dir(&site).join("quick.zip").exists());
    server.assert_still_serving().await;
}
