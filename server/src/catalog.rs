//! The databases on disk: one SQLite file per database under `<data_dir>/databases/`.
//!
//! The catalog owns every path decision (names are checked before they touch the file system),
//! opens connections with the server's settings (WAL, durable commits, busy timeout, the
//! authorizer), and counts the sessions using each database so that `DROP DATABASE` never
//! removes a file from under a client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::{Connection, OpenFlags};

use crate::changes::{Capture, ChangeFeed};
use crate::disk_space::DataDisk;
use crate::group_commit::{PendingSync, WalSync};

/// The database every server has after its first start.
pub const DEFAULT_DATABASE: &str = "default";
/// PostgreSQL's identifier limit, kept so names look the same to every client.
pub const MAX_NAME_LEN: usize = 63;
const FILE_SUFFIX: &str = ".sqlite";

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid database name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("database \"{0}\" does not exist")]
    NotFound(String),
    #[error("database \"{0}\" already exists")]
    AlreadyExists(String),
    #[error(
        "database \"{name}\" is being accessed by {sessions} session(s); disconnect them (or connect to another database) and retry"
    )]
    InUse { name: String, sessions: usize },
    #[error(
        "database \"{0}\" is being read by another process (a `cairn backup`?), so its log cannot be folded in; retry when it is done"
    )]
    Busy(String),
    #[error(
        "the database \"{DEFAULT_DATABASE}\" cannot be dropped: clients land there when they name no other"
    )]
    DefaultDatabase,
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("opening {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// How a session may use the database it connects to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Opened read-only by SQLite itself, so no statement can write, whatever it is.
    ReadOnly,
}

/// A database as `SHOW DATABASES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    pub name: String,
    /// The database file plus its write-ahead log.
    pub size_bytes: u64,
    /// The write-ahead log alone.
    pub wal_bytes: u64,
}

/// The set of databases in one data directory.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    busy_timeout: Duration,
    /// The disk the databases are on: whether it is full.
    disk: Arc<DataDisk>,
    /// Sessions per database; the lock also serialises create, drop and connect.
    sessions: Arc<Mutex<HashMap<String, usize>>>,
    /// Notified whenever a lease is released.
    released: Arc<Condvar>,
    /// Bytes of temporary tables a client connection may hold (`None`: no limit).
    temp_storage_limit: Option<u64>,
    /// Bytes of each database file a connection reads through a memory map (0: none).
    mmap_size: u64,
    /// Who must see every commit of some databases (continuous archiving).
    commits: Option<Arc<dyn CommitObserver>>,
    /// The shared log syncs of each database that sessions write to (group commit).
    wal_syncs: Mutex<HashMap<PathBuf, Arc<WalSync>>>,
    /// The row changes sessions commit, for the plugins that subscribed.
    changes: Arc<ChangeFeed>,
}

/// A session's connection and what comes with it.
#[derive(Debug)]
pub struct SessionConnection {
    pub conn: Connection,
    pub lease: Lease,
    /// The commits the session must wait for before its client hears of them (none for
    /// read-only access).
    pub unsynced: Option<PendingSync>,
    /// The rows its transactions change (none for read-only access).
    pub changes: Option<Arc<Capture>>,
}

/// A connection, its lease, and for a session's read-write one its pending syncs and its
/// capture of row changes.
type Leased = (Connection, Lease, Option<PendingSync>, Option<Arc<Capture>>);

/// Called right after each commit on a connection, with the log's length in frames; `true`
/// asks for a checkpoint there and then (the observer's log has grown past its bound).
pub type OnCommit = Box<dyn Fn(i32) -> bool + Send>;

/// Someone who must see every commit of some databases: each connection opened to one of
/// them calls what [`CommitObserver::observer`] gives after each commit. (Such a connection
/// no longer checkpoints by itself: the observer does.)
pub trait CommitObserver: Send + Sync + std::fmt::Debug {
    fn observer(&self, database: &str, path: &Path) -> Option<OnCommit>;
}

/// How long DROP DATABASE waits for the database's sessions to end (PostgreSQL's 5 s): a
/// client that has just disconnected may not have been cleaned up yet.
const DROP_PATIENCE: Duration = Duration::from_secs(5);

