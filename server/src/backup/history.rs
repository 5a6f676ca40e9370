//! The backup history: one row per backup or restore, in `<data_dir>/system/backups.sqlite`,
//! so `SHOW BACKUPS` and `backups()` survive a restart. Sessions allowed to see it attach it
//! read-only as schema `cairn`; only this module writes it.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, params};

use super::error::BackupError;

/// The schema a session reads the history through, and the table.
pub const SCHEMA: &str = "cairn";
pub const TABLE: &str = "backups";

/// A backup's state, as the `status` column spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Running,
    /// Running, waiting at a step until resumed (PAUSE JOB).
    Paused,
    Complete,
    Failed,
    Aborted,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Complete => "complete",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
        }
    }
}

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: i64,
    pub database: String,
    pub kind: String,
    pub status: String,
    pub path: String,
    pub bytes: Option<i64>,
    pub backup_error: Option<String>,
}

/// The statuses of a job that has not ended, as SQL lists them.
const UNENDED: &str = "('running', 'paused')";

/// The columns [`record`] reads, in its order.
const RECORD_COLUMNS: &str = "id, database, kind, status, path, bytes, backup_error";

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        id: r.get(0)?,
        database: r.get(1)?,
        kind: r.get(2)?,
        status: r.get(3)?,
        path: r.get(4)?,
        bytes: r.get(5)?,
        backup_error: r.get(6)?,
    })
}

/// The newest complete job of a database and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct LastComplete {
    pub database: String,
    pub kind: String,
    pub started: Option<chrono::DateTime<chrono::Utc>>,
    pub ended: Option<chrono::DateTime<chrono::Utc>>,
    pub bytes: u64,
}

/// See [`History::summary`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub last: Vec<LastComplete>,
    /// (database, kind, failed jobs).
    pub failed: Vec<(String, String, u64)>,
    /// (database, kind, percent done).
    pub running: Vec<(String, String, f64)>,
}

