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
    })
}
