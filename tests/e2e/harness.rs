//! Starts and stops the real `cairn` binary for a test.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const ADMIN_PASSWORD: &str = "admin-pw";
pub const READER_PASSWORD: &str = "reader-pw";
pub const WRITER_PASSWORD: &str = "writer-pw";
/// How long a server may take to start or stop before the test fails (generous: CI machines
/// are slow, and this bounds a hang rather than measuring speed).
const PATIENCE: Duration = Duration::from_secs(60);

pub fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

/// Runs `command` with `input` on its standard input; returns its output.
pub fn output_with_input(command: &mut Command, input: &[u8]) -> std::process::Output {
    try_output_with_input(command, input).unwrap()
}

/// Runs `command` with `input` on its standard input; its output, or why it did not start.
pub fn try_output_with_input(
    command: &mut Command,
    input: &[u8],
) -> std::io::Result<std::process::Output> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input)?;
    }
    child.wait_with_output()
}

/// A SCRAM secret printed by `cairn passwd`.
pub fn scram_secret(password: &str) -> String {
    let out = output_with_input(cairn().arg("passwd"), password.as_bytes());
    assert!(
        out.status.success(),
        "cairn passwd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A config with an admin, a readonly user (both from environment variables) and a readwrite
/// user given as a SCRAM secret.
pub fn standard_config() -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
data_dir = "data"
shutdown_grace_ms = 5000

[users.admin]
role = "admin"
password_env = "CAIRN_TEST_ADMIN_PASSWORD"

[users.reader]
role = "readonly"
password_env = "CAIRN_TEST_READER_PASSWORD"

[users.writer]
role = "readwrite"
scram = "{}"
"#,
        scram_secret(WRITER_PASSWORD)
    )
}

/// Runs `cairn serve --config <config>` until it exits (for configs or data directories it
/// must refuse) and returns its exit status and standard error.
pub fn serve_until_exit(config: &Path) -> (ExitStatus, String) {
    let out = cairn()
        .args(["serve", "--config"])
        .arg(config)
        .env("CAIRN_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("CAIRN_TEST_READER_PASSWORD", READER_PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory holding a config file (and, once started, the data directory beside it).
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new(config: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cairn.toml"), config).unwrap();
        Site { dir }
    }

    pub fn standard() -> Site {
        Site::new(&standard_config())
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("cairn.toml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn start(&self) -> TestServer {
        TestServer::start(&self.config_path(), &[])
    }
}

/// A running `cairn serve`.
pub struct TestServer {
    child: Option<Child>,
    pub port: u16,
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts the binary and waits until it logs the address it listens on.
    pub fn start(config: &Path, extra_args: &[&str]) -> TestServer {
        Self::start_with_log_level(config, extra_args, "info")
    }

    /// Starts the binary with `CAIRN_LOG` set to `level`.
    pub fn start_with_log_level(config: &Path, extra_args: &[&str], level: &str) -> TestServer {
        let mut command = cairn();
        command.args(extra_args);
        Self::start_command(command, config, level)
    }

    /// Starts the binary with extra environment variables.
    pub fn start_with_env(config: &Path, extra_args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut command = cairn();
        command.args(extra_args).envs(env.iter().copied());
        Self::start_command(command, config, "info")
    }

    /// Starts the binary with at most `limit` open file descriptors (`ulimit -n`).
    pub fn start_with_fd_limit(config: &Path, limit: u32) -> TestServer {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_cairn"));
        Self::start_command(command, config, "info")
    }

    fn start_command(mut command: Command, config: &Path, level: &str) -> TestServer {
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("CAIRN_TEST_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("CAIRN_TEST_READER_PASSWORD", READER_PASSWORD)
            .env("CAIRN_LOG", level)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::channel();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = port_tx.send(port);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let port = match port_rx.recv_timeout(PATIENCE) {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "server did not start; its log:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        TestServer {
            child: Some(child),
            port,
            logs,
        }
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Waits until a log line contains `needle` (bounded by the test's patience).
    pub fn wait_for_log(&self, needle: &str) {
        self.wait_for_logs(needle, 1);
    }

    /// Waits until `count` log lines contain `needle`.
    pub fn wait_for_logs(&self, needle: &str, count: usize) {
        let deadline = std::time::Instant::now() + PATIENCE;
        while self.logs().matches(needle).count() < count {
            assert!(
                std::time::Instant::now() < deadline,
                "fewer than {count} log lines with {needle:?}:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn url(&self, user: &str, password: &str, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={database}",
            self.port
        )
    }

    pub async fn connect(
        &self,
        user: &str,
        password: &str,
        database: &str,
    ) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url(user, password, database), NoTls).await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    pub async fn admin(&self, database: &str) -> Client {
        self.connect("admin", ADMIN_PASSWORD, database)
            .await
            .unwrap()
    }

    /// Fails unless a fresh connection can still log in and run a query.
    pub async fn assert_still_serving(&self) {
        let client = self.admin("default").await;
        client.simple_query("SELECT 1").await.unwrap();
    }

    /// Waits for the process to exit by itself (a crash, say).
    pub fn wait_for_exit(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let status = wait_with_patience(&mut child);
        (status, self.logs())
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub fn terminate(self) -> (ExitStatus, String) {
        self.stop("TERM")
    }

    /// Sends `signal` (TERM, INT, …) and waits for the process to exit.
    pub fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let status = wait_with_patience(&mut child);
        (status, self.logs())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn wait_with_patience(child: &mut Child) -> ExitStatus {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process did not exit within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split("listening on ").nth(1)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.rsplit(':').next()?.parse().ok()
}

/// Runs `sql`, which must fail with a message containing `expected`; returns the error so the
/// caller can check its SQLSTATE.
pub async fn refused(client: &Client, sql: &str, expected: &str) -> tokio_postgres::Error {
    let err = client
        .simple_query(sql)
        .await
        .expect_err(&format!("{sql} should have been refused"));
    assert!(
        message(&err).contains(expected),
        "{sql}: expected a message containing {expected:?}, got {:?}",
        message(&err)
    );
    err
}

/// The server's message for a database error (tokio-postgres's Display says only "db error").
pub fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| err.to_string())
}

/// Names in `dir` that start like our temporary files.
pub fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(".cairn-tmp-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Waits until job `id` has reported progress in `backups()` (the history is updated about
/// once a second), by which time its temporary files exist.
pub async fn wait_for_progress(client: &Client, id: &str) {
    let deadline = std::time::Instant::now() + PATIENCE;
    let sql = format!("SELECT progress_percent > 0 FROM backups() WHERE id = {id}");
    loop {
        let rows = client.simple_query(&sql).await.unwrap();
        let started = rows.iter().any(|m| {
            matches!(m, tokio_postgres::SimpleQueryMessage::Row(row) if row.get(0) == Some("1"))
        });
        if started {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} never made progress"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The backup directory of a site with the standard config.
pub fn backups_dir(site: &Site) -> PathBuf {
    site.dir.path().join("backups")
}

/// The values of the first column of every row.
pub async fn column(client: &Client, sql: &str) -> Vec<String> {
    texts(client, sql)
        .await
        .into_iter()
        .map(|row| row.into_iter().next().unwrap_or_default())
        .collect()
}

/// Every row of a simple query, each column as text (NULL as "").
pub async fn texts(client: &Client, sql: &str) -> Vec<Vec<String>> {
    client
        .simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("").to_owned())
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// Runs a command to its end: whether it succeeded, and its standard output and error.
pub fn run(command: &mut Command) -> (bool, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}
