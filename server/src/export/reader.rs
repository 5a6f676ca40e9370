//! Reading an export: line by line (memory is bounded by the longest line, not the file),
//! checking as it goes that every line is what the format allows where it stands and that
//! every table has the rows its entry declared. Importing loads a new database file that
//! only becomes a database when the whole file was read and checked.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, Statement};

use super::format::{self, Decoded, Entry, FORMAT_NAME, FORMAT_VERSION, Header, RowError};
use super::writer::quote;
use crate::backup::BackupError;
use crate::backup::progress::Progress;

/// What an import (or a verification) read.
#[derive(Debug, Clone)]
pub struct Imported {
    pub header: Header,
    /// Size of the export file.
    pub bytes: u64,
    /// Every table and the rows it received, in file order.
    pub tables: Vec<(String, u64)>,
}

/// Reads and checks all of `file` without writing anything.
pub fn verify(file: &Path, progress: &Progress) -> Result<Imported, BackupError> {
    read(file, None, progress)
}

/// Reads and checks all of the export in `opened` (`bytes` long, named `file` in errors)
/// without writing anything.
pub fn verify_from(
    opened: impl Read,
    bytes: u64,
    file: &Path,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    read_from(opened, bytes, file, None, progress)
}

/// Loads `file` into the new database file `into` (which must not exist), in one
/// transaction; the caller installs it.
pub fn load(file: &Path, into: &Path, progress: &Progress) -> Result<Imported, BackupError> {
    load_with(into, |db| read(file, Some(db), progress))
}

/// As [`load`], from the export in `opened` (`bytes` long, named `file` in errors).
pub fn load_from(
    opened: impl Read,
    bytes: u64,
    file: &Path,
    into: &Path,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    load_with(into, |db| {
        read_from(opened, bytes, file, Some(db), progress)
    })
}

/// Creates the database file `into` and runs `read` into it under the import's authorizer.
fn load_with(
    into: &Path,
    read: impl FnOnce(&Connection) -> Result<Imported, BackupError>,
) -> Result<Imported, BackupError> {
    crate::new_file::create_new(into).map_err(|source| BackupError::Io {
        action: "creating",
        path: into.to_owned(),
        source,
    })?;
    let mut conn = Connection::open_with_flags(
        into,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BackupError::Sqlite {
        action: "creating",
        path: into.to_owned(),
        source,
    })?;
    // The file's SQL runs here: it may make schema objects, never reach other files.
    conn.authorizer(Some(only_this_database))
        .map_err(|source| BackupError::Sqlite {
            action: "preparing",
            path: into.to_owned(),
            source,
        })?;
    let imported = read(&conn)?;
    conn.close().map_err(|(_, source)| BackupError::Sqlite {
        action: "closing",
        path: into.to_owned(),
        source,
    })?;
    // Loaded without a journal or syncs (a failure throws the file away): make it durable
    // once, before it gets a database's name.
    File::open(into)
        .and_then(|f| f.sync_all())
        .map_err(|source| BackupError::Io {
            action: "syncing",
            path: into.to_owned(),
            source,
        })?;
    Ok(imported)
}

fn only_this_database(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        _ => Authorization::Allow,
    }
}

/// The table whose rows are being read.
struct Filling<'c> {
    name: String,
    declared: u64,
    seen: u64,
    width: usize,
    insert: Option<Statement<'c>>,
}

/// Reads only the header line of `file`.
pub fn header(file: &Path) -> Result<Header, BackupError> {
    let opened = File::open(file).map_err(|source| BackupError::Io {
        action: "opening",
        path: file.to_owned(),
        source,
    })?;
    header_from(opened, file)
}

/// Reads only the header line of the export in `opened` (named `file` in errors).
pub fn header_from(opened: impl Read, file: &Path) -> Result<Header, BackupError> {
    let mut line = Vec::new();
    // A header is a few hundred bytes; a longer first line is not one.
    let read = BufReader::new(flate2::read::GzDecoder::new(opened))
        .take(1 << 20)
        .read_until(b'\n', &mut line);
    let bad = |reason| BackupError::BadExport {
        path: file.to_owned(),
        line: 1,
        reason,
    };
    read.map_err(|e| bad(format!("not a readable export ({e})")))?;
    read_header(&line).map_err(bad)
}

