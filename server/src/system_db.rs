//! The server's own SQLite files in `<data_dir>/system/` (the backup history, the users made
//! in SQL): created owner-only from their first byte, in WAL mode with `synchronous=FULL`,
//! so that what they say is on disk once it is answered.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

/// A system file that could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum SystemDbError {
    #[error("{action} {path}: {source}")]
    Create {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// Opens (or creates) `<data_dir>/system/<file>` and runs `create` (its `IF NOT EXISTS`
/// schema) on it.
pub fn open(
    data_dir: &Path,
    file: &str,
    create: &str,
) -> Result<(Connection, PathBuf), SystemDbError> {
    let dir = data_dir.join("system");
    std::fs::create_dir_all(&dir).map_err(|source| SystemDbError::Create {
        action: "creating directory",
        path: dir.clone(),
        source,
    })?;
    let path = dir.join(file);
    if !path.exists() {
        // Owner-only from the start, as every file of the server (SQLite keeps the mode).
        crate::new_file::create_new(&path).map_err(|source| SystemDbError::Create {
            action: "creating",
            path: path.clone(),
            source,
        })?;
    }
    let opened = (|| {
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(create)?;
        Ok(conn)
    })();
    match opened {
        Ok(conn) => Ok((conn, path)),
        Err(source) => Err(SystemDbError::Sqlite { path, source }),
    }
}