fn parse_ts(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

#[derive(Debug)]
pub struct History {
    path: PathBuf,
    conn: Mutex<Connection>,
    interrupted: Vec<PathBuf>,
}

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS backups (
    id               INTEGER PRIMARY KEY,
    database         TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    progress_percent REAL NOT NULL DEFAULT 0,
    start_ts         TEXT NOT NULL,
    end_ts           TEXT,
    path             TEXT NOT NULL,
    bytes            INTEGER,
    backup_error     TEXT,
    requested_by     TEXT NOT NULL
);
";

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl History {
    /// Opens (or creates) the history under `data_dir`. Rows still `running` (or `paused`)
    /// belong to a server that stopped without finishing them: they become `failed`.
    pub fn open(data_dir: &Path) -> Result<History, BackupError> {
        let (conn, path) =
            crate::system_db::open(data_dir, "backups.sqlite", CREATE).map_err(|e| match e {
                crate::system_db::SystemDbError::Create {
                    action,
                    path,
                    source,
                } => BackupError::Io {
                    action,
                    path,
                    source,
                },
                crate::system_db::SystemDbError::Sqlite { path, source } => {
                    BackupError::History { path, source }
                }
            })?;
        let err = |source| BackupError::History {
            path: path.clone(),
            source,
        };
        // Written only once: a start on a full disk must not need to write.
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err)?;
        if version == 0 {
            conn.pragma_update(None, "user_version", 1).map_err(err)?;
        }
        let interrupted = conn
            .prepare(&format!(
                "UPDATE backups SET status = 'failed', end_ts = ?1, backup_error = 'the server stopped while this ran' WHERE status IN {UNENDED} RETURNING path",
            ))
            .and_then(|mut update| {
                update
                    .query_map([now()], |row| row.get::<_, String>(0))?
                    .map(|path| path.map(PathBuf::from))
                    .collect::<rusqlite::Result<Vec<PathBuf>>>()
            })
            .map_err(err)?;
        if !interrupted.is_empty() {
            tracing::warn!(
                count = interrupted.len(),
                "backups that were running when the server stopped are marked failed"
            );
        }
        Ok(History {
            path,
            conn: Mutex::new(conn),
            interrupted,
        })
    }

    /// The targets of the jobs a stopped server left running (their temporary files lie
    /// beside them).
    pub fn interrupted(&self) -> &[PathBuf] {
        &self.interrupted
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, BackupError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| BackupError::History {
            path: self.path.clone(),
            source,
        })
    }

    /// What a metrics scrape reports: per database and kind, the newest complete job, the
    /// count of failed ones, and the jobs running now.
    pub fn summary(&self) -> Result<Summary, BackupError> {
        self.with(|c| {
            let last = c
                .prepare(
                    "SELECT database, kind, end_ts, start_ts, coalesce(bytes, 0) FROM backups
                     WHERE id IN (SELECT max(id) FROM backups WHERE status = 'complete' GROUP BY database, kind)",
                )?
                .query_map([], |r| {
                    Ok(LastComplete {
                        database: r.get(0)?,
                        kind: r.get(1)?,
                        ended: r.get::<_, Option<String>>(2)?.and_then(|t| parse_ts(&t)),
                        started: parse_ts(&r.get::<_, String>(3)?),
                        bytes: r.get::<_, i64>(4)?.max(0) as u64,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let failed = c
                .prepare(
                    "SELECT database, kind, count(*) FROM backups WHERE status = 'failed' GROUP BY database, kind",
                )?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let running = c
                .prepare(&format!(
                    "SELECT database, kind, progress_percent FROM backups WHERE status IN {UNENDED}",
                ))?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Summary {
                last,
                failed,
                running,
            })
        })
    }

    /// Records a new running job; returns its id.
    pub fn start(
        &self,
        database: &str,
        kind: &str,
        path: &Path,
        requested_by: &str,
    ) -> Result<i64, BackupError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO backups (database, kind, status, start_ts, path, requested_by) VALUES (?1, ?2, 'running', ?3, ?4, ?5)",
                params![database, kind, now(), path.display().to_string(), requested_by],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Records a backup that failed before it could start (its target could not be made).
    pub fn failed_to_start(
        &self,
        database: &str,
        kind: &str,
        path: &str,
        error: &str,
        requested_by: &str,
    ) -> Result<i64, BackupError> {
        self.with(|c| {
            let now = now();
            c.execute(
                "INSERT INTO backups (database, kind, status, start_ts, end_ts, path, backup_error, requested_by) VALUES (?1, ?2, 'failed', ?3, ?3, ?4, ?5, ?6)",
                params![database, kind, now, path, error, requested_by],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    pub fn progress(&self, id: i64, percent: f64) -> Result<(), BackupError> {
        self.with(|c| {
            c.execute(
                &format!("UPDATE backups SET progress_percent = round(?2, 1) WHERE id = ?1 AND status IN {UNENDED}"),
                params![id, percent],
            )
            .map(drop)
        })
    }

    /// Marks a job that has not ended `running` or `paused`.
    pub fn set_paused(&self, id: i64, paused: bool) -> Result<(), BackupError> {
        let status = if paused {
            Status::Paused
        } else {
            Status::Running
        };
        self.with(|c| {
            c.execute(
                &format!("UPDATE backups SET status = ?2 WHERE id = ?1 AND status IN {UNENDED}"),
                params![id, status.as_str()],
            )
            .map(drop)
        })
    }

    pub fn finish(
        &self,
        id: i64,
        status: Status,
        bytes: Option<u64>,
        error: Option<&str>,
    ) -> Result<(), BackupError> {
        let progress = if status == Status::Complete {
            Some(100.0)
        } else {
            None
        };
        self.with(|c| {
            c.execute(
                "UPDATE backups SET status = ?2, end_ts = ?3, bytes = ?4, backup_error = ?5, progress_percent = coalesce(?6, progress_percent) WHERE id = ?1",
                params![id, status.as_str(), now(), bytes.map(|b| b as i64), error, progress],
            )
            .map(drop)
        })
    }

    pub fn get(&self, id: i64) -> Result<Option<Record>, BackupError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {RECORD_COLUMNS} FROM backups WHERE id = ?1"),
                [id],
                record,
            )
            .optional()
        })
    }

    /// The most recent rows, newest first (for plugins).
    pub fn recent(&self, database: Option<&str>, limit: i64) -> Result<Vec<Record>, BackupError> {
        self.with(|c| {
            c.prepare(&format!(
                "SELECT {RECORD_COLUMNS} FROM backups WHERE ?1 IS NULL OR database = ?1 ORDER BY id DESC LIMIT ?2"
            ))?
            .query_map(params![database, limit], record)?
            .collect()
        })
    }
}
