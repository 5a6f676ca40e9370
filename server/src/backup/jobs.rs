//! Backups as jobs: at most one per database, each on its own thread, recorded in the history,
//! watchable and abortable. `BACKUP DATABASE` without `detached` starts a job and waits for it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cairn_plugin_api::EventKind;

use super::archive_reader::{ArchiveReader, Verified};
use super::archive_writer::{self, Written};
use super::error::BackupError;
use super::files::{self, TempFile};
use super::history::{History, Status};
use super::options::BackupOptions;
use super::paths::PathRules;
use super::progress::Progress;
use crate::catalog::{Access, Catalog};

/// Called with backup events (the server forwards them to plugins).
pub type EventSink = Box<dyn Fn(EventKind, &str, &str) + Send + Sync>;

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Complete(Written),
    Failed(String),
    Aborted,
}

#[derive(Debug, Default)]
struct Completion {
    outcome: Mutex<Option<Outcome>>,
    finished: Condvar,
}

impl Completion {
    fn set(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
        self.finished.notify_all();
    }

    fn wait(&self) -> Outcome {
        let mut guard = lock(&self.outcome);
        loop {
            if let Some(outcome) = guard.as_ref() {
                return outcome.clone();
            }
            guard = self.finished.wait(guard).unwrap_or_else(|p| p.into_inner());
        }
    }
}

#[derive(Debug)]
struct Running {
    id: i64,
    progress: Arc<Progress>,
    completion: Arc<Completion>,
}

/// A started job.
#[derive(Debug)]
pub struct Job {
    pub id: i64,
    pub database: String,
    started: Instant,
    completion: Arc<Completion>,
}

impl Job {
    /// Blocks until the job ends: the archive and how long it took, or why there is none.
    pub fn finished(&self) -> Result<(Written, Duration), BackupError> {
        match self.completion.wait() {
            Outcome::Complete(written) => Ok((written, self.started.elapsed())),
            Outcome::Aborted => Err(BackupError::JobAborted { id: self.id }),
            Outcome::Failed(message) => Err(BackupError::JobFailed {
                id: self.id,
                message,
            }),
        }
    }
}

/// What stopping a job found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It was running and is now aborted (its files removed).
    Aborted(i64),
    /// Nothing was running (or it had already ended).
    NotRunning(Option<i64>),
}

/// The server's backups.
pub struct Backups {
    catalog: Arc<Catalog>,
    history: History,
    rules: PathRules,
    busy: Duration,
    running: Mutex<HashMap<String, Running>>,
    events: OnceLock<EventSink>,
}

