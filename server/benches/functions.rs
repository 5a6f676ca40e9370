//! The per-call cost of a plugin's scalar SQL function (ABI 1.6): the C example's
//! `adder_add(k, 1)` summed over a 1,000,000-row table through the real `cairn` binary,
//! next to SQLite's own `k + 1` and `abs(k)` over the same rows in the same run. Prints the
//! best of five of each and the difference per call; then the cost per row of a plugin's
//! table function (ABI 1.7, `adder_range(n)`) next to a table scan and SQLite's recursive
//! CTE making the same rows. Asserts nothing about speed.
//!
//! `CAIRN_BENCH_ROWS` changes the row count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "common/cairn.rs"]
mod cairn;
use cairn::{Cairn, psql};

const PASSWORD: &str = "bench-pw";

/// Builds the C example plugin, optimized, into `dir`.
fn build_adder(dir: &Path) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-shared", "-fPIC", "-O2", "-I"])
        .arg(repo.join("plugin-api/include"))
        .arg(repo.join("examples/c-plugin/adder.c"))
        .arg("-o")
        .arg(dir.join("libadder.so"))
        .status()
        .unwrap_or_else(|e| panic!("running the C compiler `{cc}` failed ({e})"));
    assert!(status.success(), "compiling adder.c failed");
}

fn best_of(url: &str, sql: &str, runs: usize) -> Duration {
    (0..runs).map(|_| psql(url, sql)).min().unwrap()
}

fn main() {
    let rows: u64 = std::env::var("CAIRN_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().unwrap();
    let plugins = scratch.path().join("cairn").join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    build_adder(&plugins);
    let cairn = Cairn::start(
        scratch.path(),
        PASSWORD,
        "\n[plugins.adder]\nlibrary = \"libadder.so\"\n",
    );
    let url = format!(
        "host=127.0.0.1 port={} user=admin password={PASSWORD} dbname=default",
        cairn.port
    );
    psql(
        &url,
        &format!(
            "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER); WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) INSERT INTO t SELECT n, n * 7 % 1000 FROM c"
        ),
    );
    println!(
        "sum over {rows} rows of t(id INTEGER PRIMARY KEY, k INTEGER), best of 5, through psql\n"
    );
    println!("| expression | seconds | ns per row | over SQLite's k + 1, per call |");
    println!("|---|---|---|---|");
    let baseline = best_of(&url, "SELECT sum(k + 1) FROM t", 5);
    for (what, sql) in [
        ("SQLite's `k + 1`", "SELECT sum(k + 1) FROM t"),
        ("SQLite's `abs(k)`", "SELECT sum(abs(k)) FROM t"),
        (
            "plugin `adder_add(k, 1)` (C, ABI 1.6)",
            "SELECT sum(adder_add(k, 1)) FROM t",
        ),
    ] {
        let took = best_of(&url, sql, 5);
        let per_row = took.as_secs_f64() * 1e9 / rows as f64;
        let over = (took.as_secs_f64() - baseline.as_secs_f64()) * 1e9 / rows as f64;
        println!(
            "| {what} | {:.3} | {per_row:.0} | {over:+.0} ns |",
            took.as_secs_f64()
        );
    }
    println!("\nthe same number of rows made and summed, best of 5, through psql\n");
    println!("| rows from | seconds | ns per row |");
    println!("|---|---|---|");
    for (what, sql) in [
        ("the table `t` (a scan)", "SELECT sum(id) FROM t".to_owned()),
        (
            "SQLite's recursive CTE",
            format!(
                "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < {rows}) SELECT sum(n) FROM c"
            ),
        ),
        (
            "plugin table function `adder_range(n)` (C, ABI 1.7, 100 rows per call)",
            format!("SELECT sum(n) FROM adder_range({rows})"),
        ),
    ] {
        let took = best_of(&url, &sql, 5);
        let per_row = took.as_secs_f64() * 1e9 / rows as f64;
        println!("| {what} | {:.3} | {per_row:.0} |", took.as_secs_f64());
    }
}
