//! The backup benchmark. Builds a database of realistic, compressible rows (1 GiB by default;
//! `CAIRN_BENCH_MB` changes it) and prints, in one run:
//! - backup throughput for Cairn at levels 1, 6 and 9 next to `sqlite3 .backup` + `zip -N`;
//! - restore throughput next to `unzip`;
//! - Cairn's peak memory during a level-6 backup;
//! - a writer's max gap between commits and p99 commit latency with no backup, during a Cairn
//!   backup, and during an OrientDB-style backup (a lock held for the whole copy and zip);
//! - export and import throughput next to `sqlite3 .dump | gzip -6` and its restore
//!   (`zcat | sqlite3`), and the peak memory of each at two database sizes.
//!
//! - backup and restore throughput to and from a local S3-compatible server (`moto_server`,
//!   when installed) next to the local directory and next to `aws s3 cp` / `rclone copy` of
//!   the same archive (where installed), with peak memory during the upload.
//!
//! - continuous archiving next to Litestream (`continuous.rs`).
//!
//! - the cost of encryption: a level-6 backup and its restore, plain and encrypted
//!   (WinZip AES-256), next to `sqlite3 .backup` + `7z -p` where 7-Zip is installed.
//!
//! `CAIRN_BENCH_ONLY=stall`, `=export`, `=destination`, `=incremental`, `=continuous` or
//! `=encryption` runs only that section.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_server::backup::BackupOptions;
use cairn_server::backup::offline;
use cairn_server::backup::progress::Progress;
use rusqlite::{Connection, params};

#[path = "backup/continuous.rs"]
mod continuous;

const WORDS: &[&str] = &[
    "alpha",
    "harbor",
    "granite",
    "willow",
    "copper",
    "meadow",
    "falcon",
    "cinder",
    "lantern",
    "orchid",
    "summit",
    "timber",
    "velvet",
    "quartz",
    "ember",
    "glacier",
    "hollow",
    "juniper",
    "kestrel",
    "marble",
    "nectar",
    "oyster",
    "pepper",
    "raven",
    "saffron",
    "thistle",
    "umber",
    "violet",
    "walnut",
    "yarrow",
    "zephyr",
    "delivery",
    "invoice",
    "refund",
    "express",
    "standard",
    "priority",
    "warehouse",
    "returned",
    "pending",
    "shipped",
    "customer",
    "requested",
    "gift",
    "wrapping",
    "fragile",
    "morning",
    "evening",
    "weekend",
    "backorder",
];
const CITIES: &[&str] = &[
    "Lisbon", "Porto", "Madrid", "Lyon", "Berlin", "Hamburg", "Vienna", "Prague", "Warsaw", "Oslo",
    "Dublin", "Leeds", "Turin", "Ghent", "Basel", "Aarhus",
];
const STATUSES: &[&str] = &[
    "new",
    "paid",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[(self.next() % list.len() as u64) as usize]
    }
}

fn build(path: &Path, megabytes: u64) -> u64 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "OFF").unwrap();
    conn.execute_batch(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, email TEXT, city TEXT,
             status TEXT, amount REAL, created_at TEXT, note TEXT);
         CREATE TABLE ticks(id INTEGER PRIMARY KEY, at INTEGER);",
    )
    .unwrap();
    let target = megabytes << 20;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut id = 0i64;
    loop {
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut insert = conn
                .prepare_cached("INSERT INTO orders VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                .unwrap();
            for _ in 0..100_000 {
                id += 1;
                let first = rng.pick(WORDS);
                let last = rng.pick(WORDS);
                let words = 3 + rng.next() % 10;
                let note: Vec<&str> = (0..words).map(|_| rng.pick(WORDS)).collect();
                let day = rng.next() % 1500;
                insert
                    .execute(params![
                        id,
                        format!("{first} {last}"),
                        format!("{first}.{last}{}@example.com", rng.next() % 1000),
                        rng.pick(CITIES),
                        rng.pick(STATUSES),
                        (rng.next() % 100_000) as f64 / 100.0,
                        format!(
                            "2022-{:02}-{:02}T{:02}:{:02}:00Z",
                            1 + day % 12,
                            1 + day % 28,
                            rng.next() % 24,
                            rng.next() % 60
                        ),
                        note.join(" "),
                    ])
                    .unwrap();
            }
        }
        conn.execute_batch("COMMIT").unwrap();
        let size: i64 = conn
            .query_row(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if size as u64 >= target {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                .unwrap();
            return size as u64;
        }
    }
}

fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Peak resident memory of this process since the last reset (Linux).
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_memory_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn cairn_backup(data_dir: &Path, to: &Path, level: u32) -> Duration {
    let _ = std::fs::remove_file(to);
    let mut options = BackupOptions::default();
    options.set_level(i64::from(level)).unwrap();
    let started = Instant::now();
    let to = to.to_str().unwrap();
    offline::backup(data_dir, "bench", to, None, &options, &Progress::default()).unwrap();
    started.elapsed()
}

fn run(command: &mut Command) {
    let status = command.status().unwrap();
    assert!(status.success(), "{command:?} failed");
}

fn sqlite3_and_zip(db: &Path, scratch: &Path, level: u32) -> (Duration, u64) {
    let copy = scratch.join("copy.sqlite");
    let zip = scratch.join(format!("zip{level}.zip"));
    let _ = std::fs::remove_file(&copy);
    let _ = std::fs::remove_file(&zip);
    let started = Instant::now();
    run(Command::new("sqlite3")
        .arg(db)
        .arg(format!(".backup '{}'", copy.display())));
    run(Command::new("zip")
        .arg(format!("-{level}"))
        .args(["-q", "-j"])
        .arg(&zip)
        .arg(&copy));
    let took = started.elapsed();
    let _ = std::fs::remove_file(&copy);
    (took, file_size(&zip))
}

#[derive(Debug)]
struct WriterStats {
    commits: usize,
    max_gap: Duration,
    p99: Duration,
}

/// Runs `during` while a writer commits one small transaction after another.
fn with_writer(db: &Path, during: impl FnOnce()) -> WriterStats {
    // Start from a clean page cache: no earlier phase's writeback in this one's figures.
    run(&mut Command::new("sync"));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = Arc::clone(&stop);
        let db = db.to_owned();
        std::thread::spawn(move || {
            let conn = Connection::open(&db).unwrap();
            conn.busy_timeout(Duration::from_secs(600)).unwrap();
            conn.pragma_update(None, "synchronous", "FULL").unwrap();
            let mut latencies = Vec::new();
            let mut last = Instant::now();
            let mut max_gap = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                conn.execute(
                    "INSERT INTO ticks(at) VALUES (?1)",
                    [latencies.len() as i64],
                )
                .unwrap();
                let now = Instant::now();
                latencies.push(now - started);
                max_gap = max_gap.max(now - last);
                last = now;
            }
            latencies.sort();
            let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
            WriterStats {
                commits: latencies.len(),
                max_gap,
                p99,
            }
        })
    };
    // Let the writer settle before measuring.
    std::thread::sleep(Duration::from_millis(300));
    during();
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap()
}

/// OrientDB's way: take the database lock, copy and zip serially, then release. The lock is
/// SQLite's write lock, held by one connection while another reads the copy.
fn locked_backup(db: &Path, to: &Path) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    let copy = to.with_extension("copy");
    {
        let reader = Connection::open(db).unwrap();
        let mut dest = Connection::open(&copy).unwrap();
        let backup = rusqlite::backup::Backup::new(&reader, &mut dest).unwrap();
        let step = backup.step(-1).unwrap();
        assert_eq!(step, rusqlite::backup::StepResult::Done);
    }
    let file = std::fs::File::create(to).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file(
        "database.sqlite",
        zip::write::SimpleFileOptions::default().compression_level(Some(6)),
    )
    .unwrap();
    std::io::copy(&mut std::fs::File::open(&copy).unwrap(), &mut zip).unwrap();
    zip.finish().unwrap().sync_all().unwrap();
    conn.execute_batch("COMMIT").unwrap();
    let _ = std::fs::remove_file(copy);
}