impl std::fmt::Debug for Backups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backups")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Backups {
    /// Opens the history and removes temporary files a crash left in the backup directories
    /// and the database directory. Call once, before anything can start a backup.
    pub fn open(
        catalog: Arc<Catalog>,
        data_dir: &Path,
        rules: PathRules,
        busy: Duration,
    ) -> Result<Backups, BackupError> {
        std::fs::create_dir_all(&rules.directory).map_err(|source| BackupError::Io {
            action: "creating the backup directory",
            path: rules.directory.clone(),
            source,
        })?;
        let history = History::open(data_dir)?;
        // Interrupted jobs may have written into subdirectories of the roots (a plugin's
        // target directory): their temporaries lie beside their targets.
        let beside_interrupted = history
            .interrupted()
            .iter()
            .filter_map(|target| target.parent())
            .filter(|dir| rules.roots().any(|root| dir.starts_with(root)))
            .map(Path::to_owned);
        let mut dirs: Vec<PathBuf> = rules
            .roots()
            .map(Path::to_owned)
            .chain([catalog.dir().to_owned()])
            .chain(beside_interrupted)
            .collect();
        dirs.sort();
        dirs.dedup();
        for dir in dirs {
            for removed in files::remove_stale_temp_files(&dir) {
                tracing::warn!(path = %removed.display(), "removed a temporary file left by an interrupted backup or restore");
            }
        }
        Ok(Backups {
            catalog,
            history,
            rules,
            busy,
            running: Mutex::default(),
            events: OnceLock::new(),
        })
    }

    /// Where backup events go; set once, when plugins are up.
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }

    pub fn rules(&self) -> &PathRules {
        &self.rules
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    fn emit(&self, kind: EventKind, database: &str, detail: &str) {
        if let Some(sink) = self.events.get() {
            sink(kind, database, detail);
        }
    }

    /// The running backup of `database`, if any.
    pub fn running_id(&self, database: &str) -> Option<i64> {
        lock(&self.running).get(database).map(|r| r.id)
    }

    /// Starts backing up `database` to the archive `requested` (resolved by the path rules).
    pub fn start(
        self: &Arc<Self>,
        database: &str,
        requested: &str,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        let target = match self.rules.archive_target(requested) {
            Ok(target) => target,
            // The request was sound but the file system refused: that is a failed backup,
            // and an unattended caller finds it in the history like any other.
            Err(e @ BackupError::Io { .. }) if self.catalog.exists(database) => {
                let message = e.to_string();
                tracing::error!(database, error = %message, "backup failed before it started");
                self.emit(EventKind::BackupFailed, database, &message);
                if let Err(recording) = self.history.failed_to_start(
                    database,
                    "backup",
                    requested,
                    &message,
                    requested_by,
                ) {
                    tracing::error!(error = %recording, "could not record a failed backup in the history");
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        self.start_at(database, target, options, requested_by)
    }

    /// As [`Self::start`], with the target path already decided (trusted callers).
    pub fn start_at(
        self: &Arc<Self>,
        database: &str,
        target: PathBuf,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        let mut running = lock(&self.running);
        if let Some(job) = running.get(database) {
            return Err(BackupError::AlreadyRunning {
                database: database.to_owned(),
                id: job.id,
            });
        }
        // Opening the source now reports a missing database before a job exists, and the
        // lease keeps DROP DATABASE away until the job ends.
        let (source, lease) = self.catalog.connect(database, Access::ReadOnly)?;
        let id = self
            .history
            .start(database, "backup", &target, requested_by)?;
        let progress = Arc::new(Progress::default());
        let completion = Arc::new(Completion::default());
        running.insert(
            database.to_owned(),
            Running {
                id,
                progress: Arc::clone(&progress),
                completion: Arc::clone(&completion),
            },
        );
        drop(running);
        tracing::info!(id, database, path = %target.display(), level = options.compression_level, by = requested_by, "backup started");
        self.emit(
            EventKind::BackupStarted,
            database,
            &target.display().to_string(),
        );

        let job = Job {
            id,
            database: database.to_owned(),
            started: Instant::now(),
            completion: Arc::clone(&completion),
        };
        let this = Arc::clone(self);
        let database = database.to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("backup-{id}"))
            .spawn(move || {
                let result = this.run(id, &source, &database, &target, &options, &progress);
                drop(source);
                drop(lease);
                this.finish(id, &database, result, &completion);
            });
        if let Err(e) = spawned {
            let outcome = Outcome::Failed(format!("cannot start a backup thread: {e}"));
            lock(&self.running).remove(&job.database);
            let _ = self
                .history
                .finish(id, Status::Failed, None, Some(&e.to_string()));
            job.completion.set(outcome);
        }
        Ok(job)
    }

    fn run(
        &self,
        id: i64,
        source: &rusqlite::Connection,
        database: &str,
        target: &Path,
        options: &BackupOptions,
        progress: &Progress,
    ) -> Result<Written, BackupError> {
        // Progress goes to the history about once a second, from a watcher thread.
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let watcher = scope.spawn(|| {
                let mut last = -1.0;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::park_timeout(Duration::from_secs(1));
                    let percent = progress.percent();
                    if percent != last {
                        let _ = self.history.progress(id, percent);
                        last = percent;
                    }
                }
            });
            let result =
                archive_writer::write(source, database, target, options, self.busy, progress);
            done.store(true, std::sync::atomic::Ordering::Release);
            watcher.thread().unpark();
            result
        })
    }

    fn finish(
        &self,
        id: i64,
        database: &str,
        result: Result<Written, BackupError>,
        completion: &Completion,
    ) {
        let (outcome, recorded) = match result {
            Ok(written) => {
                tracing::info!(id, database, path = %written.path.display(), bytes = written.bytes, "backup complete");
                self.emit(
                    EventKind::BackupFinished,
                    database,
                    &written.path.display().to_string(),
                );
                let recorded = self
                    .history
                    .finish(id, Status::Complete, Some(written.bytes), None);
                (Outcome::Complete(written), recorded)
            }
            Err(BackupError::Aborted) => {
                tracing::info!(id, database, "backup aborted");
                self.emit(EventKind::BackupFailed, database, "aborted");
                let recorded = self
                    .history
                    .finish(id, Status::Aborted, None, Some("aborted"));
                (Outcome::Aborted, recorded)
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(id, database, error = %message, "backup failed");
                self.emit(EventKind::BackupFailed, database, &message);
                let recorded = self
                    .history
                    .finish(id, Status::Failed, None, Some(&message));
                (Outcome::Failed(message), recorded)
            }
        };
        if let Err(e) = recorded {
            tracing::error!(id, error = %e, "could not record the end of a backup in the history");
        }
        lock(&self.running).remove(database);
        completion.set(outcome);
    }

    /// Aborts the running backup of `database` and waits until it has cleaned up.
    pub fn abort_database(&self, database: &str) -> Stopped {
        let found = lock(&self.running)
            .get(database)
            .map(|r| (r.id, Arc::clone(&r.progress), Arc::clone(&r.completion)));
        match found {
            None => Stopped::NotRunning(None),
            Some((id, progress, completion)) => {
                progress.cancel();
                match completion.wait() {
                    Outcome::Aborted => Stopped::Aborted(id),
                    _ => Stopped::NotRunning(Some(id)),
                }
            }
        }
    }

    /// Aborts backup `id` wherever it runs. `None`: no backup has that id.
    pub fn cancel(&self, id: i64) -> Result<Option<Stopped>, BackupError> {
        let database = lock(&self.running)
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(db, _)| db.clone());
        match database {
            Some(database) => Ok(Some(self.abort_database(&database))),
            None => Ok(self
                .history
                .get(id)?
                .filter(|r| r.kind == "backup")
                .map(|_| Stopped::NotRunning(Some(id)))),
        }
    }

    /// Aborts every running backup and waits for them (shutdown).
    pub fn abort_all(&self) {
        let databases: Vec<String> = lock(&self.running).keys().cloned().collect();
        for database in databases {
            if let Stopped::Aborted(id) = self.abort_database(&database) {
                tracing::warn!(id, %database, "backup aborted by shutdown");
            }
        }
    }

    /// Verifies the archive `requested` and restores it as database `name`: a new database,
    /// or with `replace` an existing one that no session uses, swapped in atomically. The
    /// existing database is untouched when anything fails.
    pub fn restore(
        &self,
        name: &str,
        requested: &str,
        replace: bool,
        requested_by: &str,
    ) -> Result<Verified, BackupError> {
        let source = self.rules.archive_source(requested)?;
        crate::catalog::validate_name(name)?;
        if !replace && self.catalog.exists(name) {
            return Err(crate::catalog::CatalogError::AlreadyExists(name.to_owned()).into());
        }
        if let Some(id) = self.running_id(name) {
            return Err(BackupError::AlreadyRunning {
                database: name.to_owned(),
                id,
            });
        }
        let id = self.history.start(name, "restore", &source, requested_by)?;
        tracing::info!(id, database = name, path = %source.display(), replace, by = requested_by, "restore started");
        let result = restore_into(&self.catalog, &source, name, replace, &Progress::default());
        let recorded = match &result {
            Ok(verified) => {
                tracing::info!(
                    id,
                    database = name,
                    bytes = verified.database_bytes,
                    "restore complete"
                );
                self.history
                    .finish(id, Status::Complete, Some(verified.database_bytes), None)
            }
            Err(e) => {
                tracing::error!(id, database = name, error = %e, "restore failed; the existing database (if any) is untouched");
                self.history
                    .finish(id, Status::Failed, None, Some(&e.to_string()))
            }
        };
        if let Err(e) = recorded {
            tracing::error!(id, error = %e, "could not record the end of a restore in the history");
        }
        result
    }
}

/// Verifies `archive` and installs its database as `name` in `catalog`.
pub fn restore_into(
    catalog: &Catalog,
    archive: &Path,
    name: &str,
    replace: bool,
    progress: &Progress,
) -> Result<Verified, BackupError> {
    crate::catalog::validate_name(name)?;
    let mut reader = ArchiveReader::open(archive)?;
    let temp = TempFile::in_dir(catalog.dir(), ".restore");
    let verified = reader.extract_database(temp.path(), progress)?;
    catalog.install(name, temp.path(), replace)?;
    // The file now lives under its final name; nothing is left to remove.
    temp.keep();
    Ok(verified)
}
