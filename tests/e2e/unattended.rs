//! Regression tests for the defects found running backups unattended, as an operator would
//! (issue 13), with the real binary: each test is named after the defect it guards against.
//! The schedule's time-dependent defects (the DST storm, runs a second late, `first_time`)
//! are covered with a fake clock in the plugin's own tests (`timetable.rs`, `schedule.rs`).

use std::process::Command;

use crate::automatic_backup::{
    YEARLY, archive_dir, complete_backups, due_in_two_seconds, files, filled, history, last_status,
    rows, site, status, wait_until, write_settings,
};
use crate::harness::refused;

/// The automatic-backup row of SHOW PLUGINS: (state, last_error).
async fn plugin_state(client: &tokio_postgres::Client) -> (String, String) {
    let row = rows(client, "SHOW PLUGINS")
        .await
        .into_iter()
        .find(|r| r["name"] == "automatic_backup")
        .expect("automatic_backup in SHOW PLUGINS");
    (
        row["state"].clone(),
        row.get("last_error").cloned().unwrap_or_default(),
    )
}

fn sighup(pid: u32) {
    let hup = Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
}

const EVERY_TWO_SECONDS: &str = "schedule = \"*/2 * * * * *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nretries = 0\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_must_not_stop_the_running_schedule() {
    let site = site(EVERY_TWO_SECONDS);
    let server = site.start();
    let admin = server.admin("default").await;
    wait_until("a first scheduled backup", || async {
        complete_backups(&admin, "default").await >= 1
    })
    .await;

    // The target directory becomes unusable: a file in its place.
    let dir = archive_dir(&site);
    std::fs::rename(&dir, site.dir.path().join("auto.aside")).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    refused(
        &admin,
        "RELOAD PLUGIN automatic_backup",
        "`target_directory`",
    )
    .await;
    let (state, _) = plugin_state(&admin).await;
    assert_eq!(state, "running");
    server.wait_for_log("plugin reload refused; the running instance goes on");
    // The running instance still answers.
    status(&admin, "default").await;
    sighup(server.pid());
    server.wait_for_logs("plugin reload refused; the running instance goes on", 2);
    assert_eq!(plugin_state(&admin).await.0, "running");

    // A target outside the allowed directories is refused the same way.
    write_settings(
        &site,
        &EVERY_TWO_SECONDS.replace("\"auto\"", "\"/var/cairn-not-allowed\""),
    );
    refused(
        &admin,
        "RELOAD PLUGIN automatic_backup",
        "allowed_directories",
    )
    .await;
    assert_eq!(plugin_state(&admin).await.0, "running");
    write_settings(&site, EVERY_TWO_SECONDS);

    // Once the directory is fixed, the schedule that never stopped writes there again.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(site.dir.path().join("auto.aside"), &dir).unwrap();
    let before = complete_backups(&admin, "default").await;
    wait_until("the running schedule backs up again", || async {
        complete_backups(&admin, "default").await > before
    })
    .await;
    // A run that failed before the fix may still be recording its outcome: wait for the
    // status to say what the new archives do.
    wait_until("the schedule's status is ok again", || async {
        last_status(&admin, "default").await == "ok"
    })
    .await;
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_retry_wait_cannot_overwrite_the_new_instances_ok() {
    let site = site(YEARLY);
    let server = site.start();
    let admin = server.admin("default").await;
    // A retry waits three seconds.
    let settings = format!(
        "schedule = \"{}\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nretries = 5\nretry_delay = \"3s\"\n",
        due_in_two_seconds()
    );
    write_settings(&site, &settings);
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    // The run fails (a file stands where its directory should be) and waits to retry.
    let dir = archive_dir(&site);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();
    wait_until("the run is waiting to retry", || async {
        last_status(&admin, "default").await == "retrying"
    })
    .await;
    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    // The reload stops the waiting instance; its successor catches the run up.
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the new instance's run succeeded", || async {
        last_status(&admin, "default").await == "ok"
    })
    .await;
    // The old instance's last act: its run ends when it sees it was stopped.
    server.wait_for_log("the run ends: the plugin was reloaded or stopped during this run");
    let row = status(&admin, "default").await;
    assert_eq!(row["last_status"], "ok", "{row:?}");
    assert!(!row.contains_key("last_error"), "{row:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_running_backup_keeps_its_archive_and_raises_no_alarm() {
    let site = site(YEARLY);
    let server = site.start();
    let admin = server.admin("default").await;
    filled(&admin, 1000).await; // about 1 MB: some seconds at 256 KiB/s
    write_settings(
        &site,
        &format!(
            "schedule = \"{}\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nmax_rate = \"256KiB\"\nbuffer_size = \"64KiB\"\n",
            due_in_two_seconds()
        ),
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the scheduled backup is running", || async {
        history(&admin, "default")
            .await
            .iter()
            .any(|r| r["status"] == "running")
    })
    .await;
    // Reloaded mid-backup: the old instance can no longer ask the server to verify.
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    server.wait_for_log("the archive is kept but not verified");
    let dir = archive_dir(&site);
    let names = files(&dir);
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("default-") && n.ends_with(".zip")),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.ends_with(".unverified")),
        "a good archive was set aside as damaged: {names:?}"
    );
    assert!(
        !server.logs().contains("failed after"),
        "a reload raised a failure alert"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_at_load_not_at_the_first_run() {
    // Each refused when the plugin loads, naming the key, instead of failing every run.
    let site = site("schedule = \"0 2 * * *\"\nbuffer_size = \"1KiB\"\n");
    let server = site.start();
    let admin = server.admin("default").await;
    let (state, error) = plugin_state(&admin).await;
    assert_eq!(state, "failed");
    assert!(error.contains("`buffer_size`"), "{error}");
    for (settings, key) in [
        ("schedule = \"0 2 * * *\"\nmax_rate = 0\n", "`max_rate`"),
        (
            "schedule = \"0 * * * *\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMdd}.zip\"\n",
            "`target_file_name`",
        ),
        (
            "schedule = \"0 2 * * *\"\nmode = \"export\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"\n",
            ".json.gz",
        ),
        (
            "schedule = \"0 2 * * *\"\ntarget_file_name = \".cairn-tmp-${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"\n",
            "temporary",
        ),
    ] {
        write_settings(&site, settings);
        refused(&admin, "RELOAD PLUGIN automatic_backup", key).await;
    }

    // A db_include that matches no database: said in the log and in status().
    write_settings(
        &site,
        "schedule = \"0 2 * * *\"\ndb_include = [\"salse*\", \"default\"]\n",
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    server.wait_for_log("a db_include pattern matches no database");
    let unmatched = status(&admin, "salse*").await;
    assert_eq!(unmatched["last_status"], "no_match");
    assert!(
        unmatched["last_error"].contains("matches no database"),
        "{unmatched:?}"
    );
    assert!(status(&admin, "default").await.contains_key("next_run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_name_taken_by_an_earlier_run_that_day_skips_the_run_instead_of_failing_it() {
    use chrono::Timelike;
    // A zone where it is about noon now, so that "today" lasts the whole test.
    let offset = 12 - i32::try_from(chrono::Utc::now().hour()).unwrap();
    let zone = match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    };
    let settings = |schedule: &str| {
        format!(
            "schedule = \"{schedule}\"\ntimezone = \"{zone}\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\ntarget_file_name = \"${{DBNAME}}-${{DATE:yyyyMMdd}}.zip\"\n"
        )
    };
    let site = site(&settings("0 0 1 1 *"));
    let server = site.start();
    let admin = server.admin("default").await;
    // Today's archive, by hand (as a catch-up would have made it).
    rows(&admin, "CALL automatic_backup.run('default')").await;
    refused(
        &admin,
        "CALL automatic_backup.run('default')",
        "already written for this period",
    )
    .await;
    // The scheduled run of the same day finds its name taken by that archive.
    let manual = status(&admin, "default").await["last_run"].clone();
    // Two seconds from now on that zone's clock.
    let due =
        chrono::Utc::now() + chrono::Duration::seconds(2) + chrono::Duration::hours(offset.into());
    write_settings(&site, &settings(&due.format("%S %M %H * * *").to_string()));
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the scheduled run has come and gone", || async {
        let row = status(&admin, "default").await;
        row["last_run"] != manual && row["last_status"] == "skipped"
    })
    .await;
    let row = status(&admin, "default").await;
    assert!(
        row["last_error"].contains("already written for this period"),
        "{row:?}"
    );
    let runs = history(&admin, "default").await;
    assert_eq!(runs.len(), 1, "one backup, no failed attempt: {runs:?}");
    assert!(
        !server.logs().contains("failed after"),
        "an alert was raised"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_backup_is_recorded_in_the_history() {
    // Every attempt is recorded: a run whose file name is taken fails, and backups() says so.
    let site = site(YEARLY);
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("BACKUP DATABASE TO 'taken.zip'")
        .await
        .unwrap();
    refused(&admin, "BACKUP DATABASE TO 'taken.zip'", "already exists").await;
    let runs = history(&admin, "default").await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[1]["status"], "failed");
    assert!(
        runs[1]["backup_error"].contains("already exists"),
        "{runs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphaned_archives_a_briefly_absent_directory_forgets_none_of_them() {
    let settings = format!("{EVERY_TWO_SECONDS}[retention]\nkeep_last = 2\n");
    let site = site(&settings);
    let server = site.start();
    let admin = server.admin("default").await;
    filled(&admin, 50).await;
    wait_until("three scheduled backups", || async {
        complete_backups(&admin, "default").await >= 3
    })
    .await;
    let dir = archive_dir(&site);
    let aside = site.dir.path().join("auto.away");
    let gone_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::rename(&dir, &aside).unwrap();
    wait_until("a run ended after the directory went away", || async {
        let row = status(&admin, "default").await;
        row.get("last_run").is_some_and(|t| *t > gone_at)
            && ["ok", "failed"].contains(&row["last_status"].as_str())
    })
    .await;
    assert!(
        !dir.exists(),
        "a run made a new, empty target directory in place of the missing one"
    );
    let row = status(&admin, "default").await;
    assert!(row["last_error"].contains("missing or unusable"), "{row:?}");
    // Nor does a reload make a stand-in: the schedule goes on, failing, until it is back.
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    assert!(
        !dir.exists(),
        "the reload made a new, empty target directory"
    );
    server.wait_for_log("it is not made anew");
    std::fs::rename(&aside, &dir).unwrap();
    let before = complete_backups(&admin, "default").await;
    wait_until("two more backups after the directory came back", || async {
        complete_backups(&admin, "default").await >= before + 2
    })
    .await;
    // Stop the schedule, so the directory holds still while it is counted.
    write_settings(
        &site,
        &settings.replace("schedule =", "enabled = false\nschedule ="),
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the last run has pruned", || async {
        last_status(&admin, "default").await == "ok"
    })
    .await;
    // Retention went on with every archive it had written before the absence: exactly the
    // two newest remain, once a run that was in flight at the reload has pruned too.
    let archives = || {
        files(&dir)
            .into_iter()
            .filter(|n| n.starts_with("default-") && n.ends_with(".zip"))
            .count()
    };
    wait_until(
        "archives written before the absence are pruned (only the two newest remain)",
        || async { archives() == 2 },
    )
    .await;
    assert_eq!(status(&admin, "default").await["archives_kept"], "2");
}

/// A small tmpfs mounted over `dir` for the length of a test: a disk that really fills.
struct SmallDisk {
    dir: std::path::PathBuf,
    sudo: bool,
}

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let options = format!("size={size},mode=0700");
        let mount = |sudo: bool| {
            let mut command = Command::new(if sudo { "sudo" } else { "mount" });
            if sudo {
                command.args(["-n", "mount"]);
            }
            command
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        let sudo = if mount(false) {
            false
        } else if mount(true) {
            true
        } else {
            panic!(
                "this test fills a real disk: it mounts a {size} tmpfs, which needs root (CI runs as root) or passwordless sudo"
            )
        };
        SmallDisk {
            dir: dir.to_owned(),
            sudo,
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let mut command = Command::new(if self.sudo { "sudo" } else { "umount" });
        if self.sudo {
            command.args(["-n", "umount"]);
        }
        let _ = command.arg("-l").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_data_disk_the_admin_can_still_log_in_drop_and_back_up_and_the_server_restarts() {
    use crate::harness::{ADMIN_PASSWORD, Site, WRITER_PASSWORD, column, message, standard_config};
    let site = Site::new(&standard_config().replace(
        "shutdown_grace_ms = 5000\n",
        "shutdown_grace_ms = 5000\nreserved_space = \"4MiB\"\n",
    ));
    let disk = SmallDisk::mount(&site.data_dir(), "24m");
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE DATABASE big").await.unwrap();
    let writer = server
        .connect("writer", WRITER_PASSWORD, "big")
        .await
        .unwrap();
    writer
        .batch_execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
        .await
        .unwrap();
    // Fill the disk, 100 KB a statement, until the server refuses.
    let mut acknowledged = 0u32;
    let refusal = loop {
        assert!(acknowledged < 1_000, "the 24 MiB disk never filled");
        match writer
            .batch_execute("INSERT INTO t(v) VALUES (randomblob(100000))")
            .await
        {
            Ok(()) => acknowledged += 1,
            Err(e) if message(&e).contains("data disk is full") => break e,
            Err(e) => {
                // SQLite's own "disk full": the first write that did not fit.
                assert_eq!(e.code().unwrap().code(), "53100", "{}", message(&e));
            }
        }
    };
    assert_eq!(refusal.code().unwrap().code(), "53100");
    server.wait_for_log("released the reserve for the admin");

    // The admin logs in afresh, lists the databases, finds every acknowledged row.
    let fresh = server.admin("default").await;
    assert_eq!(
        column(&fresh, "SHOW DATABASES").await[..2],
        ["big", "default"]
    );
    let big = server.admin("big").await;
    assert_eq!(
        column(&big, "SELECT count(*) FROM t").await,
        [acknowledged.to_string()]
    );
    drop(big);
    // A backup to another disk works, and is a real archive.
    fresh
        .batch_execute("BACKUP DATABASE big TO 'big.zip'")
        .await
        .unwrap();
    let archive = site.dir.path().join("backups").join("big.zip");
    let unzip = Command::new("unzip")
        .arg("-tq")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(unzip.status.success(), "{unzip:?}");
    // A restore that cannot fit is refused before it writes anything.
    let err = fresh
        .batch_execute("RESTORE DATABASE copy FROM 'big.zip'")
        .await
        .unwrap_err();
    assert!(
        message(&err).contains("free") && message(&err).contains("nothing was written"),
        "{}",
        message(&err)
    );
    assert!(crate::harness::temporaries(&site.data_dir().join("databases")).is_empty());
    // The admin may write into the reserve, but not to the last byte: logging in and
    // dropping must stay possible.
    let admin_in_big = server.admin("big").await;
    let floor = loop {
        match admin_in_big
            .batch_execute("INSERT INTO t(v) VALUES (randomblob(100000))")
            .await
        {
            Ok(()) => {}
            Err(e) => break e,
        }
    };
    assert!(
        message(&floor).contains("even the admin's"),
        "{}",
        message(&floor)
    );
    drop(admin_in_big);
    let fresh_again = server.admin("default").await;
    assert_eq!(
        column(&fresh_again, "SHOW DATABASES").await[..2],
        ["big", "default"]
    );
    drop((admin, writer, fresh, fresh_again));

    // A restart on the full disk succeeds, and the room is still the admin's.
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let server = site.start();
    let writer = server
        .connect("writer", WRITER_PASSWORD, "big")
        .await
        .unwrap();
    let err = writer
        .batch_execute("INSERT INTO t(v) VALUES (1)")
        .await
        .unwrap_err();
    assert!(
        message(&err).contains("data disk is full"),
        "{}",
        message(&err)
    );
    drop(writer);
    let admin = server
        .connect("admin", ADMIN_PASSWORD, "default")
        .await
        .unwrap();
    admin.batch_execute("DROP DATABASE big").await.unwrap();
    // With the space back, the reserve is made again and everyone may write.
    server.wait_for_log("every user may write");
    let writer = server
        .connect("writer", WRITER_PASSWORD, "default")
        .await
        .unwrap();
    writer
        .batch_execute("CREATE TABLE after(x); INSERT INTO after VALUES (1)")
        .await
        .unwrap();
    assert!(site.data_dir().join("reserved-space").is_file());
    drop((admin, writer));
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    drop(disk);
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_snapshot_readable_by_others_every_file_is_owner_only() {
    use crate::harness::{Site, backups_dir, column, temporaries, wait_for_progress};
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    filled(&admin, 2000).await;
    // Slowed to 64 KiB a second, so its temporaries can be looked at while it runs.
    let id = column(
        &admin,
        "BACKUP DATABASE TO 'slow.zip' WITH (max_rate = '64KiB', buffer_size = '64KiB', detached)",
    )
    .await
    .remove(0);
    wait_for_progress(&admin, &id).await;
    let dir = backups_dir(&site);
    let running = temporaries(&dir);
    assert!(
        running.iter().any(|n| n.ends_with(".snapshot")),
        "{running:?}"
    );
    for name in &running {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name} is readable by others");
    }
    admin
        .batch_execute(&format!("CANCEL BACKUP {id}"))
        .await
        .unwrap();

    // Every final file too: archives, exports, restored and new databases.
    admin
        .batch_execute(
            "BACKUP DATABASE TO 'a.zip'; EXPORT DATABASE TO 'a.json.gz';
             RESTORE DATABASE restored FROM 'a.zip'; IMPORT DATABASE imported FROM 'a.json.gz';
             CREATE DATABASE created",
        )
        .await
        .unwrap();
    let databases = site.data_dir().join("databases");
    for path in [
        dir.join("a.zip"),
        dir.join("a.json.gz"),
        databases.join("restored.sqlite"),
        databases.join("imported.sqlite"),
        databases.join("created.sqlite"),
    ] {
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_named_like_a_temporary_file_is_refused() {
    use crate::harness::{Site, backups_dir};
    let site = Site::standard();
    let server = site.start();
    let admin = server.admin("default").await;
    for statement in [
        "BACKUP DATABASE TO '.cairn-tmp-x.zip'",
        "BACKUP DATABASE TO 'daily/.cairn-tmp-x.zip'",
        "EXPORT DATABASE TO '.cairn-tmp-x.json.gz'",
        "BACKUP DATABASE .cairn-tmp-x.zip",
    ] {
        refused(&admin, statement, "temporary files").await;
    }
    assert!(crate::harness::temporaries(&backups_dir(&site)).is_empty());
    let (ok, out) = crate::harness::run(
        crate::harness::cairn()
            .arg("backup")
            .arg("--data-dir")
            .arg(site.data_dir())
            .args(["--database", "default", "--to"])
            .arg(site.dir.path().join(".cairn-tmp-cli.zip")),
    );
    assert!(!ok && out.contains("temporary files"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_create_database_leaves_no_database_nobody_was_told_about() {
    use crate::harness::Site;
    let site = Site::standard();
    let databases = site.data_dir().join("databases");
    let count = || std::fs::read_dir(&databases).map_or(0, |d| d.count());
    for round in 0..16u64 {
        let server = site.start();
        // Four clients create database after database, until the kill lands in some.
        let mut creators = Vec::new();
        for client in 0..4 {
            let admin = server.admin("default").await;
            creators.push(tokio::spawn(async move {
                for n in 0.. {
                    let sql = format!("CREATE DATABASE r{round}_{client}_{n}");
                    if admin.batch_execute(&sql).await.is_err() {
                        break;
                    }
                }
            }));
        }
        let before = count();
        let deadline = std::time::Instant::now() + crate::automatic_backup::PATIENCE;
        while count() < before + 8 {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no databases were being created"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        let killed = Command::new("kill")
            .args(["-KILL", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        drop(server);
        for creator in creators {
            let _ = creator.await;
        }
        // Whatever is under a database's name is a whole database in WAL mode.
        for entry in std::fs::read_dir(&databases).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".sqlite") {
                continue;
            }
            let header = std::fs::read(&path).unwrap();
            assert!(
                header.len() >= 100 && header[18] == 2 && header[19] == 2,
                "round {round}: {name} is not a whole WAL database ({} bytes)",
                header.len()
            );
        }
    }
    // The next start clears the temporaries a kill left behind.
    let server = site.start();
    server.assert_still_serving().await;
    assert!(crate::harness::temporaries(&databases).is_empty());
}