fn main() {
    let megabytes: u64 = std::env::var("CAIRN_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let root = tempfile::Builder::new()
        .prefix("cairn-bench-")
        .tempdir_in(
            std::env::var_os("CAIRN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from),
        )
        .unwrap();
    let data_dir = root.path().join("data");
    let scratch = root.path().join("scratch");
    std::fs::create_dir_all(data_dir.join("databases")).unwrap();
    std::fs::create_dir_all(&scratch).unwrap();
    let db = data_dir.join("databases/bench.sqlite");

    let started = Instant::now();
    let size = build(&db, megabytes);
    println!(
        "# Cairn backup benchmark\n\ndatabase: {:.0} MB of orders rows, built in {:.1} s; {} cores\n",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let only = std::env::var("CAIRN_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() {
        throughput(&data_dir, &db, &scratch, root.path(), size);
    }
    if only.is_empty() || only == "stall" {
        stalls(&data_dir, &db, &scratch);
    }
    if only.is_empty() || only == "export" {
        exports(&data_dir, &db, &scratch, root.path(), size, megabytes);
    }
    if only.is_empty() || only == "destination" {
        destinations(&data_dir, &scratch, root.path(), size);
    }
    if only.is_empty() || only == "incremental" {
        increments(&data_dir, &db, &scratch, root.path());
    }
    if only.is_empty() || only == "continuous" {
        continuous::versus_litestream(&db, root.path());
    }
    if only.is_empty() || only == "encryption" {
        encryption(&data_dir, &db, &scratch, root.path(), size);
    }
    std::io::stdout().flush().unwrap();
}

fn throughput(data_dir: &Path, db: &Path, scratch: &Path, root: &Path, size: u64) {
    let (data_dir, db, scratch) = (data_dir.to_owned(), db.to_owned(), scratch.to_owned());
    println!("## Backup throughput (MB of database per second)\n");
    println!(
        "| level | Cairn MB/s | Cairn archive MB | sqlite3 .backup + zip MB/s | zip archive MB | speed-up |"
    );
    println!("|---|---|---|---|---|---|");
    for level in [1, 6, 9] {
        let archive = scratch.join(format!("cairn{level}.zip"));
        let ours = cairn_backup(&data_dir, &archive, level);
        let (theirs, zip_size) = sqlite3_and_zip(&db, &scratch, level);
        println!(
            "| {level} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}× |",
            mb_per_s(size, ours),
            file_size(&archive) as f64 / 1e6,
            mb_per_s(size, theirs),
            zip_size as f64 / 1e6,
            theirs.as_secs_f64() / ours.as_secs_f64()
        );
        let _ = std::fs::remove_file(scratch.join(format!("zip{level}.zip")));
        if level != 6 {
            let _ = std::fs::remove_file(&archive);
        }
    }

    println!("\n## Peak memory (level 6)\n");
    let archive = scratch.join("memory.zip");
    reset_peak_memory();
    cairn_backup(&data_dir, &archive, 6);
    println!(
        "peak resident memory of the whole benchmark process during the backup: {:.1} MiB\n",
        peak_memory_mib()
    );
    let _ = std::fs::remove_file(&archive);

    println!("## Restore throughput (MB of database per second)\n");
    let archive = scratch.join("cairn6.zip");
    let restore_dir = root.join("restore");
    let started = Instant::now();
    offline::restore(
        &restore_dir,
        archive.to_str().unwrap(),
        None,
        "restored",
        false,
        offline::DataDir::CreateIfMissing,
        &Progress::default(),
    )
    .unwrap();
    let ours = started.elapsed();
    let unzip_dir = scratch.join("unzipped");
    let started = Instant::now();
    run(Command::new("unzip")
        .arg("-q")
        .arg(&archive)
        .arg("-d")
        .arg(&unzip_dir));
    run(Command::new("sync").arg(unzip_dir.join("database.sqlite")));
    let theirs = started.elapsed();
    println!("| Cairn restore (verify, fsync, integrity check) | unzip + sync |\n|---|---|");
    println!(
        "| {:.1} | {:.1} |\n",
        mb_per_s(size, ours),
        mb_per_s(size, theirs)
    );
    let _ = std::fs::remove_dir_all(&restore_dir);
    let _ = std::fs::remove_dir_all(&unzip_dir);
}

/// A level-6 backup and its restore, plain and encrypted, best of three each.
fn encryption(data_dir: &Path, db: &Path, scratch: &Path, root: &Path, size: u64) {
    use cairn_server::backup::encryption::{Key, Keyring};
    println!("## The cost of encryption (level 6, best of 3)\n");
    let passphrase = "a long random passphrase for the benchmark, 44 bytes";
    let keys = Keyring::of([Key::new("bench", passphrase.as_bytes())]);
    let config = root.join("keys.toml");
    let mut rows = Vec::new();
    for encrypted in [false, true] {
        let archive = scratch.join(format!("encrypted-{encrypted}.zip"));
        let mut options = BackupOptions::default();
        if encrypted {
            options.key_name = Some("bench".into());
            options.resolve_key(&keys).unwrap();
        }
        let mut backup = Duration::MAX;
        for _ in 0..3 {
            let _ = std::fs::remove_file(&archive);
            let started = Instant::now();
            offline::backup(
                data_dir,
                "bench",
                archive.to_str().unwrap(),
                None,
                &options,
                &Progress::default(),
            )
            .unwrap();
            backup = backup.min(started.elapsed());
        }
        // The CLI's way of finding the key: a server config naming it.
        std::fs::write(root.join("bench.key"), passphrase).unwrap();
        std::fs::write(
            &config,
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[backup.keys.bench]\nkey_file = \"bench.key\"\n",
        )
        .unwrap();
        let stores = offline::Stores::open(&cairn_server::Config::load(&config).unwrap()).unwrap();
        let mut restore = Duration::MAX;
        for _ in 0..3 {
            let restore_dir = root.join("restore-encrypted");
            let _ = std::fs::remove_dir_all(&restore_dir);
            let started = Instant::now();
            offline::restore(
                &restore_dir,
                archive.to_str().unwrap(),
                Some(&stores),
                "restored",
                false,
                offline::DataDir::CreateIfMissing,
                &Progress::default(),
            )
            .unwrap();
            restore = restore.min(started.elapsed());
            let _ = std::fs::remove_dir_all(&restore_dir);
        }
        rows.push((encrypted, backup, restore, file_size(&archive)));
        let _ = std::fs::remove_file(&archive);
    }
    let seven = available("7z").then(|| {
        let copy = scratch.join("seven.sqlite");
        let archive = scratch.join("seven.zip");
        let _ = std::fs::remove_file(&archive);
        let started = Instant::now();
        run(Command::new("sqlite3")
            .arg(db)
            .arg(format!(".backup '{}'", copy.display())));
        run(Command::new("7z")
            .args(["a", "-tzip", "-mem=AES256", "-mx=5", "-bd", "-bso0"])
            .arg(format!("-p{passphrase}"))
            .arg(&archive)
            .arg(&copy));
        let took = started.elapsed();
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(&archive);
        took
    });
    println!("| archive | backup MB/s | restore MB/s | archive MB |\n|---|---|---|---|");
    for (encrypted, backup, restore, bytes) in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            if *encrypted {
                "AES-256 (key `bench`)"
            } else {
                "plain"
            },
            mb_per_s(size, *backup),
            mb_per_s(size, *restore),
            *bytes as f64 / 1e6
        );
    }
    if let [
        (_, plain_backup, plain_restore, _),
        (_, sealed_backup, sealed_restore, _),
    ] = rows[..]
    {
        println!(
            "\nencryption costs {:+.1} % of the backup's time and {:+.1} % of the restore's",
            (sealed_backup.as_secs_f64() / plain_backup.as_secs_f64() - 1.0) * 100.0,
            (sealed_restore.as_secs_f64() / plain_restore.as_secs_f64() - 1.0) * 100.0
        );
    }
    match seven {
        Some(took) => println!(
            "sqlite3 .backup + 7z -tzip -mem=AES256 -mx=5: {:.1} MB/s\n",
            mb_per_s(size, took)
        ),
        None => println!("7z not installed (p7zip-full): no peer figure\n"),
    }
}

/// Exports `data_dir`'s bench database to `to`; the time and the peak memory.
fn cairn_export(data_dir: &Path, to: &Path) -> (Duration, f64) {
    let _ = std::fs::remove_file(to);
    reset_peak_memory();
    let started = Instant::now();
    offline::export(
        data_dir,
        "bench",
        to,
        &BackupOptions::default(),
        &Progress::default(),
    )
    .unwrap();
    (started.elapsed(), peak_memory_mib())
}

/// Imports `file` into a fresh data directory; the time and the peak memory.
fn cairn_import(file: &Path, data_dir: &Path) -> (Duration, f64) {
    let _ = std::fs::remove_dir_all(data_dir);
    reset_peak_memory();
    let started = Instant::now();
    offline::import(
        data_dir,
        file,
        Some("imported"),
        false,
        offline::DataDir::CreateIfMissing,
        &Progress::default(),
    )
    .unwrap();
    (started.elapsed(), peak_memory_mib())
}

/// How long a shell pipeline takes (it must succeed).
fn timed_shell(command: &str) -> Duration {
    let started = Instant::now();
    run(Command::new("bash")
        .arg("-c")
        .arg(format!("set -o pipefail; {command}")));
    started.elapsed()
}

fn exports(data_dir: &Path, db: &Path, scratch: &Path, root: &Path, size: u64, megabytes: u64) {
    println!("## Export and import (MB of database per second)\n");
    let export = scratch.join("bench.json.gz");
    let (ours, export_peak) = cairn_export(data_dir, &export);
    let dump = scratch.join("bench.sql.gz");
    let theirs = timed_shell(&format!(
        "sqlite3 '{}' .dump | gzip -6 > '{}'",
        db.display(),
        dump.display()
    ));
    println!("| | Cairn EXPORT (level 6) | sqlite3 .dump \\| gzip -6 |\n|---|---|---|");
    println!(
        "| export MB/s | {:.1} | {:.1} |",
        mb_per_s(size, ours),
        mb_per_s(size, theirs)
    );
    println!(
        "| file MB | {:.1} | {:.1} |",
        file_size(&export) as f64 / 1e6,
        file_size(&dump) as f64 / 1e6
    );
    let import_dir = root.join("import");
    let (ours_in, import_peak) = cairn_import(&export, &import_dir);
    let restored = scratch.join("restored.sqlite");
    let theirs_in = timed_shell(&format!(
        "zcat '{}' | sqlite3 '{}' && sync '{}'",
        dump.display(),
        restored.display(),
        restored.display()
    ));
    println!(
        "| import MB/s | {:.1} | {:.1} |",
        mb_per_s(size, ours_in),
        mb_per_s(size, theirs_in)
    );
    println!(
        "| export speed-up | {:.2}× | |",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "| import speed-up | {:.2}× | |\n",
        theirs_in.as_secs_f64() / ours_in.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&import_dir);
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&restored);

    // The same at a quarter of the size: bounded memory does not grow with the database.
    let small_dir = root.join("small");
    std::fs::create_dir_all(small_dir.join("databases")).unwrap();
    let small_size = build(&small_dir.join("databases/bench.sqlite"), megabytes / 4);
    let small_export = scratch.join("small.json.gz");
    let (_, small_export_peak) = cairn_export(&small_dir, &small_export);
    let (_, small_import_peak) = cairn_import(&small_export, &root.join("small-import"));
    println!("### Peak resident memory of the whole benchmark process\n");
    println!("| database | export | import |\n|---|---|---|");
    println!(
        "| {:.0} MB | {small_export_peak:.1} MiB | {small_import_peak:.1} MiB |",
        small_size as f64 / 1e6
    );
    println!(
        "| {:.0} MB | {export_peak:.1} MiB | {import_peak:.1} MiB |\n",
        size as f64 / 1e6
    );
    let _ = std::fs::remove_dir_all(&small_dir);
    let _ = std::fs::remove_dir_all(root.join("small-import"));
    let _ = std::fs::remove_file(&small_export);
    let _ = std::fs::remove_file(&export);
}