/// Held by a session while it uses a database; dropping it releases the database.
#[derive(Debug)]
pub struct Lease {
    name: String,
    sessions: Arc<Mutex<HashMap<String, usize>>>,
    released: Arc<Condvar>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut sessions = lock(&self.sessions);
        if let Some(count) = sessions.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                sessions.remove(&self.name);
            }
        }
        self.released.notify_all();
    }
}

/// Checks a database name: it becomes a file name, so only a safe alphabet is allowed.
pub fn validate_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |reason: &str| CatalogError::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    };
    let first = name
        .chars()
        .next()
        .ok_or_else(|| invalid("a name cannot be empty"))?;
    if name.len() > MAX_NAME_LEN {
        return Err(invalid(&format!(
            "a name is at most {MAX_NAME_LEN} characters"
        )));
    }
    if !(first.is_ascii_lowercase() || first == '_') {
        return Err(invalid("a name starts with a lowercase letter or '_'"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(invalid("use only lowercase letters, digits and '_'"));
    }
    Ok(())
}

/// Checks the name of something else that follows the database-name rule (a user, a plugin,
/// a procedure); the message starts with `invalid <kind> name`.
pub fn validate_identifier(kind: &str, name: &str) -> Result<(), String> {
    match validate_name(name) {
        Err(CatalogError::InvalidName { reason, .. }) => {
            Err(format!("invalid {kind} name {name:?}: {reason}"))
        }
        _ => Ok(()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the counts half-updated (each update is a
    // single map operation), so a poisoned lock is still usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Catalog {
    /// Opens the catalog in `data_dir` (on `disk`), creating the directory layout and the
    /// default database when missing.
    pub fn open(
        data_dir: &Path,
        busy_timeout: Duration,
        disk: Arc<DataDisk>,
    ) -> Result<Catalog, CatalogError> {
        let dir = data_dir.join("databases");
        std::fs::create_dir_all(&dir).map_err(|source| CatalogError::Io {
            action: "creating directory",
            path: dir.clone(),
            source,
        })?;
        let catalog = Catalog {
            dir,
            busy_timeout,
            disk,
            sessions: Arc::default(),
            released: Arc::default(),
            temp_storage_limit: None,
            mmap_size: 0,
            commits: None,
            changes: Arc::default(),
            wal_syncs: Mutex::default(),
        };
        if !catalog.exists(DEFAULT_DATABASE) {
            catalog.create(DEFAULT_DATABASE)?;
        }
        Ok(catalog)
    }

    /// The directory holding the database files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The disk the databases are on.
    pub fn disk(&self) -> &DataDisk {
        &self.disk
    }

    /// The file of database `name` (which must be valid).
    pub fn path_of(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}{FILE_SUFFIX}"))
    }

    pub fn exists(&self, name: &str) -> bool {
        validate_name(name).is_ok() && self.path_of(name).is_file()
    }

    /// Creates an empty database in WAL mode. It is made whole under a temporary name and
    /// only then renamed to its own, so a crash never leaves a half-made database (empty,
    /// not in WAL mode) holding a name nobody was told about; start-up removes the
    /// temporary.
    pub fn create(&self, name: &str) -> Result<(), CatalogError> {
        validate_name(name)?;
        let _guard = lock(&self.sessions);
        let path = self.path_of(name);
        if path.exists() {
            return Err(CatalogError::AlreadyExists(name.to_owned()));
        }
        let temporary = crate::new_file::temporary_name(&self.dir, ".create");
        let made = make_empty_database(&temporary).and_then(|()| {
            std::fs::rename(&temporary, &path).map_err(|source| CatalogError::Io {
                action: "renaming into",
                path: path.clone(),
                source,
            })
        });
        if made.is_err() {
            let _ = std::fs::remove_file(&temporary);
            let _ = remove_sidecars(&temporary);
        }
        made?;
        self.sync_dir()
    }

    /// Drops a database that no session is using. Returns false when it did not exist and
    /// `if_exists` was given.
    pub fn drop_database(&self, name: &str, if_exists: bool) -> Result<bool, CatalogError> {
        validate_name(name)?;
        if name == DEFAULT_DATABASE {
            return Err(CatalogError::DefaultDatabase);
        }
        let mut sessions = lock(&self.sessions);
        let path = self.path_of(name);
        if !path.is_file() {
            return if if_exists {
                Ok(false)
            } else {
                Err(CatalogError::NotFound(name.to_owned()))
            };
        }
        let deadline = std::time::Instant::now() + DROP_PATIENCE;
        while let Some(&count) = sessions.get(name) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(CatalogError::InUse {
                    name: name.to_owned(),
                    sessions: count,
                });
            }
            sessions = self
                .released
                .wait_timeout(sessions, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        if !path.is_file() {
            // Dropped by someone else while we waited.
            return if if_exists {
                Ok(false)
            } else {
                Err(CatalogError::NotFound(name.to_owned()))
            };
        }
        remove_sidecars(&path)?;
        std::fs::remove_file(&path).map_err(|source| CatalogError::Io {
            action: "removing",
            path: path.clone(),
            source,
        })?;
        drop(sessions);
        self.sync_dir()?;
        Ok(true)
    }

    /// Installs a prepared database file (a verified restore, in this directory) as `name`.
    /// Without `replace`, `name` must not exist. With it, an existing `name` must have no
    /// session; its log is checkpointed first, so the swap (one rename) leaves either the old
    /// database whole or the new one, whatever happens.
    pub fn install(&self, name: &str, prepared: &Path, replace: bool) -> Result<(), CatalogError> {
        validate_name(name)?;
        let sqlite_err = |path: &Path| {
            let path = path.to_owned();
            move |source| CatalogError::Sqlite { path, source }
        };
        // Databases live in WAL mode; the prepared file is not open anywhere yet.
        let conn = Connection::open_with_flags(
            prepared,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sqlite_err(prepared))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sqlite_err(prepared))?;
        conn.close().map_err(|(_, e)| sqlite_err(prepared)(e))?;

        let sessions = lock(&self.sessions);
        let path = self.path_of(name);
        if path.exists() {
            if !replace {
                return Err(CatalogError::AlreadyExists(name.to_owned()));
            }
            if let Some(&count) = sessions.get(name) {
                return Err(CatalogError::InUse {
                    name: name.to_owned(),
                    sessions: count,
                });
            }
            // Every committed page must be in the main file before its log goes: a reader in
            // another process (`cairn backup`) can keep the checkpoint from finishing.
            let old = self.open_connection(&path, Access::ReadWrite, None, None)?;
            let busy: i64 = old
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .map_err(sqlite_err(&path))?;
            old.close().map_err(|(_, e)| sqlite_err(&path)(e))?;
            if busy != 0 {
                return Err(CatalogError::Busy(name.to_owned()));
            }
            remove_sidecars(&path)?;
        }
        std::fs::rename(prepared, &path).map_err(|source| CatalogError::Io {
            action: "renaming into",
            path: path.clone(),
            source,
        })?;
        drop(sessions);
        self.sync_dir()
    }

    /// Bytes of every database's write-ahead log: what checkpoints may still add to the
    /// database files.
    pub fn log_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".sqlite-wal"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Every database's name, sorted: [`Catalog::list`] without the sizes (no `stat`).
    pub fn names(&self) -> Result<Vec<String>, CatalogError> {
        let io_err = |source| CatalogError::Io {
            action: "listing",
            path: self.dir.clone(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err)? {
            let file_name = entry.map_err(io_err)?.file_name();
            if let Some(name) = file_name.to_str().and_then(|n| n.strip_suffix(FILE_SUFFIX))
                && validate_name(name).is_ok()
            {
                out.push(name.to_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every database, sorted by name.
    pub fn list(&self) -> Result<Vec<DatabaseInfo>, CatalogError> {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(self
            .names()?
            .into_iter()
            .map(|name| {
                let path = self.path_of(&name);
                let wal = size(&PathBuf::from(format!("{}-wal", path.display())));
                DatabaseInfo {
                    size_bytes: size(&path) + wal,
                    wal_bytes: wal,
                    name,
                }
            })
            .collect())
    }

    /// Opens a connection for a session and registers the session as a user of the database.
    pub fn connect(&self, name: &str, access: Access) -> Result<(Connection, Lease), CatalogError> {
        self.connect_attaching(name, access, None)
    }

    /// A connection the server itself keeps to `name` (the continuous archiver's): not a
    /// session, so DROP DATABASE and RESTORE … WITH (replace) do not wait for it; its holder
    /// notices the file replaced or gone.
    pub fn open_unleased(&self, name: &str, access: Access) -> Result<Connection, CatalogError> {
        validate_name(name)?;
        let path = self.path_of(name);
        if !path.is_file() {
            return Err(CatalogError::NotFound(name.to_owned()));
        }
        self.open_connection(&path, access, None, None)
    }

    /// As [`Catalog::connect`], with another database file attached read-only as `schema`
    /// (clients cannot ATTACH; the server can, before the authorizer is installed).
    pub fn connect_attaching(
        &self,
        name: &str,
        access: Access,
        attach: Option<(&str, &Path)>,
    ) -> Result<(Connection, Lease), CatalogError> {
        let (conn, lease, _, _) = self.lease(name, access, attach, false)?;
        Ok((conn, lease))
    }

    /// A session's connection: as [`Catalog::connect_attaching`], with commits that share
    /// syncs of the log with the database's other sessions (see [`crate::group_commit`]).
    /// Before its client hears of a commit, the session waits on the returned
    /// [`PendingSync`] (none for read-only access).
    pub fn connect_session(
        &self,
        name: &str,
        access: Access,
        attach: Option<(&str, &Path)>,
    ) -> Result<SessionConnection, CatalogError> {
        let (conn, lease, unsynced, changes) = self.lease(name, access, attach, true)?;
        Ok(SessionConnection {
            conn,
            lease,
            unsynced,
            changes,
        })
    }

    /// The row changes sessions commit, for the plugins that subscribed.
    pub fn changes(&self) -> &Arc<ChangeFeed> {
        &self.changes
    }

    fn lease(
        &self,
        name: &str,
        access: Access,
        attach: Option<(&str, &Path)>,
        grouped: bool,
    ) -> Result<Leased, CatalogError> {
        validate_name(name)?;
        let mut sessions = lock(&self.sessions);
        let path = self.path_of(name);
        if !path.is_file() {
            return Err(CatalogError::NotFound(name.to_owned()));
        }
        let committed =
            (grouped && access == Access::ReadWrite).then(|| Arc::new(AtomicBool::new(false)));
        let capture = committed
            .is_some()
            .then(|| Capture::new(Arc::clone(&self.changes), name));
        let mut conn = self.open_connection(&path, access, committed.as_ref(), capture.as_ref())?;
        let pending = committed.map(|committed| self.wal_sync(&path, &conn, committed));
        if let Some(limit) = self.temp_storage_limit {
            // The temporary database's pages (4 KiB); past them, writes fail with SQLITE_FULL.
            let pages = i64::try_from(limit / 4096).unwrap_or(i64::MAX).max(1);
            conn.pragma_update(Some("temp"), "max_page_count", pages)
                .map_err(|source| CatalogError::Sqlite {
                    path: path.clone(),
                    source,
                })?;
        }
        if let Some((schema, file)) = attach {
            attach_read_only(&conn, schema, file)?;
        }
        conn.authorizer(Some(authorize))
            .map_err(|source| CatalogError::Sqlite {
                path: path.clone(),
                source,
            })?;
        *sessions.entry(name.to_owned()).or_default() += 1;
        Ok((
            conn,
            Lease {
                name: name.to_owned(),
                sessions: Arc::clone(&self.sessions),
                released: Arc::clone(&self.released),
            },
            pending,
            capture,
        ))
    }

    /// The log syncs of the database at `path`, shared by all its sessions. Kept for the
    /// server's life (one small entry per database written to), so that a failed sync is not
    /// forgotten when the database's sessions have all gone.
    fn wal_sync(&self, path: &Path, conn: &Connection, committed: Arc<AtomicBool>) -> PendingSync {
        // The log is named after the file as SQLite resolved it.
        let opened = conn.path().map_or_else(|| path.to_owned(), PathBuf::from);
        lock(&self.wal_syncs)
            .entry(path.to_owned())
            .or_insert_with(|| Arc::new(WalSync::new(&opened)))
            .connection(committed)
    }

    fn open_connection(
        &self,
        path: &Path,
        access: Access,
        grouped: Option<&Arc<AtomicBool>>,
        capture: Option<&Arc<Capture>>,
    ) -> Result<Connection, CatalogError> {
        let sqlite_err = |source| CatalogError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mode = match access {
            Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
            Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
        };
        let conn = Connection::open_with_flags(
            path,
            mode | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(sqlite_err)?;
        conn.busy_timeout(self.busy_timeout).map_err(sqlite_err)?;
        if access == Access::ReadWrite {
            // FULL: a commit is on disk when the client hears about it. A grouped connection
            // gets the same promise from its session, which waits for a shared sync.
            let synchronous = if grouped.is_some() { "NORMAL" } else { "FULL" };
            conn.pragma_update(None, "synchronous", synchronous)
                .map_err(sqlite_err)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite_err)?;
        if self.mmap_size > 0 {
            // Reads of pages in the map cost no system call and no copy into this
            // connection's own cache; every connection shares the kernel's page cache, as
            // PostgreSQL's backends share their buffers.
            conn.pragma_update(None, "mmap_size", self.mmap_size as i64)
                .map_err(sqlite_err)?;
        }
        let mut conn = conn;
        let database = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(FILE_SUFFIX));
        if let (Some(commits), Some(database)) = (&self.commits, database)
            && let Some(on_commit) = commits.observer(database, path)
        {
            conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, frames| {
                if on_commit(frames) {
                    // As SQLite's own automatic checkpoint does from this hook; a busy log
                    // is tried again at the next commit.
                    let _ = wal.checkpoint();
                }
                Ok(())
            }))
            .map_err(sqlite_err)?;
        }
        if let Some(committed) = grouped {
            // Not the WAL hook, which SQLite calls only when a statement steps to its end: a
            // statement reset earlier (a RETURNING result closed) commits in the reset.
            let on_commit = Arc::clone(committed);
            let captured = capture.cloned();
            conn.commit_hook(Some(move || {
                on_commit.store(true, Ordering::Release);
                if let Some(capture) = &captured {
                    capture.on_commit();
                }
                false
            }))
            .map_err(sqlite_err)?;
            // The commit hook runs before the commit is written: one that then fails (a full
            // disk, an I/O error) is rolled back, and has nothing to wait for.
            let on_rollback = Arc::clone(committed);
            let captured = capture.cloned();
            conn.rollback_hook(Some(move || {
                on_rollback.store(false, Ordering::Release);
                if let Some(capture) = &captured {
                    capture.on_rollback();
                }
            }))
            .map_err(sqlite_err)?;
        }
        Ok(conn)
    }

    /// Tells `observer` of every commit of the databases it watches, on every connection
    /// opened from now on.
    pub fn with_commit_observer(mut self, observer: Arc<dyn CommitObserver>) -> Catalog {
        self.commits = Some(observer);
        self
    }

    /// Maps up to `bytes` of each database file into memory on every connection opened
    /// from now on (SQLite's `mmap_size`; 0 reads with system calls only).
    pub fn with_mmap_size(mut self, bytes: u64) -> Catalog {
        self.mmap_size = bytes;
        self
    }

    /// Limits the temporary tables of each client connection opened from now on.
    pub fn with_temp_storage_limit(mut self, limit: Option<u64>) -> Catalog {
        self.temp_storage_limit = limit;
        self
    }

    /// The limit on one connection's temporary tables.
    pub fn temp_storage_limit(&self) -> Option<u64> {
        self.temp_storage_limit
    }

    /// How long a statement waits for another connection's lock, unless its session says.
    pub fn busy_timeout(&self) -> Duration {
        self.busy_timeout
    }

    /// Checkpoints every database's write-ahead log into its main file (used at shutdown).
    /// Returns the databases that could not be checkpointed, with why.
    pub fn checkpoint_all(&self) -> Vec<(String, String)> {
        let mut failures = Vec::new();
        let databases = match self.list() {
            Ok(list) => list,
            Err(e) => return vec![("*".into(), e.to_string())],
        };
        for db in databases {
            let path = self.path_of(&db.name);
            let result = self
                .open_connection(&path, Access::ReadWrite, None, None)
                .map_err(|e| e.to_string())
                .and_then(|conn| {
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                        row.get::<_, i64>(0)
                    })
                    .map_err(|e| e.to_string())
                });
            match result {
                Ok(0) => {}
                Ok(_) => failures.push((db.name, "a reader kept the log busy".into())),
                Err(e) => failures.push((db.name, e)),
            }
        }
        failures
    }

    fn sync_dir(&self) -> Result<(), CatalogError> {
        std::fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| CatalogError::Io {
                action: "syncing directory",
                path: self.dir.clone(),
                source,
            })
    }
}

/// An empty database in WAL mode at `path` (a new file, owner-only), synced.
fn make_empty_database(path: &Path) -> Result<(), CatalogError> {
    let sqlite_err = |source| CatalogError::Sqlite {
        path: path.to_owned(),
        source,
    };
    let io_err = |action| {
        move |source| CatalogError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    crate::new_file::create_new(path).map_err(io_err("creating"))?;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite_err)?;
    // WAL is persistent in the file: readers never block the writer, and a backup's read
    // transaction never blocks commits.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sqlite_err)?;
    conn.close().map_err(|(_, e)| sqlite_err(e))?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("syncing"))
}

/// Removes a database file's `-wal` and `-shm` companions (absent ones are fine).
fn remove_sidecars(path: &Path) -> Result<(), CatalogError> {
    for suffix in ["-wal", "-shm"] {
        let side = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(CatalogError::Io {
                    action: "removing",
                    path: side,
                    source,
                });
            }
        }
    }
    Ok(())
}

