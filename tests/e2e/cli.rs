//! The command line as scripts use it: every subcommand's `--json` parsed, each kind of
//! failure with its documented exit status, errors as one plain sentence, `cairn status`
//! against a running server, and the generated completions and man pages.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{Site, cairn, output_with_input, standard_config};

/// Runs `cairn args…` and returns its output.
fn cairn_out(args: &[&str]) -> Output {
    cairn().args(args).output().unwrap()
}

/// Runs `cairn --json args…`: the exit status and the parsed standard output.
fn json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = cairn().arg("--json").args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("`cairn --json {args:?}` printed no JSON ({e}): {stdout}{stderr}")
    });
    (out.status.code(), value, stderr)
}

fn site_with_http() -> Site {
    Site::new(&format!(
        "{}\n[server.http]\nlisten = \"127.0.0.1:0\"\n",
        standard_config()
    ))
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test]
async fn every_subcommand_answers_json_that_parses() {
    let site = site_with_http();
    let server = site.start();
    let admin = server.admin("default").await;
    admin
        .batch_execute("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)")
        .await
        .unwrap();
    admin
        .batch_execute("BACKUP DATABASE default TO 'first.zip'")
        .await
        .unwrap();
    let config = site.config_path();
    let data = site.data_dir();

    let (code, status, _) = json(&["status", "--config", s(&config)]);
    assert_eq!(code, Some(0), "{status}");
    assert_eq!(status["running"], true, "{status}");
    assert_eq!(status["state"], "ready", "{status}");
    assert_eq!(status["pid"], server.pid(), "{status}");
    let databases = status["server"]["databases"].as_array().unwrap();
    let default = databases.iter().find(|d| d["name"] == "default").unwrap();
    assert!(
        default["last_backup"]["bytes"].as_u64().unwrap() > 0,
        "{status}"
    );

    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("d.zip");
    let (code, backup, _) = json(&[
        "backup",
        "--data-dir",
        s(&data),
        "--database",
        "default",
        "--to",
        s(&archive),
        "--max-rate",
        "1GiB",
    ]);
    assert_eq!(code, Some(0), "{backup}");
    assert_eq!(backup["database"], "default");
    assert_eq!(backup["archive"], s(&archive));
    assert!(backup["bytes"].as_u64().unwrap() > 0);

    let (code, verified, _) = json(&["verify", s(&archive)]);
    assert_eq!(
        (code, &verified["result"]),
        (Some(0), &"ok".into()),
        "{verified}"
    );
    assert_eq!(verified["database"], "default");

    let (code, listed, _) = json(&["archives", "list", s(dir.path())]);
    assert_eq!(code, Some(0), "{listed}");
    assert_eq!(listed["problems"], 0);
    assert_eq!(listed["archives"][0]["database"], "default", "{listed}");

    let export = dir.path().join("d.json.gz");
    let (code, exported, _) = json(&[
        "export",
        "--data-dir",
        s(&data),
        "--database",
        "default",
        "--to",
        s(&export),
    ]);
    assert_eq!(
        (code, &exported["rows"]),
        (Some(0), &2.into()),
        "{exported}"
    );

    let library = crate::plugins::cdylib("hello_plugin");
    let (code, inspected, _) = json(&["plugin", "inspect", s(&library)]);
    assert_eq!(code, Some(0), "{inspected}");
    assert_eq!(inspected["name"], "hello");
    assert_eq!(inspected["compatible"], true);

    let out = output_with_input(cairn().args(["--json", "passwd"]), b"secret\n");
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        secret["scram"]
            .as_str()
            .unwrap()
            .starts_with("SCRAM-SHA-256$")
    );

    let (code, completions, _) = json(&["completions", "bash"]);
    assert_eq!(code, Some(0));
    assert!(completions["script"].as_str().unwrap().contains("_cairn"));
    let (code, man, _) = json(&["man"]);
    assert_eq!(code, Some(0));
    assert!(man["page"].as_str().unwrap().contains(".TH cairn 1"));

    // The server stopped, restore and import write into its data directory.
    drop(admin);
    let (exit, logs) = server.terminate();
    assert!(exit.success(), "{logs}");
    let (code, restored, _) = json(&[
        "restore",
        s(&archive),
        "--data-dir",
        s(&data),
        "--database",
        "copy",
    ]);
    assert_eq!(code, Some(0), "{restored}");
    assert_eq!(restored["database"], "copy");
    assert_eq!(restored["source_database"], "default");
    let (code, imported, _) = json(&[
        "import",
        s(&export),
        "--data-dir",
        s(&data),
        "--database",
        "imported",
    ]);
    assert_eq!(code, Some(0), "{imported}");
    assert_eq!(imported["tables"]["t"], 2, "{imported}");

    let (code, stopped, _) = json(&["status", "--config", s(&config)]);
    assert_eq!(code, Some(3), "{stopped}");
    assert_eq!(stopped["running"], false);
}