fn stalls(data_dir: &Path, db: &Path, scratch: &Path) {
    println!("## A writer committing small transactions (synchronous = FULL)\n");
    println!("| while | commits | max gap between commits | p99 commit latency |");
    println!("|---|---|---|---|");
    let show = |label: &str, stats: WriterStats| {
        println!(
            "| {label} | {} | {:.1} ms | {:.2} ms |",
            stats.commits,
            stats.max_gap.as_secs_f64() * 1e3,
            stats.p99.as_secs_f64() * 1e3
        );
    };
    show(
        "no backup (5 s)",
        with_writer(db, || std::thread::sleep(Duration::from_secs(5))),
    );
    let archive = scratch.join("stall.zip");
    show(
        "Cairn backup, level 6",
        with_writer(db, || {
            cairn_backup(data_dir, &archive, 6);
        }),
    );
    let locked = scratch.join("locked.zip");
    show(
        "OrientDB-style locked backup, level 6",
        with_writer(db, || locked_backup(db, &locked)),
    );
    std::io::stdout().flush().unwrap();
}

fn available(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Backup and restore through an S3-compatible server on this machine, next to the local
/// directory and to other tools uploading the same archive.
fn destinations(data_dir: &Path, scratch: &Path, root: &Path, size: u64) {
    println!("## Destinations (S3-compatible server on this machine)\n");
    if !available("moto_server") {
        println!("moto_server is not installed (pip install 'moto[server]' boto3); skipped\n");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut moto = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let endpoint = format!("http://127.0.0.1:{port}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/clients/s3.py");
    run(Command::new("python3").args([script, &endpoint, "mkbucket", "bench"]));
    // Keys from files: the benchmark's environment stays as it is.
    let keys = root.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("id"), "testing").unwrap();
    std::fs::write(keys.join("secret"), "testing").unwrap();
    let config_path = root.join("cairn.toml");
    std::fs::write(
        &config_path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\ndata_dir = \"data\"\n[backup]\ndirectory = \"scratch\"\n[backup.destinations.bench]\nurl = \"s3://bench/cairn\"\nendpoint = \"{endpoint}\"\naccess_key_id_file = \"keys/id\"\nsecret_access_key_file = \"keys/secret\"\n"
        ),
    )
    .unwrap();
    let config = cairn_server::Config::load(&config_path).unwrap();
    let stores = offline::Stores::open(&config).unwrap();
    let mut options = BackupOptions::default();
    options.set_level(6).unwrap();

    let local = scratch.join("dest-local.zip");
    let _ = std::fs::remove_file(&local);
    let started = Instant::now();
    offline::backup(
        data_dir,
        "bench",
        local.to_str().unwrap(),
        None,
        &options,
        &Progress::default(),
    )
    .unwrap();
    let local_took = started.elapsed();
    let archive_bytes = file_size(&local);

    reset_peak_memory();
    let started = Instant::now();
    offline::backup(
        data_dir,
        "bench",
        "bench:bench.zip",
        Some(&stores),
        &options,
        &Progress::default(),
    )
    .unwrap();
    let s3_took = started.elapsed();
    let s3_peak = peak_memory_mib();

    let restore_root = root.join("dest-restore");
    let started = Instant::now();
    offline::restore(
        &restore_root,
        local.to_str().unwrap(),
        None,
        "from_local",
        false,
        offline::DataDir::CreateIfMissing,
        &Progress::default(),
    )
    .unwrap();
    let local_restore = started.elapsed();
    reset_peak_memory();
    let started = Instant::now();
    offline::restore(
        &restore_root,
        "bench:bench.zip",
        Some(&stores),
        "from_s3",
        false,
        offline::DataDir::CreateIfMissing,
        &Progress::default(),
    )
    .unwrap();
    let s3_restore = started.elapsed();
    let restore_peak = peak_memory_mib();

    println!("| what | seconds | MB of database per second |\n|---|---|---|");
    let row = |what: &str, took: Duration| {
        println!(
            "| {what} | {:.2} | {:.1} |",
            took.as_secs_f64(),
            mb_per_s(size, took)
        );
    };
    row("Cairn backup, level 6, to the local directory", local_took);
    row(
        "Cairn backup, level 6, to S3 (upload, read back, publish)",
        s3_took,
    );
    row("Cairn restore from the local directory", local_restore);
    row("Cairn restore from S3", s3_restore);
    let upload_env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ];
    println!(
        "\nUploading the same {:.0} MB archive with other tools:\n",
        archive_bytes as f64 / 1e6
    );
    println!("| tool | seconds | MB of archive per second |\n|---|---|---|");
    println!(
        "| Cairn (its upload inside the backup above, with compression) | {:.2} | {:.1} |",
        s3_took.as_secs_f64(),
        mb_per_s(archive_bytes, s3_took)
    );
    if available("aws") {
        let started = Instant::now();
        run(Command::new("aws")
            .envs(upload_env)
            .args(["s3", "cp", "--quiet", "--endpoint-url", &endpoint])
            .arg(&local)
            .arg("s3://bench/aws-cp.zip"));
        let took = started.elapsed();
        println!(
            "| aws s3 cp | {:.2} | {:.1} |",
            took.as_secs_f64(),
            mb_per_s(archive_bytes, took)
        );
    } else {
        println!("| aws s3 cp | not installed | |");
    }
    if available("rclone") {
        let started = Instant::now();
        run(Command::new("rclone")
            .env("RCLONE_CONFIG_B_TYPE", "s3")
            .env("RCLONE_CONFIG_B_PROVIDER", "Other")
            .env("RCLONE_CONFIG_B_ENDPOINT", &endpoint)
            .env("RCLONE_CONFIG_B_ACCESS_KEY_ID", "testing")
            .env("RCLONE_CONFIG_B_SECRET_ACCESS_KEY", "testing")
            .arg("copyto")
            .arg(&local)
            .arg("b:bench/rclone.zip"));
        let took = started.elapsed();
        println!(
            "| rclone copyto | {:.2} | {:.1} |",
            took.as_secs_f64(),
            mb_per_s(archive_bytes, took)
        );
    } else {
        println!("| rclone | not installed | |");
    }
    println!(
        "\npeak resident memory of the whole benchmark process: {s3_peak:.1} MiB during the backup to S3, {restore_peak:.1} MiB during the restore from it\n"
    );
    let _ = moto.kill();
    let _ = moto.wait();
}

