//! The commands that work on files and data directories rather than a running server: each
//! returns its result for [`crate::output`] to print.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::path::Path;

use anyhow::Context;
use cairn_server::Config;
use cairn_server::backup::options::parse_size;
use cairn_server::backup::{BackupOptions, offline};
use cairn_server::scram::ScramVerifier;
use serde_json::json;

use crate::exit::{Failure, failure};
use crate::output::Outcome;
use crate::progress_bar::{Unit, with_progress};

/// The destinations of the server config at `config`, when one is given.
pub fn stores(config: Option<&Path>) -> anyhow::Result<Option<offline::Stores>> {
    let Some(path) = config else {
        return Ok(None);
    };
    let config = Config::load(path)?;
    Ok(Some(offline::Stores::open(&config).map_err(|e| {
        failure(Failure::Usage, format!("{}: {e}", path.display()))
    })?))
}

pub fn inspect_plugin(file: &Path) -> anyhow::Result<Outcome> {
    use cairn_plugin_api::abi::{CAIRN_ABI_MAJOR, CAIRN_ABI_MINOR};
    use cairn_plugin_api::ffi::host::inspect;
    let mut text = format!(
        "file:        {}\nserver ABI:  {CAIRN_ABI_MAJOR}.{CAIRN_ABI_MINOR}\n",
        file.display()
    );
    let server_abi = format!("{CAIRN_ABI_MAJOR}.{CAIRN_ABI_MINOR}");
    let info = match inspect(file) {
        Ok(info) => info,
        Err(e) => {
            text.push_str("compatible:  no\n");
            let json = json!({
                "file": file,
                "server_abi": server_abi,
                "compatible": false,
                "problem": e.to_string(),
            });
            return Ok(Outcome::done(text, json).failing(e.into()));
        }
    };
    let abi = format!("{}.{}", info.abi_major, info.abi_minor);
    let needs = format!("{}.{}", info.abi_major, info.min_host_minor);
    let _ = writeln!(text, "name:        {}", info.name);
    let _ = writeln!(text, "version:     {}", info.version);
    let _ = writeln!(text, "description: {}", info.description);
    let _ = writeln!(text, "ABI:         {abi}");
    let _ = writeln!(text, "needs host:  {needs} or newer");
    text.push_str("compatible:  yes\n");
    let json = json!({
        "file": file,
        "server_abi": server_abi,
        "name": info.name,
        "version": info.version,
        "description": info.description,
        "abi": abi,
        "needs_host": needs,
        "compatible": true,
    });
    Ok(Outcome::done(text, json))
}

pub fn list_archives(
    location: &str,
    stores: Option<&offline::Stores>,
    verify: bool,
) -> anyhow::Result<Outcome> {
    let archives = offline::archives(location, stores, verify)?;
    let bad = archives.iter().filter(|a| a.problem.is_some()).count();
    let mut text = String::new();
    let mut listed = Vec::new();
    for a in &archives {
        listed.push(json!({
            "location": a.location,
            "database": a.database,
            "kind": a.kind,
            "created_at": a.created_at,
            "bytes": a.bytes,
            "compression_level": a.compression_level,
            "server_version": a.server_version,
            "verified": a.verified,
            "problem": a.problem,
            "parent": a.parent,
            "restorable_from": a.restorable_from,
            "restorable_until": a.restorable_until,
            "encryption_key": a.encryption_key,
        }));
        let window = match (&a.restorable_from, &a.restorable_until) {
            (Some(from), Some(until)) => format!("  restorable {from} .. {until}"),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "{}  {}  {}  {}  {} bytes{window}{}",
            a.created_at.as_deref().unwrap_or("-"),
            a.database.as_deref().unwrap_or("-"),
            a.kind.as_deref().unwrap_or("-"),
            a.location,
            a.bytes,
            match (&a.problem, a.verified) {
                (Some(p), _) => format!("  PROBLEM: {p}"),
                (None, Some(true)) => "  verified".into(),
                _ => String::new(),
            }
        );
    }
    let outcome = Outcome::done(
        text,
        json!({ "location": location, "archives": listed, "problems": bad }),
    );
    if bad == 0 {
        return Ok(outcome);
    }
    Ok(outcome.failing(failure(
        Failure::Verification,
        format!(
            "{bad} of {} files at {location} are not readable archives or failed their checks",
            archives.len()
        ),
    )))
}

