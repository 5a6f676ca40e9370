//! One server per data directory: an exclusive lock on `<data_dir>/cairn.lock`, held for the
//! life of the process and released by the kernel if the process dies. As PostgreSQL's
//! `postmaster.pid`, the file also says who holds it and where that server answers, one fact
//! per line (see [`Holder`]), so that `cairn status` can find a running server from its config.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Holds the data directory; dropping it releases the lock.
#[derive(Debug)]
pub struct DataDirLock {
    file: File,
    path: PathBuf,
    /// What the file says now.
    published: std::sync::Mutex<Holder>,
}

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "data directory {data_dir} is in use by another cairn server ({holder}, lock file {lock}); stop that server or point this one at another data_dir"
    )]
    InUse {
        data_dir: PathBuf,
        lock: PathBuf,
        holder: String,
    },
    #[error("locking {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl DataDirLock {
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, LockError> {
        let path = data_dir.join("cairn.lock");
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match try_lock_patiently(&file) {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = match Holder::from_lines(&text).pid {
                    None => "pid unknown".to_owned(),
                    Some(pid) => format!("pid {pid}"),
                };
                return Err(LockError::InUse {
                    data_dir: data_dir.to_owned(),
                    lock: path,
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let lock = DataDirLock {
            file,
            path,
            published: Default::default(),
        };
        // The pid alone: a server says `starting` itself; `cairn restore` and `import` hold
        // the lock without being a server.
        lock.publish(&Holder {
            pid: Some(std::process::id()),
            ..Holder::default()
        });
        Ok(lock)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rewrites what the file says about its holder. Only informative: on a full disk it may
    /// not be writable, and the lock holds all the same.
    pub fn publish(&self, holder: &Holder) {
        let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        *published = holder.clone();
        // Written over the old text, then cut to length: a reader never finds the file empty
        // (an empty file would read as "pid unknown").
        let text = holder.to_lines();
        let mut file = &self.file;
        let _ = file
            .rewind()
            .and_then(|()| file.write_all(text.as_bytes()))
            .and_then(|()| file.set_len(text.len() as u64))
            .and_then(|()| file.sync_all());
    }
}

impl DataDirLock {
    /// Publishes `state` with the facts published before.
    pub fn set_state(&self, state: &str) {
        let mut holder = self
            .published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        holder.state = Some(state.to_owned());
        self.publish(&holder);
    }
}

/// What the server holding a data directory says about itself, line by line in `cairn.lock`:
/// its pid, when it started (Unix seconds), its PostgreSQL address, its HTTP address (or an
/// empty line), and its state (`starting`, `ready`, `stopping`). A field the file lacks is
/// `None` (a lock written by an older server holds only the pid).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holder {
    pub pid: Option<u32>,
    pub started_at: Option<i64>,
    pub listen: Option<String>,
    pub http: Option<String>,
    pub state: Option<String>,
}

impl Holder {
    fn to_lines(&self) -> String {
        let field = |v: Option<String>| v.unwrap_or_default();
        format!(
            "{}\n{}\n{}\n{}\n{}\n",
            field(self.pid.map(|p| p.to_string())),
            field(self.started_at.map(|t| t.to_string())),
            field(self.listen.clone()),
            field(self.http.clone()),
            field(self.state.clone()),
        )
    }

    fn from_lines(text: &str) -> Holder {
        let mut lines = text.lines().map(str::trim);
        let mut next = || lines.next().filter(|l| !l.is_empty()).map(str::to_owned);
        Holder {
            pid: next().and_then(|p| p.parse().ok()),
            started_at: next().and_then(|t| t.parse().ok()),
            listen: next(),
            http: next(),
            state: next(),
        }
    }
}

/// Takes the lock, allowing for a moment's contention: `holder` (a `cairn status`) takes it
/// shared for an instant, and a start must not fail for that.
fn try_lock_patiently(file: &File) -> Result<(), TryLockError> {
    const TRIES: u32 = 50;
    for _ in 1..TRIES {
        match file.try_lock() {
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
    file.try_lock()
}

/// The server holding `data_dir`, or `None` when no process holds it (no server runs there).
pub fn holder(data_dir: &Path) -> Result<Option<Holder>, LockError> {
    let path = data_dir.join("cairn.lock");
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    match file.try_lock_shared() {
        // Taken (and at once released by the drop): nobody holds it.
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            file.read_to_string(&mut text).map_err(io)?;
            Ok(Some(Holder::from_lines(&text)))
        }
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_the_same_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn the_holder_is_read_back_while_held_and_none_after() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()).unwrap(), None);
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let facts = Holder {
            pid: Some(std::process::id()),
            started_at: Some(1_796_000_000),
            listen: Some("127.0.0.1:5432".into()),
            http: None,
            state: Some("ready".into()),
        };
        lock.publish(&facts);
        assert_eq!(holder(dir.path()).unwrap(), Some(facts));
        drop(lock);
        assert_eq!(holder(dir.path()).unwrap(), None);
    }
}
