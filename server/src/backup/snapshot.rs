//! A transaction-consistent copy of a live database, taken without blocking writers.
//!
//! SQLite's online backup copies pages in one step (`step(-1)`) inside a single read
//! transaction. In WAL mode a reader never blocks a writer, so commits go on while the copy
//! runs; the copy is the database as of the instant that read transaction began. (A copy in
//! small steps would restart at every commit of another connection, and never finish under
//! steady writes.) Compression then works from the copy, with no lock on the database at all.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use super::error::BackupError;

/// What was copied.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// When the read transaction was pinned.
    pub taken_at: DateTime<Utc>,
    pub page_size: u64,
    pub page_count: u64,
    /// Bytes of the copy (`page_size × page_count`).
    pub size: u64,
    /// Of a table-level backup: what the copy was cut down to.
    pub tables: Option<super::tables::Selection>,
}

/// Copies `source` (an open connection) into a new file at `dest`. The copy is in rollback
/// journal mode, so it is one self-contained file.
pub fn take(source: &Connection, dest: &Path, busy: Duration) -> Result<Snapshot, BackupError> {
    let sqlite = |action, source| BackupError::Sqlite {
        action,
        path: dest.to_owned(),
        source,
    };
    // Every row of the database lands here: owner-only before the first page is copied
    // (SQLite keeps the mode of a file it opens, and gives its journal the same).
    crate::new_file::create_new(dest).map_err(|source| BackupError::Io {
        action: "creating the snapshot",
        path: dest.to_owned(),
        source,
    })?;
    let mut copy = Connection::open_with_flags(
        dest,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite("creating the snapshot", e))?;
    // The copy is rewritten from scratch if we crash; it needs no durability of its own.
    copy.pragma_update(None, "synchronous", "OFF")
        .map_err(|e| sqlite("preparing the snapshot", e))?;
    let taken_at;
    {
        let backup = Backup::new(source, &mut copy).map_err(|e| sqlite("starting the copy", e))?;
        let deadline = std::time::Instant::now() + busy;
        loop {
            let started = Utc::now();
            match backup.step(-1).map_err(|e| sqlite("copying pages", e))? {
                StepResult::Done => {
                    taken_at = started;
                    break;
                }
                // Another connection holds a lock SQLite must wait for (a WAL recovery, or a
                // database not in WAL mode): retry until the busy timeout.
                StepResult::Busy | StepResult::Locked | StepResult::More
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => return Err(BackupError::Busy { waited: busy }),
            }
        }
    }
    copy.pragma_update(None, "journal_mode", "DELETE")
        .map_err(|e| sqlite("finishing the snapshot", e))?;
    let pragma = |name: &str| {
        copy.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(|e| sqlite("reading the snapshot", e))
    };
    let (page_size, page_count) = (pragma("page_size")?, pragma("page_count")?);
    copy.close()
        .map_err(|(_, e)| sqlite("closing the snapshot", e))?;
    let size = std::fs::metadata(dest)
        .map_err(|source| BackupError::Io {
            action: "reading",
            path: dest.to_owned(),
            source,
        })?
        .len();
    Ok(Snapshot {
        taken_at,
        page_size,
        page_count,
        size,
        tables: None,
    })
}