/// The size of everything under `dir`.
fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// A backup into `coll`, full or incremental: time, archive size and pages held.
fn into(data_dir: &Path, coll: &Path, incremental: bool) -> (Duration, u64, u64) {
    // The default levels, as `BACKUP … INTO` without options: 6 for a full archive, 3 for
    // an increment.
    let options = BackupOptions::default();
    let started = Instant::now();
    let written = offline::backup_into(
        data_dir,
        "bench",
        coll.to_str().unwrap(),
        incremental,
        None,
        &options,
        &Progress::default(),
    )
    .unwrap();
    let took = started.elapsed();
    let pages = written
        .manifest
        .entries
        .iter()
        .find(|e| e.name == "pages.bin")
        .map_or(written.manifest.page_count, |e| {
            e.size / written.manifest.page_size
        });
    (took, written.bytes, pages)
}

/// `restic backup` of a consistent copy (`sqlite3 .backup`) into `repo`: time and how much
/// the repository grew.
fn restic_of_copy(db: &Path, copy: &Path, repo: &Path) -> (Duration, u64) {
    let _ = std::fs::remove_file(copy);
    run(Command::new("sqlite3")
        .arg(db)
        .arg(format!(".backup '{}'", copy.display())));
    let before = tree_size(repo);
    let started = Instant::now();
    run(Command::new("restic")
        .args(["-q", "-r"])
        .arg(repo)
        .arg("backup")
        .arg(copy)
        .env("RESTIC_PASSWORD", "bench"));
    (started.elapsed(), tree_size(repo) - before)
}