/// Where `cairn backup` writes.
pub enum BackupTarget {
    /// `--to`: this file or object.
    File(String),
    /// `--into [--incremental]`: a new member of a collection.
    Into { location: String, incremental: bool },
}

pub struct BackupArgs<'a> {
    pub data_dir: &'a Path,
    pub database: &'a str,
    pub target: &'a BackupTarget,
    /// As asked for; else the server's defaults (increments have their own).
    pub level: Option<u32>,
    pub buffer_size: &'a str,
    pub max_rate: Option<&'a str>,
    /// `--key`: the `[backup.keys.NAME]` of `--config` the archive is encrypted with.
    pub key: Option<&'a str>,
}

pub fn backup(args: &BackupArgs<'_>, stores: Option<&offline::Stores>) -> anyhow::Result<Outcome> {
    let mut options = BackupOptions::default();
    if let Some(level) = args.level {
        options.set_level(i64::from(level))?;
    }
    options.set_buffer_size(parse_size(args.buffer_size)?)?;
    if let Some(rate) = args.max_rate {
        options.set_max_rate(parse_size(rate)?)?;
    }
    if let Some(key) = args.key {
        let Some(stores) = stores else {
            return Err(failure(
                Failure::Usage,
                "--key names a [backup.keys.NAME] of the server config: give --config too",
            ));
        };
        options.key_name = Some(key.to_owned());
        options.resolve_key(&stores.keys)?;
    }
    let written = with_progress("backing up", Unit::Bytes, |progress| match args.target {
        BackupTarget::File(to) => {
            offline::backup(args.data_dir, args.database, to, stores, &options, progress)
        }
        BackupTarget::Into {
            location,
            incremental,
        } => offline::backup_into(
            args.data_dir,
            args.database,
            location,
            *incremental,
            stores,
            &options,
            progress,
        ),
    })?;
    let text = format!(
        "archive:   {}\ndatabase:  {}\nbytes:     {}\nsnapshot:  {}\n",
        written.path.display(),
        args.database,
        written.bytes,
        written.manifest.created_at
    );
    let json = json!({
        "archive": written.path,
        "database": args.database,
        "kind": written.manifest.kind,
        "bytes": written.bytes,
        "snapshot": written.manifest.created_at,
    });
    Ok(Outcome::done(text, json))
}

pub fn verify(file: &str, stores: Option<&offline::Stores>) -> anyhow::Result<Outcome> {
    let verified = with_progress("verifying", Unit::Bytes, |progress| {
        offline::verify(file, stores, progress)
    })?;
    let m = &verified.manifest;
    let checked = if m.kind == "export" {
        format!(
            "an encrypted export with key {}\nresult:    ok (authentication code, every line and row count passed)\n",
            m.encryption.as_ref().map_or("?", |e| e.key.as_str())
        )
    } else {
        format!(
            "pages:     {} of {} bytes\nresult:    ok (CRC, SHA-256, row counts and SQLite integrity check passed)\n",
            m.page_count, m.page_size
        )
    };
    let text = format!(
        "archive:   {file}\ndatabase:  {}\nsnapshot:  {}\nwritten by Cairn {} (format {})\n{checked}",
        m.database, m.created_at, m.server_version, m.format_version
    );
    let json = json!({
        "archive": file,
        "database": m.database,
        "snapshot": m.created_at,
        "server_version": m.server_version,
        "format_version": m.format_version,
        "page_count": m.page_count,
        "page_size": m.page_size,
        "result": "ok",
    });
    Ok(Outcome::done(text, json))
}

pub fn data_dir_rule(create: bool) -> offline::DataDir {
    if create {
        offline::DataDir::CreateIfMissing
    } else {
        offline::DataDir::Existing
    }
}

pub struct RestoreArgs<'a> {
    pub file: &'a str,
    pub data_dir: &'a Path,
    pub database: &'a str,
    pub replace: bool,
    pub create: offline::DataDir,
}

pub fn restore(
    args: &RestoreArgs<'_>,
    stores: Option<&offline::Stores>,
) -> anyhow::Result<Outcome> {
    let verified = with_progress("restoring", Unit::Bytes, |progress| {
        offline::restore(
            args.data_dir,
            args.file,
            stores,
            args.database,
            args.replace,
            args.create,
            progress,
        )
    })?;
    Ok(restored(args.database, args.file, &verified))
}

