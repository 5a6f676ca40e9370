//! Writing an export: one read transaction over the live database (so the file is one
//! instant, and writers go on committing in WAL mode), rows turned into JSON lines on this
//! thread, compressed into gzip by the parallel deflate pipeline on others, into a temporary
//! file that is synced and then published under its final name.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rusqlite::{Connection, OptionalExtension};

use super::format::{self, Entry, FORMAT_NAME, FORMAT_VERSION, Header};
use super::gzip;
use super::sealed::SealedExport;
use crate::backup::deflate::DeflateOptions;
use crate::backup::destination::ObjectDestination;
use crate::backup::files::{PacedFile, TempFile};
use crate::backup::progress::{Progress, RateLimit};
use crate::backup::zip_writer::ZipWriter;
use crate::backup::{BackupError, BackupOptions};

/// How much export data may wait in the page cache before it is synced (as for archives).
const SYNC_EVERY: u64 = 8 << 20;

/// A finished export.
#[derive(Debug, Clone)]
pub struct Exported {
    pub path: PathBuf,
    /// Size of the gzip file.
    pub bytes: u64,
    pub header: Header,
}

/// A table to export, decided before the first row is written.
#[derive(Debug)]
struct TablePlan {
    entry: Entry,
    /// The SELECT that reads its rows in file order; `None` for a virtual table.
    select: Option<String>,
}

