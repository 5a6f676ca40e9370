//! The bundled automatic-backup plugin with the real binary: scheduled runs, names, retention,
//! failures and retries, overlap, reload, a kill mid-run and catch-up, and the same plugin
//! loaded as a shared library.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, SimpleQueryMessage};

use crate::harness::{Site, refused, standard_config};
use crate::plugins::cdylib;

/// How long a condition may take to come true before the test fails.
pub(crate) const PATIENCE: Duration = Duration::from_secs(90);

/// A site whose config enables the builtin plugin with `settings` as its config file.
pub(crate) fn site(settings: &str) -> Site {
    let site = Site::new(&format!(
        "{}\n[plugins.automatic_backup]\nlibrary = \"builtin\"\nconfig_file = \"automatic-backup.toml\"\n",
        standard_config()
    ));
    write_settings(&site, settings);
    site
}

pub(crate) fn write_settings(site: &Site, settings: &str) {
    std::fs::write(site.dir.path().join("automatic-backup.toml"), settings).unwrap();
}

pub(crate) fn archive_dir(site: &Site) -> PathBuf {
    site.dir.path().join("backups").join("auto")
}

/// File names in `dir`, sorted.
pub(crate) fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Every row of `sql` as maps from column name to text (NULL absent).
pub(crate) async fn rows(client: &Client, sql: &str) -> Vec<BTreeMap<String, String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| Some((c.name().to_owned(), row.get(i)?.to_owned())))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The status row of `database`.
pub(crate) async fn status(client: &Client, database: &str) -> BTreeMap<String, String> {
    rows(client, "CALL automatic_backup.status()")
        .await
        .into_iter()
        .find(|r| r["database"] == database)
        .unwrap_or_else(|| panic!("no status row for {database}"))
}

/// The `last_status` of `database` ("" before its first run).
pub(crate) async fn last_status(client: &Client, database: &str) -> String {
    status(client, database)
        .await
        .remove("last_status")
        .unwrap_or_default()
}

/// The backup history of `database`, oldest first.
pub(crate) async fn history(client: &Client, database: &str) -> Vec<BTreeMap<String, String>> {
    rows(
        client,
        &format!(
            "SELECT id, status, start_ts, end_ts, path, backup_error FROM backups() WHERE database = '{database}' AND kind = 'backup' ORDER BY id"
        ),
    )
    .await
}

/// Polls `check` until it is true; fails after [`PATIENCE`] with `what`.
pub(crate) async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + PATIENCE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) async fn complete_backups(client: &Client, database: &str) -> usize {
    history(client, database)
        .await
        .iter()
        .filter(|r| r["status"] == "complete")
        .count()
}

/// Settings that back up `default` into `auto` once a year: a schedule that never fires
/// during a test.
pub(crate) const YEARLY: &str =
    "schedule = \"0 0 1 1 *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\n";

/// A cron schedule due two seconds from now, then not until tomorrow: a run after it can only
/// be a catch-up or a retry. Set it by a reload, so a slow start cannot miss the time.
pub(crate) fn due_in_two_seconds() -> String {
    let due = chrono::Utc::now() + chrono::Duration::seconds(2);
    due.format("%S %M %H * * *").to_string()
}

/// `rows` rows of incompressible text, so that a rate-limited backup takes a while.
pub(crate) async fn filled(client: &Client, rows: u32) {
    client
        .batch_execute(&format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
             WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows})
             INSERT INTO t SELECT x, hex(randomblob(500)) FROM c"
        ))
        .await
        .unwrap();
}