/// A snapshot read where it is: a read transaction kept open on a connection of its own, its
/// pages read through SQLite's `sqlite_dbpage` table. No copy is written, so an increment
/// costs a read of the database and the changed pages, not a copy of the whole file; the
/// log cannot be checkpointed past the snapshot while it is open (writers go on).
pub struct Live {
    conn: Connection,
    page_size: usize,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

const READ_PAGE: &str = "SELECT data FROM sqlite_dbpage WHERE pgno = ?1";

impl Live {
    /// Pins a read transaction on the database `source` has open. `None` when this SQLite
    /// has no `sqlite_dbpage` table (built without it) or the database is not a file: the
    /// caller copies instead.
    pub fn pin(
        source: &Connection,
        busy: Duration,
    ) -> Result<Option<(Live, Snapshot)>, BackupError> {
        let Some(path) = source
            .path()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
        else {
            return Ok(None);
        };
        let sqlite = |action, source| BackupError::Sqlite {
            action,
            path: path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite("opening the database for a snapshot", e))?;
        conn.busy_timeout(busy)
            .map_err(|e| sqlite("opening the database for a snapshot", e))?;
        if conn.prepare(READ_PAGE).is_err() {
            return Ok(None);
        }
        // The transaction's first read pins the snapshot: the database as of this instant.
        let taken_at = Utc::now();
        conn.execute_batch("BEGIN")
            .map_err(|e| sqlite("pinning the snapshot", e))?;
        let pragma = |name: &str| {
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
                .map_err(|e| sqlite("pinning the snapshot", e))
        };
        // A read of the schema makes the transaction a read transaction.
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| sqlite("pinning the snapshot", e))?;
        let (page_size, page_count) = (pragma("page_size")?, pragma("page_count")?);
        let live = Live {
            conn,
            page_size: usize::try_from(page_size).unwrap_or(0),
        };
        Ok(Some((
            live,
            Snapshot {
                taken_at,
                page_size,
                page_count,
                size: page_size * page_count,
                tables: None,
            },
        )))
    }
}

impl super::incremental::PageSource for Live {
    fn read_page(&mut self, number: u32, buffer: &mut [u8]) -> std::io::Result<()> {
        let mut read = self
            .conn
            .prepare_cached(READ_PAGE)
            .map_err(std::io::Error::other)?;
        read.query_row([number], |row| {
            let data = row.get_ref(0)?.as_blob()?;
            if data.len() != buffer.len() || data.len() != self.page_size {
                return Err(rusqlite::Error::InvalidColumnType(
                    0,
                    format!("page {number} of {} bytes", data.len()),
                    rusqlite::types::Type::Blob,
                ));
            }
            buffer.copy_from_slice(data);
            Ok(())
        })
        .map_err(std::io::Error::other)?;
        if number == 1 {
            // As a copy's header says: no write-ahead log (the file format bytes).
            buffer[18] = 1;
            buffer[19] = 1;
        }
        Ok(())
    }
}

/// The rows of each ordinary table of the database `conn` has open.
pub fn count_rows(conn: &Connection) -> rusqlite::Result<std::collections::BTreeMap<String, u64>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        let rows: i64 =
            conn.query_row(&format!("SELECT count(*) FROM {quoted}"), [], |r| r.get(0))?;
        counts.insert(name, u64::try_from(rows).unwrap_or(0));
    }
    Ok(counts)
}

/// A snapshot's pages: a copy in a temporary file, or read live.
#[derive(Debug)]
pub enum Image {
    Copy(super::files::TempFile),
    Live(Live),
}

impl Image {
    /// Takes the snapshot of the database `source` has open: live when `live` is asked
    /// for and SQLite can, otherwise a copy into a temporary file in `dir`.
    pub fn take(
        source: &Connection,
        dir: &Path,
        busy: Duration,
        live: bool,
    ) -> Result<(Image, Snapshot), BackupError> {
        if live && let Some((image, snapshot)) = Live::pin(source, busy)? {
            return Ok((Image::Live(image), snapshot));
        }
        let copy = super::files::TempFile::in_dir(dir, ".snapshot");
        let snapshot = take(source, copy.path(), busy)?;
        Ok((Image::Copy(copy), snapshot))
    }

