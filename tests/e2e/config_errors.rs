//! Bad config files stop start-up with file:line:column and the key.

use std::path::Path;

use crate::harness::{Site, serve_until_exit, standard_config};

fn assert_refused(config: &str, line: usize, key: &str, words: &str) {
    let site = Site::new(config);
    let (status, stderr) = serve_until_exit(&site.config_path());
    assert!(
        !status.success(),
        "server started with a bad config:\n{stderr}"
    );
    let location = format!("{}:{line}:", site.config_path().display());
    assert!(
        stderr.contains(&location),
        "expected {location} in:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("key `{key}`")),
        "expected key {key} in:\n{stderr}"
    );
    assert!(stderr.contains(words), "expected {words:?} in:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !site.data_dir().exists(),
        "nothing may be created from a bad config"
    );
}

#[test]
fn unknown_key() {
    let config = standard_config().replace(
        "shutdown_grace_ms = 5000",
        "shutdown_grace_ms = 5000\nport = 5480",
    );
    assert_refused(&config, 5, "server.port", "unknown field `port`");
}

#[test]
fn wrong_type() {
    let config =
        standard_config().replace("shutdown_grace_ms = 5000", "shutdown_grace_ms = \"5s\"");
    assert_refused(&config, 4, "server.shutdown_grace_ms", "invalid type");
}

#[test]
fn bad_address() {
    let config = standard_config().replace("127.0.0.1:0", "127.0.0.1:70000");
    assert_refused(&config, 2, "server.listen", "invalid listen address");
}

#[test]
fn unknown_role() {
    let config = standard_config().replace("role = \"readonly\"", "role = \"superuser\"");
    assert_refused(
        &config,
        11,
        "users.reader.role",
        "unknown variant `superuser`",
    );
}

#[test]
fn missing_config_file_names_the_path() {
    let (status, stderr) = serve_until_exit(Path::new("/nonexistent/cairn.toml"));
    assert!(!status.success());
    assert!(
        stderr.contains("cannot read config file /nonexistent/cairn.toml"),
        "{stderr}"
    );
}

/// An invalid CAIRN_LOG was silently replaced by the default filter (issue 17, item 4).
#[test]
fn an_invalid_cairn_log_was_silently_ignored() {
    let site = crate::harness::Site::standard();
    let out = crate::harness::cairn()
        .args(["serve", "--config"])
        .arg(site.config_path())
        .env("CAIRN_LOG", "info,[[[")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("cairn: CAIRN_LOG=\"info,[[[\" is not a log filter"),
        "{stderr}"
    );
}
