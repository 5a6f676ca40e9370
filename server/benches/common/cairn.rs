//! The real `cairn` binary for a benchmark: a throwaway data directory, an admin with a
//! password, a free port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub struct Cairn {
    child: Child,
    pub port: u16,
}

impl Cairn {
    /// Starts a server in `scratch/cairn`, with `extra` appended to its config (its plugin
    /// directory is `scratch/cairn/plugins`).
    pub fn start(scratch: &Path, password: &str, extra: &str) -> Cairn {
        let dir = scratch.join("cairn");
        std::fs::create_dir_all(dir.join("plugins")).unwrap();
        let config = dir.join("cairn.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\nplugin_dir = \"plugins\"\n\n[users.admin]\nrole = \"admin\"\npassword_env = \"CAIRN_BENCH_PASSWORD\"\n{extra}"
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("CAIRN_BENCH_PASSWORD", password)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("cairn exited before listening")
                .unwrap();
            if let Some(at) = line.find("listening on 127.0.0.1:") {
                let rest = &line[at + "listening on 127.0.0.1:".len()..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break digits.parse().unwrap();
            }
        };
        // Keep draining its log so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Cairn { child, port }
    }

    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Runs `sql` through psql on `url` (output discarded), failing on any error; its time.
pub fn psql(url: &str, sql: &str) -> std::time::Duration {
    let started = std::time::Instant::now();
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "psql failed: {sql}");
    started.elapsed()
}

impl Drop for Cairn {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}