fn read(
    file: &Path,
    db: Option<&Connection>,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    let opened = File::open(file).map_err(|source| BackupError::Io {
        action: "opening",
        path: file.to_owned(),
        source,
    })?;
    let bytes = opened.metadata().map(|m| m.len()).unwrap_or(0);
    read_from(opened, bytes, file, db, progress)
}

fn read_from(
    opened: impl Read,
    bytes: u64,
    file: &Path,
    db: Option<&Connection>,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    let mut lines = BufReader::with_capacity(
        1 << 20,
        flate2::bufread::GzDecoder::new(BufReader::with_capacity(1 << 16, opened)),
    );
    let mut line = Vec::new();
    let mut number = 0u64;
    let bad = |number: u64, reason: String| BackupError::BadExport {
        path: file.to_owned(),
        line: number,
        reason,
    };
    // Reads the next line, bounded; `false` at the end of the file.
    let mut next = |line: &mut Vec<u8>, number: &mut u64| -> Result<bool, BackupError> {
        line.clear();
        *number += 1;
        // A row line and its newline, and one byte more to see that it is too long.
        let limit = format::MAX_LINE_BYTES as u64 + 2;
        let n = (&mut lines)
            .take(limit)
            .read_until(b'\n', line)
            .map_err(|e| {
                let reason = if *number == 1 && e.kind() == std::io::ErrorKind::InvalidInput {
                    format!(
                        "not a gzip file ({e}); an export is a .json.gz written by EXPORT DATABASE"
                    )
                } else {
                    format!("the file is damaged or cut short ({e})")
                };
                bad(*number, reason)
            })?;
        // Rows may be long; the header and schema entries, read whole into fields, may not.
        let limit = if line.first() == Some(&b'[') {
            format::MAX_LINE_BYTES
        } else {
            format::MAX_ENTRY_BYTES
        };
        if line.strip_suffix(b"\n").unwrap_or(line).len() > limit {
            return Err(bad(
                *number,
                format!(
                    "the line is longer than {limit} bytes, the most such a line may be; EXPORT DATABASE never writes one"
                ),
            ));
        }
        Ok(n > 0)
    };

    if !next(&mut line, &mut number)? {
        return Err(bad(1, "the file is empty".into()));
    }
    let header = read_header(&line).map_err(|reason| bad(1, reason))?;
    progress.set_total(header.rows);
    if let Some(db) = db {
        prepare_database(db, &header).map_err(|reason| bad(1, reason))?;
    }

    let sql = |number: u64, what: String| {
        move |e: rusqlite::Error| BackupError::BadExport {
            path: file.to_owned(),
            line: number,
            reason: format!("{what}: {e}"),
        }
    };
    let mut tables: Vec<(String, u64)> = Vec::new();
    let mut filling: Option<Filling<'_>> = None;
    let mut rows_seen = 0u64;
    let mut ended = None;
    let mut pending_progress = 0u64;
    while next(&mut line, &mut number)? {
        if ended.is_some() {
            return Err(bad(number, "there is more after the end line".into()));
        }
        if line.first() == Some(&b'[') {
            let Some(table) = filling.as_mut().filter(|t| t.seen < t.declared) else {
                let reason = match &filling {
                    Some(t) => format!(
                        "a row beyond the {} rows declared for table \"{}\"",
                        t.declared, t.name
                    ),
                    None => "a row before any table entry".into(),
                };
                return Err(bad(number, reason));
            };
            let values = format::read_row(line.trim_ascii_end(), table.width).map_err(|e| {
                let reason = match e {
                    RowError::Malformed(e) => format!("malformed row: {}", json_problem(&e)),
                    RowError::Width(found) => format!(
                        "a row of table \"{}\" has {found} values; its entry says {}",
                        table.name, table.width
                    ),
                };
                bad(number, reason)
            })?;
            if let Some(insert) = table.insert.as_mut() {
                for (i, decoded) in values.iter().enumerate() {
                    let bound = match decoded {
                        Decoded::Value(v) => insert.raw_bind_parameter(i + 1, v),
                        Decoded::RawText(bytes) => insert.raw_bind_parameter(
                            i + 1,
                            ToSqlOutput::Borrowed(ValueRef::Text(bytes)),
                        ),
                    };
                    bound.map_err(sql(number, format!("table \"{}\"", table.name)))?;
                }
                insert.raw_execute().map_err(sql(
                    number,
                    format!("inserting into table \"{}\"", table.name),
                ))?;
            }
            table.seen += 1;
            rows_seen += 1;
            pending_progress += 1;
            if pending_progress == 4096 {
                progress.advance(pending_progress);
                pending_progress = 0;
                progress.check()?;
            }
            continue;
        }
        let entry: Entry = serde_json::from_slice(line.trim_ascii_end())
            .map_err(|e| bad(number, format!("malformed line: {}", json_problem(&e))))?;
        if let Some(table) = &filling
            && table.seen < table.declared
        {
            return Err(bad(
                number,
                format!(
                    "table \"{}\" declared {} rows but the file has {}",
                    table.name, table.declared, table.seen
                ),
            ));
        }
        if let Some(done) = filling.take() {
            tables.push((done.name, done.seen));
        }
        match entry {
            Entry::Table {
                name,
                sql: create,
                rowid,
                columns,
                rows,
            } => {
                let width = rowid.iter().len() + columns.len();
                let insert = match db {
                    Some(db) => {
                        start_table(db, &name, create.as_deref(), rowid.as_deref(), &columns)
                            .map_err(|reason| bad(number, reason))?
                    }
                    None => None,
                };
                filling = Some(Filling {
                    name,
                    declared: rows,
                    seen: 0,
                    width,
                    insert,
                });
            }
            Entry::Index {
                name, sql: create, ..
            } => run_create(db, "INDEX", &create)
                .map_err(|r| bad(number, format!("index \"{name}\": {r}")))?,
            Entry::View { name, sql: create } => run_create(db, "VIEW", &create)
                .map_err(|r| bad(number, format!("view \"{name}\": {r}")))?,
            Entry::Trigger {
                name, sql: create, ..
            } => run_create(db, "TRIGGER", &create)
                .map_err(|r| bad(number, format!("trigger \"{name}\": {r}")))?,
            Entry::End { tables: t, rows } => {
                if t != header.tables || rows != header.rows {
                    return Err(bad(
                        number,
                        format!(
                            "the end line says {t} tables and {rows} rows, the header {} and {}",
                            header.tables, header.rows
                        ),
                    ));
                }
                ended = Some(number);
            }
        }
    }
    progress.advance(pending_progress);
    if ended.is_none() {
        return Err(bad(
            number,
            "the file ends before its end line: it was cut short; export again".into(),
        ));
    }
    if tables.len() as u64 != header.tables || rows_seen != header.rows {
        return Err(bad(
            number,
            format!(
                "the header declares {} tables and {} rows; the file holds {} and {rows_seen}",
                header.tables,
                header.rows,
                tables.len()
            ),
        ));
    }
    if let Some(db) = db {
        drop_unlisted_statistics(db, &tables)
            .map_err(sql(number, "tidying the statistics".into()))?;
        db.execute_batch("COMMIT")
            .map_err(sql(number, "committing the import".into()))?;
    }
    Ok(Imported {
        header,
        bytes,
        tables,
    })
}