/// `name_YYYYMMDD-HHMMSS.zip` for `database`.
fn named_by_template(database: &str, file: &str) -> bool {
    let Some(rest) = file.strip_prefix(&format!("{database}_")) else {
        return false;
    };
    let Some(stamp) = rest.strip_suffix(".zip") else {
        return false;
    };
    stamp.len() == 15
        && stamp
            .char_indices()
            .all(|(i, c)| if i == 8 { c == '-' } else { c.is_ascii_digit() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_runs_back_up_included_databases_verified_named_and_retained() {
    let site = site(
        r#"
schedule = "*/2 * * * * *"
db_include = ["sales*"]
db_exclude = ["sales_tmp"]
target_directory = "auto"
target_file_name = "${DBNAME}_${DATE:yyyyMMdd-HHmmss}.zip"
compression_level = 1
[retention]
keep_last = 2
"#,
    );
    // Files retention must never touch: foreign, partial, and one that fits the template
    // but was not written by the plugin.
    let dir = archive_dir(&site);
    std::fs::create_dir_all(&dir).unwrap();
    for foreign in [
        "notes.txt",
        ".cairn-tmp-sales_20200101-000000.zip",
        "sales_20200101-000000.zip",
    ] {
        std::fs::write(dir.join(foreign), b"not the plugin's").unwrap();
    }
    let server = site.start();
    let admin = server.admin("default").await;
    for db in ["sales", "sales_eu", "sales_tmp", "hr"] {
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .await
            .unwrap();
    }
    filled(&server.admin("sales").await, 200).await;

    wait_until(
        "four scheduled backups of each included database",
        || async {
            complete_backups(&admin, "sales").await >= 4
                && complete_backups(&admin, "sales_eu").await >= 4
        },
    )
    .await;
    // Stop the schedule (a reload with enabled = false), then let the last run finish.
    write_settings(
        &site,
        "enabled = false\nschedule = \"*/2 * * * * *\"\ndb_include = [\"sales*\"]\ntarget_directory = \"auto\"\ntarget_file_name = \"${DBNAME}_${DATE:yyyyMMdd-HHmmss}.zip\"\n[retention]\nkeep_last = 2\n",
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the last run has finished", || async {
        last_status(&admin, "sales").await == "ok" && last_status(&admin, "sales_eu").await == "ok"
    })
    .await;

    // No backups of excluded or not included databases.
    for db in ["sales_tmp", "hr", "default"] {
        assert!(history(&admin, db).await.is_empty(), "{db} was backed up");
    }
    let names = files(&dir);
    for foreign in [
        "notes.txt",
        ".cairn-tmp-sales_20200101-000000.zip",
        "sales_20200101-000000.zip",
    ] {
        assert!(
            names.contains(&foreign.to_owned()),
            "{foreign} was touched: {names:?}"
        );
    }
    for db in ["sales", "sales_eu"] {
        // Exactly the two newest archives it wrote, by the template's names.
        let ours: Vec<String> = history(&admin, db)
            .await
            .iter()
            .filter(|r| r["status"] == "complete")
            .map(|r| {
                Path::new(&r["path"])
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let newest_two = ours[ours.len() - 2..].to_vec();
        let on_disk: Vec<String> = names
            .iter()
            .filter(|n| named_by_template(db, n) && *n != "sales_20200101-000000.zip")
            .cloned()
            .collect();
        assert_eq!(on_disk, newest_two, "{db}: {names:?}");
        assert_eq!(status(&admin, db).await["archives_kept"], "2");
        // Each is a real archive that restores.
        for (i, file) in newest_two.iter().enumerate() {
            let restored = format!("{db}_restored_{i}");
            admin
                .batch_execute(&format!("RESTORE DATABASE {restored} FROM 'auto/{file}'"))
                .await
                .unwrap();
        }
    }
    let restored = server.admin("sales_restored_1").await;
    let count: i64 = restored
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 200);
    let newest = names
        .iter()
        .rfind(|n| named_by_template("sales", n))
        .unwrap();
    let unzip = Command::new("unzip")
        .arg("-tq")
        .arg(dir.join(newest))
        .output()
        .unwrap();
    assert!(unzip.status.success(), "{unzip:?}");
    // The dry run lists what would go, and the disabled schedule shows no next run.
    let plan = rows(
        &admin,
        "CALL automatic_backup.prune(dry_run => true, database => 'sales')",
    )
    .await;
    assert_eq!(plan.len(), 2);
    assert!(plan.iter().all(|r| r["action"] == "keep"), "{plan:?}");
    assert!(!status(&admin, "sales").await.contains_key("next_run"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_is_retried_and_visible_and_the_next_run_works_once_fixed() {
    let site = site(
        r#"
schedule = "*/2 * * * * *"
db_include = ["default"]
target_directory = "auto"
retries = 1
retry_delay = "1s"
"#,
    );
    // The example plugin stands in for an alerting plugin: it logs the alerts it receives.
    let config = std::fs::read_to_string(site.config_path()).unwrap();
    std::fs::write(
        site.config_path(),
        format!(
            "{config}\n[plugins.hello]\nlibrary = \"libhello_plugin.so\"\n[plugins.hello.config]\ngreeting = \"Hi\"\ntick = \"0 0 1 1 *\"\n"
        ),
    )
    .unwrap();
    let plugins = site.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(cdylib("hello_plugin"), plugins.join("libhello_plugin.so")).unwrap();
    let server = site.start();
    let admin = server.admin("default").await;
    // The target directory becomes unusable: a file where the directory should be (the
    // tests run as root, for whom permission bits do not stop writes).
    let dir = archive_dir(&site);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::write(&dir, b"in the way").unwrap();

    wait_until("a run failed after its retry", || async {
        last_status(&admin, "default").await == "failed"
    })
    .await;
    let row = status(&admin, "default").await;
    // The plugin refuses to write into a directory that is not there (the server would
    // make a new one): nothing reaches the backup history, the status and log say why.
    assert!(
        row["last_error"].contains("auto") && row["last_error"].contains("missing or unusable"),
        "{row:?}"
    );
    server.wait_for_log("automatic backup failed; retrying");
    server.wait_for_log("failed after 2 attempt(s)");
    server.wait_for_log("hello heard an alert");

    std::fs::remove_file(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    wait_until("a run succeeded after the fix", || async {
        last_status(&admin, "default").await == "ok"
    })
    .await;
    assert!(files(&dir).iter().any(|f| f.starts_with("default-")));
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_database_never_overlap() {
    let site = site(
        r#"
schedule = "* * * * * *"
db_include = ["default"]
target_directory = "auto"
max_rate = "512KiB"
buffer_size = "64KiB"
compression_level = 0
"#,
    );
    let server = site.start();
    let admin = server.admin("default").await;
    filled(&admin, 2000).await; // about 2 MB: each run takes a few seconds at 512 KiB/s

    wait_until("a scheduled run is going", || async {
        history(&admin, "default")
            .await
            .iter()
            .any(|r| r["status"] == "running")
    })
    .await;
    refused(
        &admin,
        "CALL automatic_backup.run('default')",
        "in progress",
    )
    .await;
    wait_until("three scheduled runs have completed", || async {
        complete_backups(&admin, "default").await >= 3
    })
    .await;
    let runs = history(&admin, "default").await;
    let finished: Vec<_> = runs.iter().filter(|r| r.contains_key("end_ts")).collect();
    for pair in finished.windows(2) {
        assert!(
            pair[0]["end_ts"] <= pair[1]["start_ts"],
            "runs overlap: {:?} and {:?}",
            pair[0],
            pair[1]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_schedule_and_a_bad_config_keeps_the_old_one() {
    let site = site(YEARLY);
    let server = site.start();
    let admin = server.admin("default").await;
    let next = status(&admin, "default").await["next_run"].clone();
    assert!(next.ends_with("-01-01T00:00:00Z"), "{next}");

    // A bad config is refused, naming the key, and the old schedule goes on.
    write_settings(&site, "schedule = \"every now and then\"\n");
    refused(&admin, "RELOAD PLUGIN automatic_backup", "`schedule`").await;
    assert_eq!(status(&admin, "default").await["next_run"], next);

    // SIGHUP reloads it: now every two seconds.
    write_settings(
        &site,
        "schedule = \"*/2 * * * * *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\n",
    );
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    wait_until("the new schedule has run", || async {
        complete_backups(&admin, "default").await >= 1
    })
    .await;
    assert_ne!(status(&admin, "default").await["next_run"], next);
    server.assert_still_serving().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_mid_run_leaves_no_partial_archive_and_the_next_start_catches_up() {
    let site = site(YEARLY);
    let server = site.start();
    let admin = server.admin("default").await;
    filled(&admin, 2000).await;
    // A run after the restart can only be the catch-up.
    let schedule = due_in_two_seconds();
    write_settings(
        &site,
        &format!(
            "schedule = \"{schedule}\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\nmax_rate = \"64KiB\"\nbuffer_size = \"64KiB\"\n"
        ),
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    let dir = archive_dir(&site);
    wait_until("the scheduled run is writing", || async {
        history(&admin, "default")
            .await
            .iter()
            .any(|r| r["status"] == "running")
            && files(&dir).iter().any(|f| f.starts_with(".cairn-tmp-"))
    })
    .await;
    drop(admin);
    let killed = Command::new("kill")
        .args(["-KILL", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    drop(server);
    assert!(
        files(&dir).iter().all(|f| f.starts_with(".cairn-tmp-")),
        "an archive under a final name: {:?}",
        files(&dir)
    );

    // The same schedule, without the rate limit.
    write_settings(
        &site,
        &format!(
            "schedule = \"{schedule}\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\n"
        ),
    );
    let server = site.start();
    let admin = server.admin("default").await;
    wait_until("the missed run was caught up", || async {
        last_status(&admin, "default").await == "ok"
    })
    .await;
    server.wait_for_log("it runs now (catch_up)");
    let names = files(&dir);
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("default-") && names[0].ends_with(".zip"));
    let runs = history(&admin, "default").await;
    assert_eq!(runs[0]["status"], "failed");
    assert!(runs[0]["backup_error"].contains("stopped"), "{:?}", runs[0]);
    assert_eq!(runs[1]["status"], "complete");
    // The next run is tomorrow's.
    let next =
        chrono::DateTime::parse_from_rfc3339(&status(&admin, "default").await["next_run"]).unwrap();
    assert!(
        next > chrono::Utc::now() + chrono::Duration::hours(23),
        "{next}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plugin_also_loads_as_a_shared_library() {
    let site = Site::new(&format!(
        "{}\n[plugins.automatic_backup]\nlibrary = \"libautomatic_backup.so\"\n[plugins.automatic_backup.config]\nschedule = \"0 3 * * *\"\ntimezone = \"Europe/Berlin\"\ntarget_directory = \"auto\"\n",
        standard_config()
    ));
    let plugins = site.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(
        cdylib("automatic_backup"),
        plugins.join("libautomatic_backup.so"),
    )
    .unwrap();
    let server = site.start();
    let admin = server.admin("default").await;
    let run = rows(&admin, "CALL automatic_backup.run('default')").await;
    assert_eq!(run.len(), 1);
    assert!(Path::new(&run[0]["archive"]).is_file(), "{run:?}");
    let row = status(&admin, "default").await;
    assert_eq!(row["last_status"], "ok");
    assert_eq!(row["archives_kept"], "1");
    server.wait_for_log("automatic backup complete");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_mode_writes_verified_exports_by_the_template_and_retains_them() {
    let site = site(
        r#"
schedule = "*/2 * * * * *"
db_include = ["sales"]
mode = "export"
target_directory = "auto"
[retention]
keep_last = 2
"#,
    );
    let server = site.start();
    let admin = server.admin("default").await;
    admin.batch_execute("CREATE DATABASE sales").await.unwrap();
    filled(&server.admin("sales").await, 200).await;
    let exports = || async {
        rows(
            &admin,
            "SELECT path FROM backups() WHERE database = 'sales' AND kind = 'export' AND status = 'complete' ORDER BY id",
        )
        .await
        .into_iter()
        .map(|r| r["path"].clone())
        .collect::<Vec<_>>()
    };
    wait_until("three scheduled exports", || async {
        exports().await.len() >= 3
    })
    .await;
    write_settings(
        &site,
        "enabled = false\nschedule = \"*/2 * * * * *\"\nmode = \"export\"\ntarget_directory = \"auto\"\n[retention]\nkeep_last = 2\n",
    );
    admin
        .batch_execute("RELOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    wait_until("the last run has finished", || async {
        last_status(&admin, "sales").await == "ok"
    })
    .await;
    // No backups in export mode, only exports; the two newest are kept, by the default
    // template's names (`sales-YYYYMMDDHHMMSS.json.gz`).
    assert!(history(&admin, "sales").await.is_empty());
    let written = exports().await;
    let newest_two: Vec<String> = written[written.len() - 2..]
        .iter()
        .map(|p| {
            Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(files(&archive_dir(&site)), newest_two);
    for name in &newest_two {
        let stamp = name
            .strip_prefix("sales-")
            .and_then(|n| n.strip_suffix(".json.gz"))
            .unwrap_or_else(|| panic!("{name} does not fit the template"));
        assert!(
            stamp.len() == 14 && stamp.chars().all(|c| c.is_ascii_digit()),
            "{name}"
        );
    }
    admin
        .batch_execute(&format!(
            "IMPORT DATABASE sales_copy FROM 'auto/{}'",
            newest_two[1]
        ))
        .await
        .unwrap();
    let copy = server.admin("sales_copy").await;
    let count: i64 = copy
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 200);
}

/// The plugin's config errors said "line 14: invalid type…" with no file and no key, an
/// out-of-range cron "Number out of bounds", and `@daily` was refused (issue 17, item 5).
#[tokio::test]
async fn plugin_config_errors_named_no_file_and_no_key() {
    let site =
        site("schedule = \"@daily\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\n");
    let server = site.start();
    let admin = server.admin("default").await;
    let rows = rows(&admin, "SHOW PLUGINS").await;
    assert_eq!(rows[0]["state"], "running", "@daily is accepted: {rows:?}");
    for (settings, expected) in [
        (
            "schedule = \"0 2 * * *\"\n[retention]\nkeep_last = \"three\"\n",
            "line 3, column 13, key `retention.keep_last`",
        ),
        (
            "schedule = \"61 2 * * *\"\n",
            "61 is out of range for the minute field (0-59)",
        ),
    ] {
        write_settings(&site, settings);
        let err = admin
            .batch_execute("RELOAD PLUGIN automatic_backup")
            .await
            .unwrap_err();
        let message = crate::harness::message(&err);
        assert!(message.contains(expected), "{message}");
        assert!(
            message.contains("automatic-backup.toml"),
            "the file is not named: {message}"
        );
    }
}

/// OrientDB's `automatic-backup.json`, as its documentation shows it (with a seven-second
/// delay, which does not divide a day, from a `firstTime` three seconds ahead, so that the
/// test need not wait for 23:00),
/// read as is: runs on its schedule, names its files by its template, and the log says how
/// each key was mapped. `firstTime` is the server's local time (here `TZ=Asia/Tokyo`, nine
/// hours from UTC), as OrientDB reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orientdbs_automatic_backup_json_runs_as_written() {
    let site = Site::new(&format!(
        "{}\n[plugins.automatic_backup]\nlibrary = \"builtin\"\nconfig_file = \"automatic-backup.json\"\n",
        standard_config()
    ));
    // OrientDB's first run is at firstTime (its next occurrence), then every delay.
    let tokyo = chrono::FixedOffset::east_opt(9 * 3600).unwrap();
    let first_time = (chrono::Utc::now().with_timezone(&tokyo) + chrono::Duration::seconds(3))
        .format("%H:%M:%S");
    std::fs::write(
        site.dir.path().join("automatic-backup.json"),
        format!(
            r#"{{
  "enabled": true,
  "mode": "FULL_BACKUP",
  "exportOptions": "",
  "delay": "7s",
  "firstTime": "{first_time}",
  "targetDirectory": "orient",
  "targetFileName": "${{DBNAME}}-${{DATE:yyyyMMddHHmmss}}.zip",
  "dbInclude": "default",
  "compressionLevel": 9,
  "bufferSize": 1048576
}}
"#
        ),
    )
    .unwrap();
    let server = crate::harness::TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[("TZ", "Asia/Tokyo")],
    );
    let admin = server.admin("default").await;
    filled(&admin, 50).await;
    let dir = site.dir.path().join("backups").join("orient");
    wait_until("two scheduled backups by OrientDB's template", || async {
        files(&dir)
            .iter()
            .filter(|n| {
                n.strip_prefix("default-")
                    .and_then(|rest| rest.strip_suffix(".zip"))
                    .is_some_and(|stamp| {
                        stamp.len() == 14 && stamp.bytes().all(|b| b.is_ascii_digit())
                    })
            })
            .count()
            >= 2
    })
    .await;
    let logs = server.logs();
    assert!(
        logs.contains(&format!("firstTime → first_time = \"{first_time}\""))
            && logs.contains("→ timezone = \"Asia/Tokyo\""),
        "{logs}"
    );
    // The archives are OrientDB's compression level, 9.
    let newest = files(&dir)
        .into_iter()
        .rev()
        .find(|n| n.ends_with(".zip"))
        .unwrap();
    let (ok, out) = crate::harness::run(
        std::process::Command::new("unzip")
            .arg("-p")
            .arg(dir.join(&newest))
            .arg("manifest.json"),
    );
    assert!(ok, "{out}");
    assert!(out.contains("\"compression_level\": 9"), "{out}");
}