    /// As [`Image::take`], cut down to the tables `filter` keeps when there is one (always
    /// a copy then: the cut is made in it).
    pub fn take_tables(
        source: &Connection,
        dir: &Path,
        busy: Duration,
        live: bool,
        filter: Option<&super::tables::TableFilter>,
        database: &str,
    ) -> Result<(Image, Snapshot), BackupError> {
        let Some(filter) = filter else {
            return Image::take(source, dir, busy, live);
        };
        let copy = super::files::TempFile::in_dir(dir, ".snapshot");
        let mut snapshot = take(source, copy.path(), busy)?;
        let selection = super::tables::keep_only(copy.path(), filter, database)?;
        let size = std::fs::metadata(copy.path())
            .map_err(|source| BackupError::Io {
                action: "reading",
                path: copy.path().to_owned(),
                source,
            })?
            .len();
        snapshot.size = size;
        snapshot.page_count = size / snapshot.page_size.max(1);
        snapshot.tables = Some(selection);
        Ok((Image::Copy(copy), snapshot))
    }

    /// Runs `f` on the image's pages.
    pub fn with_pages<T>(
        &mut self,
        page_size: u64,
        f: impl FnOnce(&mut dyn super::incremental::PageSource, u64) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match self {
            Image::Copy(copy) => {
                let (mut file, pages) =
                    super::incremental::FileImage::open(copy.path(), page_size)?;
                f(&mut file, pages)
            }
            Image::Live(live) => {
                let pages = live
                    .conn
                    .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
                    .map_err(std::io::Error::other)? as u64;
                f(live, pages)
            }
        }
    }

    /// The rows of each table in the snapshot (virtual tables left out: their module may
    /// not be loaded where the archive is restored), for the manifest.
    pub fn row_counts(&self) -> Result<std::collections::BTreeMap<String, u64>, BackupError> {
        let shown = self.shown();
        let sqlite = |source| BackupError::Sqlite {
            action: "counting the rows of",
            path: shown.clone(),
            source,
        };
        let opened;
        let conn = match self {
            Image::Copy(copy) => {
                opened = Connection::open_with_flags(
                    copy.path(),
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(sqlite)?;
                &opened
            }
            // Inside its read transaction: the rows as of the snapshot.
            Image::Live(live) => &live.conn,
        };
        count_rows(conn).map_err(sqlite)
    }

    /// Where errors about it point.
    pub fn shown(&self) -> std::path::PathBuf {
        match self {
            Image::Copy(copy) => copy.path().to_owned(),
            Image::Live(live) => live.conn.path().unwrap_or("the database").into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::incremental::PageSource;

    /// A live image is the database as of its pin, pages from the log included, whatever
    /// commits after it: page for page what a copy taken then holds, but for the header
    /// fields a copy's own commit rewrites.
    #[test]
    fn a_live_image_reads_the_snapshot_a_copy_would_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let writer = Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
                 INSERT INTO t SELECT i, hex(randomblob(100)) FROM n;",
            )
            .unwrap();
        let source = Connection::open(&path).unwrap();
        let (mut live, snapshot) = Live::pin(&source, Duration::from_secs(5))
            .unwrap()
            .expect("this build has sqlite_dbpage");
        let copy = dir.path().join("copy.sqlite");
        let copied = take(&source, &copy, Duration::from_secs(5)).unwrap();
        assert_eq!(snapshot.page_count, copied.page_count);
        // Commits after the pin change neither.
        writer
            .execute_batch("DELETE FROM t WHERE id % 2 = 0; INSERT INTO t VALUES (9999, 'x');")
            .unwrap();
        let bytes = std::fs::read(&copy).unwrap();
        let page = snapshot.page_size as usize;
        let mut buffer = vec![0u8; page];
        for number in 1..=snapshot.page_count as u32 {
            live.read_page(number, &mut buffer).unwrap();
            let expected = &bytes[(number as usize - 1) * page..number as usize * page];
            if number == 1 {
                // The change counter, the schema cookie and the version valid-for are the
                // copy's own (its commit rewrites them).
                let header = |b: &[u8]| [&b[..24], &b[28..40], &b[44..92], &b[100..]].concat();
                assert_eq!(header(&buffer), header(expected));
            } else {
                assert_eq!(buffer, expected, "page {number}");
            }
        }
    }
}
