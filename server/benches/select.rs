//! The large-result benchmark: a 1,000,000-row `SELECT * FROM t` (`id INTEGER PRIMARY KEY,
//! k INTEGER, pad TEXT`, as in pgbench-style tables) through the real `cairn` binary, with
//! psql (simple protocol) and tokio-postgres (extended protocol, rows read as a stream), and
//! the same through PostgreSQL 15 when its binaries are installed. Prints rows per second and
//! the server's peak memory over idle for each; it asserts nothing about speed.
//!
//! `CAIRN_BENCH_ROWS` changes the row count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, pin_mut};

#[path = "common/cairn.rs"]
mod cairn;
use cairn::{Cairn, psql};

const PASSWORD: &str = "bench-pw";

fn main() {
    let rows: u64 = std::env::var("CAIRN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    println!(
        "{rows}-row SELECT * FROM t (id INTEGER PRIMARY KEY, k INTEGER, pad TEXT of 60 bytes)"
    );
    println!(
        "{:<34} {:>12} {:>14}",
        "server, client", "rows/s", "peak MiB over idle"
    );

    let cairn = Cairn::start(scratch.path(), PASSWORD, "");
    let url = format!(
        "host=127.0.0.1 port={} user=admin password={PASSWORD} dbname=default",
        cairn.port
    );
    psql(
        &url,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) INSERT INTO t SELECT n, n * 7 % 1000, printf('%-60s', 'row ' || n) FROM c"
        ),
    );
    let measure = |client: &str, run: &dyn Fn()| {
        let idle = resident_mib(cairn.pid());
        clear_peak(cairn.pid());
        let started = Instant::now();
        run();
        let took = started.elapsed();
        let peak = peak_mib(cairn.pid());
        print_row(&format!("Cairn, {client}"), rows, took, peak - idle);
    };
    measure("psql", &|| psql_select(&url));
    measure("tokio-postgres stream", &|| {
        runtime.block_on(stream_select(&url, rows))
    });
    drop(cairn);

    match Postgres::start(scratch.path()) {
        Some(pg) => {
            let url = format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                pg.port
            );
            psql(
                &url,
                &format!(
                    "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT); INSERT INTO t SELECT n, n * 7 % 1000, rpad('row ' || n, 60) FROM generate_series(1, {rows}) AS n"
                ),
            );
            let measure = |client: &str, run: &dyn Fn()| {
                let sampler = RssSampler::start("postgres");
                let started = Instant::now();
                run();
                let took = started.elapsed();
                let (idle, peak) = sampler.stop();
                print_row(&format!("PostgreSQL 15, {client}"), rows, took, peak - idle);
            };
            measure("psql", &|| psql_select(&url));
            measure("tokio-postgres stream", &|| {
                runtime.block_on(stream_select(&url, rows))
            });
            println!(
                "(Cairn: peak resident size over idle, exact; PostgreSQL: the largest backend's private memory over idle, sampled every 10 ms)"
            );
        }
        None => println!("PostgreSQL 15 not found (initdb, pg_ctl): its rows are not printed"),
    }
}

fn print_row(what: &str, rows: u64, took: Duration, over_idle_mib: f64) {
    println!(
        "{what:<34} {:>12.0} {:>14.1}",
        rows as f64 / took.as_secs_f64(),
        over_idle_mib.max(0.0)
    );
}

fn psql_select(url: &str) {
    psql(url, "SELECT * FROM t");
}

async fn stream_select(url: &str, rows: u64) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let stream = client
        .query_raw("SELECT * FROM t", std::iter::empty::<i64>())
        .await
        .unwrap();
    pin_mut!(stream);
    let mut seen = 0;
    while let Some(row) = stream.next().await {
        row.unwrap();
        seen += 1;
    }
    assert_eq!(seen, rows);
}

fn status_field_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn resident_mib(pid: u32) -> f64 {
    status_field_mib(pid, "VmRSS:")
}

/// Resets the process's peak resident size (VmHWM) to its current one.
fn clear_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
}

fn peak_mib(pid: u32) -> f64 {
    status_field_mib(pid, "VmHWM:")
}

/// A throwaway PostgreSQL cluster, run as the `postgres` user when we are root.
struct Postgres {
    dir: PathBuf,
    port: u16,
}

impl Postgres {
    fn start(scratch: &Path) -> Option<Postgres> {
        let bin = ["/usr/lib/postgresql/15/bin", "/usr/local/bin", "/usr/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())?;
        let dir = scratch.join("postgres");
        std::fs::create_dir_all(&dir).ok()?;
        let as_root = rustix::process::geteuid().is_root();
        if as_root {
            Command::new("chown")
                .args(["-R", "postgres"])
                .arg(scratch)
                .status()
                .ok()?;
        }
        let port = free_port();
        let run = |program: &str, args: &[&str]| {
            let mut command = if as_root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(bin.join(program));
                c
            } else {
                Command::new(bin.join(program))
            };
            command
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .ok()
                .filter(|s| s.success())
        };
        let data = dir.join("data");
        let data = data.to_str()?;
        run("initdb", &["-D", data, "-A", "trust", "-U", "postgres"])?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1",
            dir.display()
        );
        run("pg_ctl", &["-D", data, "-o", &options, "-w", "start"])?;
        Some(Postgres {
            dir: dir.clone(),
            port,
        })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let mut command = if rustix::process::geteuid().is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", "pg_ctl"]);
            c
        } else {
            Command::new("pg_ctl")
        };
        let _ = command
            .arg("-D")
            .arg(data)
            .args(["-m", "fast", "stop"])
            .stdout(Stdio::null())
            .status();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Samples the resident memory of every process named `name` until stopped: the first
/// sample's largest is "idle", the largest seen is the peak.
struct RssSampler {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<(f64, f64)>,
}

impl RssSampler {
    fn start(name: &'static str) -> RssSampler {
        let (stop, stopped) = std::sync::mpsc::channel();
        let largest = move || {
            std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    std::fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|c| c.trim() == name)
                })
                // Private memory: a backend's resident size also counts the shared buffers
                // it touched, which are the cluster's, not the query's.
                .map(|pid| status_field_mib(pid, "RssAnon:"))
                .fold(0.0, f64::max)
        };
        let thread = std::thread::spawn(move || {
            let idle = largest();
            let mut peak = idle;
            while stopped.recv_timeout(Duration::from_millis(10)).is_err() {
                peak = peak.max(largest());
            }
            (idle, peak)
        });
        RssSampler { stop, thread }
    }

    fn stop(self) -> (f64, f64) {
        let _ = self.stop.send(());
        self.thread.join().unwrap()
    }
}