/// What a restore says: the database made, from what, of which snapshot.
fn restored(
    database: &str,
    from: &str,
    verified: &cairn_server::backup::archive_reader::Verified,
) -> Outcome {
    let m = &verified.manifest;
    let text = format!(
        "restored database \"{database}\" ({} bytes, \"{}\" as of {}, from {from})\n",
        verified.database_bytes, m.database, m.created_at
    );
    let json = json!({
        "database": database,
        "archive": from,
        "bytes": verified.database_bytes,
        "source_database": m.database,
        "snapshot": m.created_at,
    });
    Outcome::done(text, json)
}

pub struct LatestArgs<'a> {
    pub location: &'a str,
    pub data_dir: &'a Path,
    pub database: &'a str,
    pub as_of: Option<&'a str>,
    pub target: &'a str,
    pub replace: bool,
    pub create: offline::DataDir,
}

/// `cairn restore --from-latest LOCATION [--as-of INSTANT]`.
pub fn restore_latest(
    args: &LatestArgs<'_>,
    stores: Option<&offline::Stores>,
) -> anyhow::Result<Outcome> {
    let as_of = args
        .as_of
        .map(cairn_server::backup::continuous::replay::parse_instant)
        .transpose()
        .map_err(|m| failure(Failure::Usage, m.replace("AS OF SYSTEM TIME", "--as-of")))?;
    let (verified, from) = with_progress("restoring", Unit::Bytes, |progress| {
        offline::restore_latest(
            args.data_dir,
            args.location,
            stores,
            args.database,
            as_of,
            args.target,
            args.replace,
            args.create,
            progress,
        )
    })?;
    Ok(restored(args.target, &from, &verified))
}

pub fn export(data_dir: &Path, database: &str, to: &Path, level: u32) -> anyhow::Result<Outcome> {
    let mut options = BackupOptions::default();
    options.set_level(i64::from(level))?;
    let exported = with_progress("exporting", Unit::Rows, |progress| {
        offline::export(data_dir, database, to, &options, progress)
    })?;
    let h = &exported.header;
    let text = format!(
        "export:    {}\ndatabase:  {database}\nbytes:     {}\ntables:    {}\nrows:      {}\nsnapshot:  {}\n",
        exported.path.display(),
        exported.bytes,
        h.tables,
        h.rows,
        h.created_at
    );
    let json = json!({
        "export": exported.path,
        "database": database,
        "bytes": exported.bytes,
        "tables": h.tables,
        "rows": h.rows,
        "snapshot": h.created_at,
    });
    Ok(Outcome::done(text, json))
}

pub struct ImportArgs<'a> {
    pub file: &'a Path,
    pub data_dir: &'a Path,
    pub database: Option<&'a str>,
    pub replace: bool,
    pub create: offline::DataDir,
}

pub fn import(args: &ImportArgs<'_>) -> anyhow::Result<Outcome> {
    let imported = with_progress("importing", Unit::Rows, |progress| {
        offline::import(
            args.data_dir,
            args.file,
            args.database,
            args.replace,
            args.create,
            progress,
        )
    })?;
    let h = &imported.header;
    let name = args.database.unwrap_or(&h.database);
    let mut text = String::new();
    for (table, rows) in &imported.tables {
        let _ = writeln!(text, "imported {rows} rows into table \"{table}\"");
    }
    let _ = writeln!(
        text,
        "imported database \"{name}\" ({} tables, {} rows; export of \"{}\" taken at {})",
        imported.tables.len(),
        h.rows,
        h.database,
        h.created_at
    );
    let tables: serde_json::Map<String, serde_json::Value> = imported
        .tables
        .iter()
        .map(|(table, rows)| (table.clone(), json!(rows)))
        .collect();
    let json = json!({
        "database": name,
        "tables": tables,
        "rows": h.rows,
        "source_database": h.database,
        "snapshot": h.created_at,
    });
    Ok(Outcome::done(text, json))
}

pub fn passwd() -> anyhow::Result<Outcome> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Type the password and press Enter (it is echoed; pipe it in to avoid that):");
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(failure(
            Failure::Usage,
            "empty password: write the password on standard input, e.g. `printf '%s' \"$PW\" | cairn passwd`",
        ));
    }
    let secret = ScramVerifier::from_password(password).to_string();
    Ok(Outcome::done(
        format!("{secret}\n"),
        json!({ "scram": secret }),
    ))
}