fn attach_read_only(conn: &Connection, schema: &str, file: &Path) -> Result<(), CatalogError> {
    // A URI, so the attachment is read-only whatever the session's own access is.
    let mut uri = String::from("file:");
    for c in file.display().to_string().chars() {
        match c {
            '%' | '?' | '#' => uri.push_str(&format!("%{:02X}", c as u32)),
            c => uri.push(c),
        }
    }
    uri.push_str("?mode=ro");
    conn.execute("ATTACH DATABASE ?1 AS ?2", [uri.as_str(), schema])
        .map(drop)
        .map_err(|source| CatalogError::Sqlite {
            path: file.to_owned(),
            source,
        })
}

/// SQLite's authorizer for client connections: no other files may be opened (ATTACH would
/// read or create any file the server can reach), and only the pragmas that act on the
/// client's own connection may be set (see `sql::pragmas`).
pub(crate) fn authorize(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { .. } | AuthAction::Detach { .. } => Authorization::Deny,
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } if !crate::sql::pragmas::allowed(pragma_name, pragma_value.is_some()) => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// The authorizer while a plain `VACUUM` is prepared: VACUUM rebuilds the file through a
/// temporary database that it attaches under the empty name, which a client's own ATTACH
/// may not do.
pub(crate) fn authorize_vacuum(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Attach { filename: "" } => Authorization::Allow,
        _ => authorize(ctx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> (tempfile::TempDir, Catalog) {
        let dir = tempfile::tempdir().unwrap();
        let disk = Arc::new(DataDisk::observing(dir.path()));
        let catalog = Catalog::open(dir.path(), Duration::from_secs(1), disk).unwrap();
        (dir, catalog)
    }

    #[test]
    fn path_tricks_and_odd_names_are_refused() {
        for name in ["", "../x", "/", "a/b", "A", "1abc", "a.b", &"x".repeat(64)] {
            assert!(validate_name(name).is_err(), "{name:?} was accepted");
        }
        for name in ["default", "a", "_x", "sales_2026", &"x".repeat(63)] {
            validate_name(name).unwrap();
        }
    }

    #[test]
    fn default_database_exists_in_wal_mode() {
        let (_dir, catalog) = catalog();
        let (conn, _lease) = catalog
            .connect(DEFAULT_DATABASE, Access::ReadWrite)
            .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn crash_during_create_database_leaves_no_half_made_database_under_its_name() {
        let (_dir, catalog) = catalog();
        catalog.create("sales").unwrap();
        // Complete under its own name: WAL in the header (bytes 18 and 19 are 2), owner-only.
        let path = catalog.path_of("sales");
        let header = std::fs::read(&path).unwrap();
        assert!(header.len() >= 100, "{} bytes", header.len());
        assert_eq!((header[18], header[19]), (2, 2), "not in WAL mode");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // Nothing else is left in the directory but the databases.
        let mut names: Vec<String> = std::fs::read_dir(catalog.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["default.sqlite", "sales.sqlite"]);
        // What a crash between the steps leaves is a temporary, which is not a database.
        make_empty_database(&catalog.dir().join(".cairn-tmp-x.create")).unwrap();
        let listed: Vec<String> = catalog
            .list()
            .unwrap()
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(listed, ["default", "sales"]);
    }

    #[test]
    fn drop_refuses_a_database_in_use_and_then_succeeds() {
        let (_dir, catalog) = catalog();
        catalog.create("sales").unwrap();
        let lease = catalog.connect("sales", Access::ReadOnly).unwrap();
        assert!(matches!(
            catalog.drop_database("sales", false),
            Err(CatalogError::InUse { sessions: 1, .. })
        ));
        drop(lease);
        assert!(catalog.drop_database("sales", false).unwrap());
        assert!(!catalog.drop_database("sales", true).unwrap());
        assert!(!catalog.path_of("sales").exists());
    }

    #[test]
    fn connections_map_the_configured_bytes_of_their_database() {
        let (dir, catalog) = catalog();
        let (conn, _lease) = catalog.connect(DEFAULT_DATABASE, Access::ReadOnly).unwrap();
        let mapped = |conn: &Connection| {
            conn.query_row("PRAGMA mmap_size", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(mapped(&conn), 0);
        let disk = Arc::new(DataDisk::observing(dir.path()));
        let catalog = Catalog::open(dir.path(), Duration::from_secs(1), disk)
            .unwrap()
            .with_mmap_size(64 << 20);
        let (conn, _lease) = catalog
            .connect(DEFAULT_DATABASE, Access::ReadWrite)
            .unwrap();
        assert_eq!(mapped(&conn), 64 << 20);
    }

    #[test]
    fn attach_and_server_managed_pragmas_are_denied() {
        let (dir, catalog) = catalog();
        let (mut conn, _lease) = catalog
            .connect(DEFAULT_DATABASE, Access::ReadWrite)
            .unwrap();
        let target = dir.path().join("stolen.db");
        let attach = format!("ATTACH DATABASE '{}' AS x", target.display());
        assert!(conn.execute_batch(&attach).is_err());
        assert!(!target.exists());
        assert!(conn.execute_batch("PRAGMA journal_mode = DELETE").is_err());
        assert!(conn.execute_batch("PRAGMA synchronous = OFF").is_err());
        assert!(conn.execute_batch("PRAGMA hard_heap_limit = 1").is_err());
        assert!(conn.execute_batch("PRAGMA soft_heap_limit = 1").is_err());
        assert!(conn.execute_batch("PRAGMA schema_version = 99").is_err());
        assert!(
            conn.execute_batch("PRAGMA cache_size = -100000000")
                .is_err()
        );
        conn.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        assert!(conn.execute_batch("VACUUM").is_err());
        assert!(conn.execute_batch("ATTACH '' AS scratch").is_err());
        conn.authorizer(Some(authorize_vacuum)).unwrap();
        conn.execute_batch("VACUUM").unwrap();
        conn.authorizer(Some(authorize)).unwrap();
        // Reading a managed pragma is fine.
        conn.query_row("PRAGMA synchronous", [], |r| r.get::<_, i64>(0))
            .unwrap();
    }

    #[test]
    fn vacuum_into_cannot_write_other_files() {
        let (dir, catalog) = catalog();
        let (conn, _lease) = catalog
            .connect(DEFAULT_DATABASE, Access::ReadWrite)
            .unwrap();
        let target = dir.path().join("copy.db");
        let vacuum = format!("VACUUM INTO '{}'", target.display());
        assert!(conn.execute_batch(&vacuum).is_err());
        assert!(!target.exists());
    }

    #[test]
    fn read_only_access_refuses_writes() {
        let (_dir, catalog) = catalog();
        let (conn, _lease) = catalog.connect(DEFAULT_DATABASE, Access::ReadOnly).unwrap();
        let err = conn.execute_batch("CREATE TABLE t(x)").unwrap_err();
        assert_eq!(err.sqlite_error_code(), Some(rusqlite::ErrorCode::ReadOnly));
    }
}