/// `ANALYZE sqlite_schema` makes every statistics table this SQLite knows (`sqlite_stat4`
/// too); the source had only those the file lists.
fn drop_unlisted_statistics(db: &Connection, listed: &[(String, u64)]) -> rusqlite::Result<()> {
    let made: Vec<String> = db
        .prepare("SELECT name FROM main.sqlite_schema WHERE type = 'table' AND name LIKE 'sqlite\\_stat%' ESCAPE '\\'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in made {
        if !listed.iter().any(|(table, _)| *table == name) {
            db.execute_batch(&format!("DROP TABLE main.{}", quote(&name)))?;
        }
    }
    Ok(())
}

/// serde_json's message with the position inside the line given as a column only (the line
/// number that counts is ours).
fn json_problem(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    format!("{message} (at character {} of the line)", e.column())
}

fn read_header(line: &[u8]) -> Result<Header, String> {
    let value: serde_json::Value = serde_json::from_slice(line.trim_ascii_end()).map_err(|e| {
        format!(
            "not an export header ({}); an export starts with {{\"format\":\"{FORMAT_NAME}\",…}}",
            json_problem(&e)
        )
    })?;
    if value["format"] != FORMAT_NAME {
        return Err(format!(
            "not a Cairn export: the first line's format is {}, expected \"{FORMAT_NAME}\"",
            value["format"]
        ));
    }
    if value["version"] != FORMAT_VERSION {
        return Err(format!(
            "format version {} is not one this server reads (it reads version {FORMAT_VERSION}); import it with the Cairn release that wrote it ({})",
            value["version"], value["server_version"]
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("bad header: {e}"))
}

/// Settings that must be made before the first table, then the one transaction.
fn prepare_database(db: &Connection, header: &Header) -> Result<(), String> {
    let encoding = match header.encoding.as_str() {
        e @ ("UTF-8" | "UTF-16le" | "UTF-16be") => e,
        other => return Err(format!("unknown text encoding {other:?}")),
    };
    if !(0..=2).contains(&header.auto_vacuum) {
        return Err(format!(
            "auto_vacuum must be 0, 1 or 2, got {}",
            header.auto_vacuum
        ));
    }
    let page_size = header.page_size;
    if !(512..=65536).contains(&page_size) || page_size.count_ones() != 1 {
        return Err(format!(
            "page_size {page_size} is not a power of two from 512 to 65536"
        ));
    }
    db.execute_batch(&format!(
        "PRAGMA page_size = {page_size};
         PRAGMA encoding = '{encoding}';
         PRAGMA auto_vacuum = {};
         PRAGMA user_version = {};
         PRAGMA application_id = {};
         PRAGMA journal_mode = OFF;
         PRAGMA synchronous = OFF;
         PRAGMA cache_size = -65536;
         BEGIN;",
        header.auto_vacuum, header.user_version, header.application_id
    ))
    .map_err(|e| format!("preparing the new database: {e}"))
}

/// Creates a table (or finds one SQLite made) and prepares the insert of its rows.
fn start_table<'c>(
    db: &'c Connection,
    name: &str,
    create: Option<&str>,
    rowid: Option<&str>,
    columns: &[String],
) -> Result<Option<Statement<'c>>, String> {
    let exists = |db: &Connection| {
        db.query_row(
            "SELECT count(*) FROM main.sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(|e| e.to_string())
    };
    match create {
        Some(create) => {
            run_create(Some(db), "TABLE", create).map_err(|e| format!("table \"{name}\": {e}"))?
        }
        None => {
            if !exists(db)? && name.starts_with("sqlite_stat") {
                db.execute_batch("ANALYZE sqlite_schema")
                    .map_err(|e| format!("making {name}: {e}"))?;
            }
            if !exists(db)? {
                return Err(format!(
                    "table \"{name}\" is one SQLite makes itself, but nothing before it made it"
                ));
            }
            db.execute(&format!("DELETE FROM main.{}", quote(name)), [])
                .map_err(|e| format!("emptying table \"{name}\": {e}"))?;
        }
    }
    let names: Vec<String> = rowid
        .into_iter()
        .chain(columns.iter().map(String::as_str))
        .map(quote)
        .collect();
    if names.is_empty() {
        return Ok(None);
    }
    let marks = vec!["?"; names.len()].join(", ");
    db.prepare(&format!(
        "INSERT INTO main.{}({}) VALUES ({marks})",
        quote(name),
        names.join(", ")
    ))
    .map(Some)
    .map_err(|e| format!("table \"{name}\": {e}"))
}

/// Runs one schema statement from the file, which must be one `CREATE [TEMP…] <kind>`.
fn run_create(db: Option<&Connection>, kind: &str, sql: &str) -> Result<(), String> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let fits = words.first().is_some_and(|w| w == "CREATE")
        && words
            .iter()
            .skip(1)
            .any(|w| w == kind || (kind == "TABLE" && w == "VIRTUAL"));
    if !fits {
        return Err(format!("expected a CREATE {kind} statement, got {sql:?}"));
    }
    let Some(db) = db else { return Ok(()) };
    // `prepare` refuses a second statement after the first.
    let mut statement = db.prepare(sql).map_err(|e| e.to_string())?;
    statement.raw_execute().map(drop).map_err(|e| e.to_string())
}