/// Each kind of failure has its own exit status, and says itself as one sentence on
/// standard error: `cairn: …`, not a timestamped log line (issue 17: only 0, 1 and 2 before).
#[test]
fn exit_statuses_were_only_zero_one_and_two() {
    let dir = tempfile::tempdir().unwrap();
    let sentence = |out: &Output| {
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(stderr.starts_with("cairn: "), "not a sentence: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };

    // 2: bad usage.
    let out = cairn_out(&["backup", "--database"]);
    assert_eq!(out.status.code(), Some(2));
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "[server]\nlisten = 5\n").unwrap();
    let out = cairn_out(&["status", "--config", s(&bad_config)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(sentence(&out).contains("bad.toml:2"));

    // 3: not found, with the OS's reason said once.
    let missing = dir.path().join("missing.zip");
    let out = cairn_out(&["verify", s(&missing)]);
    assert_eq!(out.status.code(), Some(3));
    let said = sentence(&out);
    assert_eq!(said.matches("No such file").count(), 1, "{said}");

    // 5: verification failed.
    let damaged = dir.path().join("damaged.zip");
    std::fs::write(&damaged, b"PK\x03\x04 not really an archive").unwrap();
    let out = cairn_out(&["verify", s(&damaged)]);
    assert_eq!(out.status.code(), Some(5));
    sentence(&out);
    let out = cairn_out(&["archives", "list", s(dir.path())]);
    assert_eq!(out.status.code(), Some(5));

    // 4: refused (the database exists and --replace is not given).
    let site = Site::standard();
    let data = site.data_dir();
    std::fs::create_dir_all(data.join("databases")).unwrap();
    let db = data.join("databases/default.sqlite");
    let made = Command::new("sqlite3")
        .arg(&db)
        .arg("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .status()
        .unwrap();
    assert!(made.success());
    let archive = dir.path().join("ok.zip");
    let out = cairn_out(&[
        "backup",
        "--data-dir",
        s(&data),
        "--database",
        "default",
        "--to",
        s(&archive),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = cairn_out(&[
        "restore",
        s(&archive),
        "--data-dir",
        s(&data),
        "--database",
        "default",
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(sentence(&out).contains("--replace"));

    // 6: I/O (an object store that does not answer).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let offsite = dir.path().join("offsite.toml");
    std::fs::write(
        &offsite,
        format!(
            "{}\n[backup.destinations.offsite]\nurl = \"s3://cairn-backups/p\"\nendpoint = \"http://127.0.0.1:{port}\"\nregion = \"us-east-1\"\naccess_key_id_env = \"HOME\"\nsecret_access_key_env = \"HOME\"\n",
            standard_config()
        ),
    )
    .unwrap();
    let out = cairn()
        .args(["backup", "--data-dir", s(&data), "--database", "default"])
        .args(["--to", "offsite:x.zip", "--config", s(&offsite)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    sentence(&out);

    // With --json, the error is one JSON object naming its kind.
    let out = cairn_out(&["--json", "verify", s(&missing)]);
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["kind"], "not_found");
    assert_eq!(error["exit_code"], 3);
}

/// `cairn status` trusts only a lock that is held, and a server that says it is ready: the
/// test holds the lock itself and writes what a server would.
#[test]
fn status_tells_a_server_not_ready_or_not_answering_from_a_ready_one() {
    let site = Site::standard();
    let data = site.data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(data.join("cairn.lock"))
        .unwrap();
    lock.lock().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let status = |lines: &str| {
        std::fs::write(data.join("cairn.lock"), lines).unwrap();
        let out = cairn_out(&["--json", "status", "--config", s(&site.config_path())]);
        let said: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (out.status.code(), said)
    };
    let (code, said) = status("4242\n1796000000\n127.0.0.1:5480\n\nstarting\n");
    assert_eq!(
        (code, &said["state"]),
        (Some(7), &"starting".into()),
        "{said}"
    );
    // A `cairn restore` holds the lock with its pid alone.
    let (code, said) = status("4242\n");
    assert_eq!((code, &said["pid"]), (Some(7), &4242.into()), "{said}");
    // Ready, but the endpoint it names does not answer.
    let (code, said) = status(&format!(
        "4242\n1796000000\n127.0.0.1:5480\n{closed}\nready\n"
    ));
    assert_eq!(code, Some(6), "{said}");
    // Ready, without an endpoint: running, with nothing more to say.
    let (code, said) = status("4242\n1796000000\n127.0.0.1:5480\n\nready\n");
    assert_eq!((code, &said["running"]), (Some(0), &true.into()), "{said}");
    drop(lock);
    let (code, said) = status("4242\n");
    assert_eq!((code, &said["running"]), (Some(3), &false.into()), "{said}");
}

#[test]
fn a_usage_error_with_json_is_one_json_object() {
    let out = cairn_out(&["--json", "backup", "--database"]);
    assert_eq!(out.status.code(), Some(2));
    let error: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["kind"], "usage");
    assert!(
        error["error"].as_str().unwrap().contains("--database"),
        "{error}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source <({} completions bash) && complete -p cairn",
            env!("CARGO_BIN_EXE_cairn")
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("cairn"),
        "{out:?}"
    );
    let out = cairn_out(&["man"]);
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH cairn 1"), "{page}");
    assert!(page.contains("Exit status"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = cairn_out(&["man", "--dir", s(dir.path())]);
    assert!(out.status.success(), "{out:?}");
    for page in [
        "cairn.1",
        "cairn-backup.1",
        "cairn-status.1",
        "cairn-restore.1",
    ] {
        assert!(dir.path().join(page).exists(), "{page} not written");
    }
}