fn increments(data_dir: &Path, db: &Path, scratch: &Path, root: &Path) {
    println!("## Incremental archives (BACKUP … INTO, default levels: 6 full, 3 increments)\n");
    let coll = scratch.join("coll");
    std::fs::create_dir_all(&coll).unwrap();
    let use_restic = available("restic") && available("sqlite3");
    let repo = root.join("restic");
    let copy = root.join("restic-copy.sqlite");
    if use_restic {
        run(Command::new("restic")
            .args(["-q", "init", "-r"])
            .arg(&repo)
            .env("RESTIC_PASSWORD", "bench"));
    }
    let conn = Connection::open(db).unwrap();
    let changes: [(&str, &str); 2] = [
        (
            "1 % of rows updated, scattered",
            "UPDATE orders SET amount = amount + 1 WHERE id % 100 = 0",
        ),
        (
            "1 % new rows appended",
            "INSERT INTO orders(customer, email, city, status, amount, created_at, note) SELECT customer, email, city, status, amount, created_at, note FROM orders WHERE id % 100 = 1",
        ),
    ];
    println!("| what | archive | pages | time | restic (repository growth, time) |");
    println!("|---|---|---|---|---|");
    let restic_row = || {
        if !use_restic {
            return "restic not installed".to_owned();
        }
        let (t, grew) = restic_of_copy(db, &copy, &repo);
        format!("{:.1} MB, {:.2} s", grew as f64 / 1e6, t.as_secs_f64())
    };
    let (took, bytes, pages) = into(data_dir, &coll, false);
    let restic = restic_row();
    println!(
        "| full archive | {:.1} MB | {pages} | {:.2} s | {restic} |",
        bytes as f64 / 1e6,
        took.as_secs_f64()
    );
    let full = (took, bytes);
    for (what, sql) in changes {
        conn.execute_batch(sql).unwrap();
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let (took, bytes, pages) = into(data_dir, &coll, true);
        let restic = restic_row();
        println!(
            "| increment after {what} | {:.1} MB ({:.1} % of full) | {pages} | {:.2} s ({:.0} % of full) | {restic} |",
            bytes as f64 / 1e6,
            100.0 * bytes as f64 / full.1 as f64,
            took.as_secs_f64(),
            100.0 * took.as_secs_f64() / full.0.as_secs_f64()
        );
    }
    // A writer during an increment, next to the same writer idle.
    let idle = with_writer(db, || std::thread::sleep(Duration::from_secs(5)));
    conn.execute_batch("UPDATE orders SET amount = amount - 1 WHERE id % 100 = 50")
        .unwrap();
    let mut during = (Duration::ZERO, 0, 0);
    let busy = with_writer(db, || during = into(data_dir, &coll, true));
    println!(
        "\nwriter committing small transactions (synchronous = FULL): max gap {:.1} ms idle, {:.1} ms during an increment ({:.2}×; {} and {} commits; the increment took {:.2} s)",
        idle.max_gap.as_secs_f64() * 1e3,
        busy.max_gap.as_secs_f64() * 1e3,
        busy.max_gap.as_secs_f64() / idle.max_gap.as_secs_f64(),
        idle.commits,
        busy.commits,
        during.0.as_secs_f64()
    );
    // Restoring the chain: the full archive and the increments.
    let restore_root = root.join("incr-restore");
    std::fs::create_dir_all(restore_root.join("databases")).unwrap();
    let started = Instant::now();
    offline::restore_latest(
        &restore_root,
        coll.to_str().unwrap(),
        None,
        "bench",
        None,
        "bench",
        false,
        offline::DataDir::Existing,
        &Progress::default(),
    )
    .unwrap();
    println!(
        "\nrestore of the chain (full + 3 increments, every link checked, image proven by SHA-256 and integrity_check): {:.2} s\n",
        started.elapsed().as_secs_f64()
    );
}