/// Exports the database open on `source` (named `database`) to `target`, which must not
/// exist. On any failure or cancellation nothing is left under `target` and no temporary
/// file remains.
pub fn write(
    source: &Connection,
    database: &str,
    target: &Path,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<Exported, BackupError> {
    check_options(options)?;
    if target.exists() {
        return Err(BackupError::TargetExists {
            path: target.to_owned(),
        });
    }
    progress.check()?;
    let dir = target.parent().unwrap_or(Path::new("."));
    let temp = TempFile::in_dir(dir, ".json.gz");
    let io = |action| {
        let path = temp.path().to_owned();
        move |source| BackupError::Io {
            action,
            path,
            source,
        }
    };
    let file = crate::new_file::create_new(temp.path()).map_err(io("creating"))?;
    let mut out = PacedFile::new(file, options.buffer_size, SYNC_EVERY);
    let header = match options.key.as_deref() {
        None => write_into(source, database, &mut out, target, options, progress, 1)?,
        Some(key) => {
            let zip = ZipWriter::new(&mut out).map_err(io("writing"))?;
            let mut sealed = SealedExport::start(zip, key).map_err(io("writing"))?;
            let header = write_into(source, database, &mut sealed, target, options, progress, 1)?;
            sealed.finish(&header, key, options, target)?;
            header
        }
    };
    let file = out.finish().map_err(io("syncing"))?;
    let bytes = file.metadata().map_err(io("reading"))?.len();
    drop(file);
    progress.check()?;
    temp.publish(target)?;
    Ok(Exported {
        path: target.to_owned(),
        bytes,
        header,
    })
}

/// Exports the database open on `source` to `key` in an object-storage destination, which
/// must not exist there: streamed to a temporary object, read back through every check an
/// import makes, then published under `key` (see [`ObjectDestination`]).
pub fn write_to_object(
    source: &Connection,
    database: &str,
    destination: &ObjectDestination,
    key: &str,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<Exported, BackupError> {
    check_options(options)?;
    progress.check()?;
    let mut upload = destination.create(key)?;
    let shown = PathBuf::from(upload.display());
    // Written once, then read back once.
    let header = match options.key.as_deref() {
        None => write_into(source, database, &mut upload, &shown, options, progress, 2)?,
        Some(key) => {
            let mut sealed =
                SealedExport::start(ZipWriter::streaming(&mut upload), key).map_err(|source| {
                    BackupError::Io {
                        action: "writing",
                        path: shown.clone(),
                        source,
                    }
                })?;
            let header = write_into(source, database, &mut sealed, &shown, options, progress, 2)?;
            sealed.finish(&header, key, options, &shown)?;
            header
        }
    };
    upload.finish()?;
    let bytes = upload.written();
    progress.check()?;
    {
        let reader = upload.reopen()?;
        match &options.key {
            None => super::reader::verify_from(reader, bytes, &shown, progress).map(drop)?,
            Some(key) => {
                let mut archive =
                    crate::backup::archive_reader::ArchiveReader::from_reader(reader, &shown)?
                        .with_key(Some(std::sync::Arc::clone(key)));
                super::sealed::verify(&mut archive, progress).map(drop)?
            }
        }
    }
    progress.check()?;
    upload.publish()?;
    Ok(Exported {
        path: shown,
        bytes,
        header,
    })
}

/// Writes the whole export into `out` (`target` names it in errors); progress counts
/// `passes` times the rows (a read-back counts too).
fn write_into<W: std::io::Write + Send>(
    source: &Connection,
    database: &str,
    out: &mut W,
    target: &Path,
    options: &BackupOptions,
    progress: &Progress,
    passes: u64,
) -> Result<Header, BackupError> {
    let sqlite = |action| {
        move |source| BackupError::Sqlite {
            action,
            path: target.to_owned(),
            source,
        }
    };
    // Everything below reads inside this one transaction; its snapshot is fixed at the first
    // read, just after `created_at`. Dropping it rolls back, which for a reader only ends it.
    let transaction = source
        .unchecked_transaction()
        .map_err(sqlite("starting the read transaction for"))?;
    let created_at = chrono::Utc::now();
    let (header, tables, others) =
        plan(&transaction, database, created_at).map_err(sqlite("reading the schema for"))?;
    progress.set_total(header.rows * passes);
    let io = |action| {
        move |source| BackupError::Io {
            action,
            path: target.to_owned(),
            source,
        }
    };
    let deflate = DeflateOptions {
        level: options.compression_level,
        chunk_size: options.buffer_size,
        threads: options.threads,
    };
    let (chunks, pipe) = sync_channel::<Vec<u8>>(2);
    let mut limit = options.max_rate.map(|rate| RateLimit::new(rate, progress));
    let (produced, compressed) = std::thread::scope(|scope| {
        let compressor = scope.spawn(|| -> std::io::Result<u64> {
            let mtime = u32::try_from(created_at.timestamp()).unwrap_or(0);
            gzip::write(out, PipeReader::new(pipe), deflate, mtime)
        });
        let mut lines = Lines {
            chunks,
            buffer: Vec::with_capacity(options.buffer_size + 64 * 1024),
            chunk_size: options.buffer_size,
            pending_rows: 0,
            progress,
            limit: limit.as_mut(),
            target,
        };
        let produced = write_lines(&transaction, &header, &tables, &others, &mut lines);
        // Closing the pipe ends the compressed stream (or stops it, after a failure).
        drop(lines);
        let compressed = compressor
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the compressor panicked")));
        (produced, compressed)
    });
    drop(transaction);
    // The reader's failure explains a stopped compressor; a failed write explains a closed
    // pipe seen by the reader.
    match (produced, compressed) {
        (Err(e @ BackupError::Aborted), _) => return Err(e),
        (Ok(()), Err(e)) | (Err(BackupError::PipeClosed), Err(e)) => {
            return Err(io("writing")(e));
        }
        (Err(e), _) => return Err(e),
        (Ok(()), Ok(_)) => {}
    }
    Ok(header)
}

/// Refuses options an export cannot honour (jobs check before they start).
pub fn check_options(options: &BackupOptions) -> Result<(), BackupError> {
    if options.tables.is_some() {
        return Err(BackupError::InvalidOption(
            "an export holds the whole database; tables and exclude_tables are BACKUP's (a table-level archive)".into(),
        ));
    }
    if options.compression_level == 0 {
        return Err(BackupError::InvalidOption(
            "compression_level of an export must be 1 (fastest) to 9 (smallest): gzip has no stored mode".into(),
        ));
    }
    Ok(())
}

/// Reads the settings and the schema, and counts every table's rows.
fn plan(
    db: &Connection,
    database: &str,
    created_at: chrono::DateTime<chrono::Utc>,
) -> rusqlite::Result<(Header, Vec<TablePlan>, Vec<Entry>)> {
    let pragma =
        |name: &str| db.query_row(&format!("PRAGMA main.{name}"), [], |r| r.get::<_, i64>(0));
    let encoding: String = db.query_row("PRAGMA main.encoding", [], |r| r.get(0))?;
    let (page_size, auto_vacuum) = (pragma("page_size")?, pragma("auto_vacuum")?);
    let (user_version, application_id) = (pragma("user_version")?, pragma("application_id")?);

    let mut schema = db.prepare(
        "SELECT type, name, tbl_name, sql FROM main.sqlite_schema WHERE sql IS NOT NULL ORDER BY rowid",
    )?;
    let objects: Vec<(String, String, String, String)> = schema
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut own = Vec::new();
    // Tables SQLite made itself are filled after every other table exists.
    let mut made_by_sqlite = Vec::new();
    let mut others = Vec::new();
    for (kind, name, table, sql) in objects {
        match kind.as_str() {
            "table" => {
                let kind: Option<String> = db
                    .query_row(
                        "SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = ?1",
                        [&name],
                        |r| r.get(0),
                    )
                    .optional()?;
                let kind = kind.unwrap_or_default();
                let internal = name.starts_with("sqlite_");
                if internal && name != "sqlite_sequence" && !name.starts_with("sqlite_stat") {
                    continue;
                }
                if kind == "virtual" {
                    own.push(TablePlan {
                        entry: Entry::Table {
                            name,
                            sql: Some(sql),
                            rowid: None,
                            columns: Vec::new(),
                            rows: 0,
                        },
                        select: None,
                    });
                    continue;
                }
                let shadow = internal || kind == "shadow";
                let planned = table_plan(db, name, (!shadow).then_some(sql))?;
                if shadow {
                    made_by_sqlite.push(planned);
                } else {
                    own.push(planned);
                }
            }
            "index" => others.push(Entry::Index { name, table, sql }),
            "view" => others.push(Entry::View { name, sql }),
            "trigger" => others.push(Entry::Trigger { name, table, sql }),
            _ => {}
        }
    }
    // `sqlite_sequence` and the statistics are made by SQLite: they always come last, as
    // in `sqlite3 .dump`.
    made_by_sqlite.sort_by_key(|t| match &t.entry {
        Entry::Table { name, .. } => name.starts_with("sqlite_"),
        _ => false,
    });
    own.extend(made_by_sqlite);
    let rows = own
        .iter()
        .map(|t| match t.entry {
            Entry::Table { rows, .. } => rows,
            _ => 0,
        })
        .sum();
    let header = Header {
        format: FORMAT_NAME.into(),
        version: FORMAT_VERSION,
        server_version: env!("CARGO_PKG_VERSION").into(),
        sqlite_version: rusqlite::version().into(),
        database: database.into(),
        created_at: created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        encoding,
        page_size,
        auto_vacuum,
        user_version,
        application_id,
        tables: own.len() as u64,
        rows,
    };
    Ok((header, own, others))
}

/// What a copy of table `name` of `schema` writes, unquoted: its rowid under a name no
/// column takes (none when a lone INTEGER PRIMARY KEY is the rowid under another name, or
/// the table is WITHOUT ROWID), and its stored columns (generated and hidden ones cannot be
/// inserted: they come back by themselves). An export and a table restore copy the same.
pub fn stored_columns(
    db: &Connection,
    schema: &str,
    name: &str,
) -> rusqlite::Result<(Option<String>, Vec<String>)> {
    let without_rowid: bool = db.query_row(
        "SELECT wr FROM pragma_table_list WHERE schema = ?1 AND name = ?2",
        [schema, name],
        |r| r.get(0),
    )?;
    let mut info =
        db.prepare("SELECT name, type, pk, hidden FROM pragma_table_xinfo(?1, ?2) ORDER BY cid")?;
    let all: Vec<(String, String, i64, i64)> = info
        .query_map([name, schema], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let columns: Vec<String> = all
        .iter()
        .filter(|c| c.3 == 0)
        .map(|c| c.0.clone())
        .collect();
    let keys: Vec<&(String, String, i64, i64)> = all.iter().filter(|c| c.2 > 0).collect();
    let aliased = matches!(keys.as_slice(), [key] if key.1.eq_ignore_ascii_case("INTEGER"));
    let rowid = if without_rowid || aliased {
        None
    } else {
        ["rowid", "_rowid_", "oid"]
            .into_iter()
            .find(|alias| !all.iter().any(|c| c.0.eq_ignore_ascii_case(alias)))
            .map(str::to_owned)
    };
    Ok((rowid, columns))
}

fn table_plan(db: &Connection, name: String, sql: Option<String>) -> rusqlite::Result<TablePlan> {
    let (rowid, columns) = stored_columns(db, "main", &name)?;
    let selected: Vec<String> = rowid.iter().chain(&columns).map(|c| quote(c)).collect();
    let select = if selected.is_empty() {
        None
    } else {
        Some(format!(
            "SELECT {} FROM main.{}",
            selected.join(", "),
            quote(&name)
        ))
    };
    let rows: i64 = db.query_row(
        &format!("SELECT count(*) FROM main.{}", quote(&name)),
        [],
        |r| r.get(0),
    )?;
    Ok(TablePlan {
        entry: Entry::Table {
            name,
            sql,
            rowid,
            columns,
            rows: rows as u64,
        },
        select,
    })
}

/// An SQL identifier in double quotes.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Writes every line of the export into `lines`.
fn write_lines(
    db: &Connection,
    header: &Header,
    tables: &[TablePlan],
    others: &[Entry],
    lines: &mut Lines<'_, '_>,
) -> Result<(), BackupError> {
    let target = lines.target;
    let sqlite = |action| {
        move |source| BackupError::Sqlite {
            action,
            path: target.to_owned(),
            source,
        }
    };
    lines.object(header)?;
    for table in tables {
        lines.object(&table.entry)?;
        let (Some(select), Entry::Table { rows, name, .. }) = (&table.select, &table.entry) else {
            continue;
        };
        let mut statement = db.prepare(select).map_err(sqlite("reading rows for"))?;
        let width = statement.column_count();
        let mut cursor = statement.query([]).map_err(sqlite("reading rows for"))?;
        let mut written = 0u64;
        while let Some(row) = cursor.next().map_err(sqlite("reading rows for"))? {
            let line = &mut lines.buffer;
            let start = line.len();
            line.push(b'[');
            for i in 0..width {
                if i > 0 {
                    line.push(b',');
                }
                let value = row.get_ref(i).map_err(sqlite("reading rows for"))?;
                format::write_value(line, value);
            }
            line.extend_from_slice(b"]\n");
            written += 1;
            // Every file written here must import within bounded memory.
            let length = line.len() - start - 1;
            if length > format::MAX_LINE_BYTES {
                return Err(BackupError::LineTooLong {
                    what: format!("row {written} of table \"{name}\""),
                    bytes: length,
                    limit: format::MAX_LINE_BYTES,
                });
            }
            lines.row_done()?;
        }
        if written != *rows {
            // Cannot happen inside one read transaction; if it does, the file would lie.
            return Err(BackupError::Damaged {
                path: target.to_owned(),
                entry: name.clone(),
                reason: format!("counted {rows} rows but read {written}"),
            });
        }
    }
    for entry in others {
        lines.object(entry)?;
    }
    lines.object(&Entry::End {
        tables: header.tables,
        rows: header.rows,
    })?;
    lines.flush()
}

/// Collects lines into chunks and hands them to the compressor.
struct Lines<'a, 'p> {
    chunks: SyncSender<Vec<u8>>,
    buffer: Vec<u8>,
    chunk_size: usize,
    pending_rows: u64,
    progress: &'p Progress,
    limit: Option<&'a mut RateLimit>,
    target: &'p Path,
}

impl Lines<'_, '_> {
    fn object<T: serde::Serialize>(&mut self, value: &T) -> Result<(), BackupError> {
        let start = self.buffer.len();
        serde_json::to_writer(&mut self.buffer, value).map_err(|e| BackupError::Io {
            action: "encoding a line of",
            path: self.target.to_owned(),
            source: std::io::Error::other(e),
        })?;
        let length = self.buffer.len() - start;
        if length > format::MAX_ENTRY_BYTES {
            let shown = &self.buffer[start..start + 80.min(length)];
            return Err(BackupError::LineTooLong {
                what: format!("the schema entry {}…", String::from_utf8_lossy(shown)),
                bytes: length,
                limit: format::MAX_ENTRY_BYTES,
            });
        }
        self.buffer.push(b'\n');
        self.maybe_send()
    }

    fn row_done(&mut self) -> Result<(), BackupError> {
        self.pending_rows += 1;
        self.maybe_send()
    }

    fn maybe_send(&mut self) -> Result<(), BackupError> {
        if self.buffer.len() >= self.chunk_size {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BackupError> {
        self.progress
            .advance(std::mem::take(&mut self.pending_rows));
        let chunk = std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(self.chunk_size + 64 * 1024),
        );
        let len = chunk.len() as u64;
        match self.limit.as_mut() {
            Some(limit) => limit.pace(len, self.progress)?,
            None => self.progress.check()?,
        }
        if chunk.is_empty() {
            return Ok(());
        }
        self.chunks.send(chunk).map_err(|_| BackupError::PipeClosed)
    }
}

/// The compressor's end of the pipe: the chunks as one byte stream, ending when the
/// sender is dropped.
struct PipeReader {
    chunks: Receiver<Vec<u8>>,
    current: Vec<u8>,
    at: usize,
}

impl PipeReader {
    fn new(chunks: Receiver<Vec<u8>>) -> PipeReader {
        PipeReader {
            chunks,
            current: Vec::new(),
            at: 0,
        }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.current.len() {
            match self.chunks.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
