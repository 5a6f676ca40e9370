//! The operators' HTTP endpoint with the real binary: `/metrics` scraped and parsed by the
//! Prometheus client library's own parser, its values checked against `backups()`, and
//! `/health` through a shutdown.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Site, TestServer, standard_config};

/// A site whose server also serves `[server.http]` on a free port.
fn site() -> Site {
    Site::new(&format!(
        "{}\n[server.http]\nlisten = \"127.0.0.1:0\"\n",
        standard_config()
    ))
}

/// The endpoint's base URL, from the server's log.
pub(crate) fn endpoint(server: &TestServer) -> String {
    server.wait_for_log("metrics and health endpoint");
    let logs = server.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("metrics and health endpoint"))
        .unwrap();
    let url = line.split("url=").nth(1).unwrap();
    url.trim().trim_start_matches("http://").to_owned()
}

/// `GET path` over HTTP/1.0: the status code and the body.
pub(crate) async fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_owned());
    (status, body)
}

/// The samples of a scrape, as the Prometheus client library parses them.
fn parsed(scrape: &str) -> BTreeMap<String, f64> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/metrics.py");
    let out =
        crate::harness::output_with_input(Command::new("python3").arg(script), scrape.as_bytes());
    assert!(
        out.status.success(),
        "the scrape does not parse: {}\n{scrape}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.rsplit_once(' '))
        .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_say_when_the_last_good_backup_finished() {
    let site = site();
    let server = site.start();
    let address = endpoint(&server);
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    admin
        .batch_execute("BACKUP DATABASE TO 'a.zip'")
        .await
        .unwrap();
    // The same name again: refused, recorded as a failed attempt.
    admin
        .batch_execute("BACKUP DATABASE TO 'a.zip'")
        .await
        .unwrap_err();

    let (status, scrape) = get(&address, "/metrics").await;
    assert_eq!(status, 200, "{scrape}");
    let samples = parsed(&scrape);
    let label = "{database=default,kind=backup}";
    let row = admin
        .query_one(
            "SELECT CAST(strftime('%s', end_ts) AS INTEGER), bytes FROM backups() WHERE status = 'complete'",
            &[],
        )
        .await
        .unwrap();
    let ended: i64 = row.get(0);
    let bytes: i64 = row.get(1);
    let finished = samples[&format!("cairn_backup_last_success_timestamp_seconds{label}")];
    assert_eq!(finished.floor() as i64, ended, "{scrape}");
    assert_eq!(
        samples[&format!("cairn_backup_last_success_bytes{label}")],
        bytes as f64
    );
    assert!(samples[&format!("cairn_backup_last_success_duration_seconds{label}")] >= 0.0);
    assert_eq!(samples[&format!("cairn_backup_failures_total{label}")], 1.0);
    let size: i64 = admin
        .query("SHOW DATABASES", &[])
        .await
        .unwrap()
        .iter()
        .find(|r| r.get::<_, String>("name") == "default")
        .unwrap()
        .get("size_bytes");
    assert_eq!(
        samples["cairn_database_size_bytes{database=default}"], size as f64,
        "{scrape}"
    );
    assert!(samples.contains_key("cairn_database_wal_bytes{database=default}"));
    assert_eq!(
        samples["cairn_connections{state=idle,user=admin}"], 1.0,
        "{scrape}"
    );
    // Statements by outcome: the refused BACKUP was an error, the queries above were ok.
    assert!(
        samples["cairn_statements_total{outcome=error}"] >= 1.0,
        "{scrape}"
    );
    assert!(
        samples["cairn_statements_total{outcome=ok}"] >= 3.0,
        "{scrape}"
    );
    let (status, _) = get(&address, "/nowhere").await;
    assert_eq!(status, 404);
}

/// The schedule's next run and the archives retention keeps were not on `/metrics` (issue 17,
/// item 1): the automatic-backup plugin publishes them through `set_gauge` (ABI 1.4), and a
/// scrape during scheduled backups agrees with `CALL automatic_backup.status()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schedules_next_run_and_retained_archives_were_not_scraped() {
    use crate::automatic_backup::{complete_backups, rows, wait_until, write_settings};
    let site = Site::new(&format!(
        "{}\n[server.http]\nlisten = \"127.0.0.1:0\"\n[plugins.automatic_backup]\nlibrary = \"builtin\"\nconfig_file = \"automatic-backup.toml\"\n",
        standard_config()
    ));
    write_settings(
        &site,
        "schedule = \"* * * * * *\"\ndb_include = [\"default\"]\ntarget_directory = \"auto\"\ntarget_file_name = \"${DBNAME}-${DATE:yyyyMMddHHmmss}.zip\"\n[retention]\nkeep_last = 2\n",
    );
    let server = site.start();
    let address = endpoint(&server);
    let admin = server.admin("default").await;
    wait_until("three scheduled backups", || async {
        complete_backups(&admin, "default").await >= 3
    })
    .await;
    // The plugin's status and a scrape agree once a run has published what it changed: the
    // state moves a moment before the gauges do, so read both until they meet.
    let gauge = |samples: &BTreeMap<String, f64>, name: &str| {
        samples
            .get(&format!(
                "cairn_plugin_automatic_backup_{name}{{database=default}}"
            ))
            .copied()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, scrape) = get(&address, "/metrics").await;
        assert_eq!(status, 200, "{scrape}");
        let samples = parsed(&scrape);
        let row = rows(&admin, "CALL automatic_backup.status()")
            .await
            .remove(0);
        let kept: f64 = row["archives_kept"].parse().unwrap();
        let next = chrono::DateTime::parse_from_rfc3339(&row["next_run"]).unwrap();
        let next = next.timestamp_millis() as f64 / 1000.0;
        let published = (
            gauge(&samples, "archives_retained"),
            gauge(&samples, "next_run_timestamp_seconds"),
        );
        if published == (Some(kept), Some(next)) {
            assert!(kept <= 2.0, "{row:?}");
            assert!(
                scrape.contains("# HELP cairn_plugin_automatic_backup_next_run_timestamp_seconds When the schedule next backs up"),
                "{scrape}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the gauges {published:?} never agreed with status {row:?}:\n{scrape}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Unloaded, the plugin's gauges go with it.
    admin
        .batch_execute("UNLOAD PLUGIN automatic_backup")
        .await
        .unwrap();
    let (_, scrape) = get(&address, "/metrics").await;
    assert!(
        !scrape.contains("cairn_plugin_automatic_backup_"),
        "{scrape}"
    );
}

/// A C plugin publishes a gauge through the header alone (ABI 1.4); a reload's new instance
/// publishes its own, and an unload takes it away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_c_plugin_publishes_a_gauge_through_the_header() {
    let site = Site::new(&format!(
        "{}\n[server.http]\nlisten = \"127.0.0.1:0\"\n[plugins.adder]\nlibrary = \"libadder.so\"\n",
        standard_config()
    ));
    let plugins = site.dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    crate::plugins::compile_c(
        "examples/c-plugin/adder.c",
        "plugin-api/include",
        &[],
        &plugins.join("libadder.so"),
    );
    let server = site.start();
    let address = endpoint(&server);
    let admin = server.admin("default").await;
    let (_, scrape) = get(&address, "/metrics").await;
    let samples = parsed(&scrape);
    assert_eq!(
        samples.get("cairn_plugin_adder_version_info{version=1.0.0}"),
        Some(&1.0),
        "{scrape}"
    );
    // Upgraded by rename and reloaded: the new instance's series, and not the old one's.
    let upgrade = plugins.join("libadder.so.new");
    crate::plugins::compile_c(
        "examples/c-plugin/adder.c",
        "plugin-api/include",
        &["ADDER_VERSION=\"2.0.0\""],
        &upgrade,
    );
    std::fs::rename(&upgrade, plugins.join("libadder.so")).unwrap();
    admin.batch_execute("RELOAD PLUGIN adder").await.unwrap();
    let (_, scrape) = get(&address, "/metrics").await;
    let samples = parsed(&scrape);
    assert_eq!(
        samples.get("cairn_plugin_adder_version_info{version=2.0.0}"),
        Some(&1.0),
        "{scrape}"
    );
    assert!(!scrape.contains("version=\"1.0.0\""), "{scrape}");
    admin.batch_execute("UNLOAD PLUGIN adder").await.unwrap();
    let (_, scrape) = get(&address, "/metrics").await;
    assert!(!scrape.contains("cairn_plugin_adder"), "{scrape}");
}

/// `/health/ready` says 503 while the server waits for running statements at shutdown, and
/// `/health/live` still answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_turns_unready_during_shutdown() {
    let site = site();
    let server = site.start();
    let address = endpoint(&server);
    assert_eq!(
        get(&address, "/health/ready").await,
        (200, "ready\n".into())
    );
    assert_eq!(get(&address, "/health/live").await.0, 200);
    let busy = server.admin("default").await;
    let admin = server.admin("default").await;
    let running = tokio::spawn(async move { busy.simple_query(crate::hostile::ENDLESS).await });
    crate::hostile::wait_for_running(&admin, "WITH RECURSIVE").await;
    let term = Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = get(&address, "/health/ready").await;
        if status == 503 {
            assert_eq!(body, "shutting down\n");
            break;
        }
        assert!(Instant::now() < deadline, "never unready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get(&address, "/health/live").await.0, 200);
    let _ = running.await;
    let (status, logs) = server.wait_for_exit();
    assert!(status.success(), "{logs}");
    // Started again on the same data directory, it is ready again.
    let again = site.start();
    let address = endpoint(&again);
    assert_eq!(
        get(&address, "/health/ready").await,
        (200, "ready\n".into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_states_and_reloads_are_counted() {
    let site = Site::new(&format!(
        "{}\n[server.http]\nlisten = \"127.0.0.1:0\"\n[plugins.panicky]\nlibrary = \"libpanicky_plugin.so\"\n",
        standard_config()
    ));
    crate::plugins::install_rust_plugin(&site, "panicky_plugin", "libpanicky_plugin.so");
    let server = site.start();
    let address = endpoint(&server);
    let admin = server.admin("default").await;
    admin
        .batch_execute("RELOAD PLUGIN panicky; RELOAD PLUGIN panicky")
        .await
        .unwrap();
    let samples = parsed(&get(&address, "/metrics").await.1);
    assert_eq!(
        samples["cairn_plugin_state{plugin=panicky,state=running}"],
        1.0
    );
    assert_eq!(samples["cairn_plugin_reloads_total{plugin=panicky}"], 2.0);
}
