//! Backups, exports and imports as jobs: at most one per database, recorded in the history,
//! watchable and abortable. A backup or an export runs on its own thread (`BACKUP DATABASE`
//! without `detached` starts one and waits for it); an import runs on its caller's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use cairn_plugin_api::EventKind;

use super::archive_reader::{ArchiveReader, Verified};
use super::archive_writer::{self, Written};
use super::archives::{self, Archive};
use super::chain::{self, AnyArchive};
use super::destination::{Destinations, Location, Target};
use super::encryption::Keyring;
use super::error::BackupError;
use super::files::{self, TempFile};
use super::history::{History, Status};
use super::incremental::DigestCache;
use super::manifest;
use super::options::BackupOptions;
use super::paths::PathRules;
use super::progress::Progress;
use crate::catalog::{Access, Catalog};
use crate::export::{self, Exported, Imported};

/// Called with backup events (the server forwards them to plugins).
pub type EventSink = Box<dyn Fn(EventKind, &str, &str) + Send + Sync>;

/// What a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A ZIP archive of the storage (`BACKUP DATABASE`).
    Backup,
    /// A gzip JSON-lines export (`EXPORT DATABASE`).
    Export,
}

impl Kind {
    /// As the history's `kind` column spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Backup => "backup",
            Kind::Export => "export",
        }
    }
}

/// What a finished job made.
#[derive(Debug, Clone)]
pub enum Product {
    Archive(Written),
    Export(Exported),
    Import(Imported),
    /// A database restored (what its archive held, as verified).
    Restore(Box<Verified>),
}

impl Product {
    /// The file written or read.
    pub fn path(&self) -> &Path {
        match self {
            Product::Archive(w) => &w.path,
            Product::Export(e) => &e.path,
            Product::Import(_) | Product::Restore(_) => Path::new(""),
        }
    }

    /// The snapshot instant of an archive (RFC 3339, UTC).
    pub fn created_at(&self) -> Option<&str> {
        match self {
            Product::Archive(w) => Some(&w.manifest.created_at),
            Product::Export(_) | Product::Import(_) => None,
            Product::Restore(v) => Some(&v.manifest.created_at),
        }
    }

    /// Bytes of the file written.
    pub fn bytes(&self) -> u64 {
        match self {
            Product::Archive(w) => w.bytes,
            Product::Export(e) => e.bytes,
            Product::Import(i) => i.bytes,
            Product::Restore(v) => v.database_bytes,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Complete(Box<Product>),
    Failed(String),
    Aborted,
    /// Stopped at its timeout (the job's options), after this long.
    TimedOut(Duration),
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
    /// As the history's `kind` column spells it.
    kind: &'static str,
    progress: Arc<Progress>,
    completion: Arc<Completion>,
}

/// A started job.
#[derive(Debug)]
pub struct Job {
    pub id: i64,
    pub kind: Kind,
    pub database: String,
    started: Instant,
    completion: Arc<Completion>,
}

impl Job {
    /// Whether the job has ended ([`Job::finished`] then returns at once).
    pub fn is_done(&self) -> bool {
        lock(&self.completion.outcome).is_some()
    }

    /// Blocks until the job ends: what it made and how long it took, or why there is none.
    pub fn finished(&self) -> Result<(Product, Duration), BackupError> {
        match self.completion.wait() {
            Outcome::Complete(product) => Ok((*product, self.started.elapsed())),
            Outcome::Aborted => Err(BackupError::JobAborted {
                kind: self.kind.as_str(),
                id: self.id,
            }),
            Outcome::Failed(message) => Err(BackupError::JobFailed {
                kind: self.kind.as_str(),
                id: self.id,
                message,
            }),
            Outcome::TimedOut(after) => Err(BackupError::JobTimedOut {
                kind: self.kind.as_str(),
                id: self.id,
                after,
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

/// The history's kind of a restore drill.
pub const DRILL: &str = "drill";

/// What a restore drill proved.
#[derive(Debug, Clone)]
pub struct Drilled {
    pub database: String,
    pub created_at: String,
    pub tables: u64,
    pub rows: u64,
    /// Whether the manifest recorded row counts to compare with.
    pub counted: bool,
    /// Of the database restored (or, of an export, of the file).
    pub bytes: u64,
}

impl Drilled {
    fn of(checked: Checked) -> Drilled {
        match checked {
            Checked::Archive(verified) => {
                let m = verified.manifest;
                let counted = m.row_counts.is_some();
                let counts = m.row_counts.unwrap_or_default();
                Drilled {
                    counted,
                    database: m.database,
                    created_at: m.created_at,
                    tables: counts.len() as u64,
                    rows: counts.values().sum(),
                    bytes: verified.database_bytes,
                }
            }
            Checked::Export(read) => Drilled {
                database: read.header.database,
                created_at: read.header.created_at,
                tables: read.header.tables,
                rows: read.header.rows,
                counted: true,
                bytes: read.bytes,
            },
        }
    }
}

/// The server's backups.
pub struct Backups {
    catalog: Arc<Catalog>,
    history: History,
    rules: PathRules,
    destinations: Destinations,
    busy: Duration,
    running: Mutex<HashMap<String, Running>>,
    events: OnceLock<EventSink>,
    /// Page digests of the images archived `INTO` collections (for their increments).
    digests: DigestCache,
    /// `[backup] default_destination`: where `BACKUP DATABASE [name]` with no `TO` writes.
    default_destination: Option<String>,
    /// `[backup.keys.NAME]`: what encrypted archives are written and read with.
    keys: Keyring,
}

/// A backup `INTO` a collection: always summed page by page (for the next increment); with a
/// parent, only the pages changed since it.
#[derive(Debug, Clone)]
struct IntoCollection {
    /// Where the parent is, as SQL names it.
    parent: Option<String>,
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
        destinations: Destinations,
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
            destinations,
            busy,
            running: Mutex::default(),
            events: OnceLock::new(),
            digests: DigestCache::new(data_dir.join("system").join("page-digests")),
            default_destination: None,
            keys: Keyring::default(),
        })
    }

    /// With `[backup.keys.NAME]`, read.
    pub fn with_keys(mut self, keys: Keyring) -> Backups {
        self.keys = keys;
        self
    }

    /// The configured keys.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// With `[backup] default_destination`.
    pub fn with_default_destination(mut self, collection: Option<String>) -> Backups {
        self.default_destination = collection;
        self
    }

    /// The collection `BACKUP DATABASE [name]` with no `TO` writes to (QuestDB's form): a new
    /// full archive there, named by the database and its snapshot time.
    pub fn default_destination(&self) -> Result<&str, BackupError> {
        self.default_destination
            .as_deref()
            .ok_or(BackupError::NoDefaultDestination)
    }

    /// Where backup events go; set once, when plugins are up.
    pub fn set_event_sink(&self, sink: EventSink) {
        let _ = self.events.set(sink);
    }

    pub fn rules(&self) -> &PathRules {
        &self.rules
    }

    /// The configured object-storage destinations.
    pub fn destinations(&self) -> &Destinations {
        &self.destinations
    }

    /// What archives exist where `requested` points (see [`archives::list`]).
    pub fn archives(&self, requested: &str, verify: bool) -> Result<Vec<Archive>, BackupError> {
        archives::list(
            &self.rules,
            &self.destinations,
            requested,
            verify.then_some(&self.keys),
        )
    }

    /// Verifies the archive or export `requested` (a file by the path rules, or `NAME:key`)
    /// as `cairn verify` does: every entry or line, and for an archive SQLite's integrity
    /// check of the database, extracted into a scratch file that is removed afterwards.
    pub fn verify(&self, requested: &str) -> Result<Checked, BackupError> {
        let progress = Progress::default();
        match self.destinations.resolve(requested)? {
            Location::Local(path) => {
                let source = self.rules.archive_source(path)?;
                if export::looks_like_export(&source) {
                    return export::reader::verify(&source, &progress).map(Checked::Export);
                }
            }
            Location::Object { destination, key } => {
                if key.ends_with(".json.gz") {
                    let shown = PathBuf::from(destination.display(key));
                    let reader = destination.open(key)?;
                    let bytes = reader.size();
                    return export::reader::verify_from(reader, bytes, &shown, &progress)
                        .map(Checked::Export);
                }
            }
        }
        let mut archive = self.open_archive(requested)?;
        if archive.manifest.kind == manifest::EXPORT {
            return export::sealed::verify(&mut archive, &progress).map(Checked::Export);
        }
        if archive.manifest.kind != manifest::INCREMENTAL {
            return archive
                .verify_near(&self.rules.directory, &progress)
                .map(Checked::Archive);
        }
        // An increment is as good as its chain: rebuilt whole into a scratch file.
        let scratch = self.scratch()?;
        let opener = |at: &str| self.open_archive(at);
        chain::rebuild(
            archive,
            requested,
            &opener,
            &scratch.path().join("database.sqlite"),
            &progress,
            chain::Proof::EveryLink,
        )
        .map(Checked::Archive)
    }

    /// A restore drill of the archive at `location`, which must be of `database`: everything
    /// [`Self::verify`] proves (a scratch restore, SQLite's integrity check, every table's
    /// rows against the manifest's counts), recorded in the history as kind `drill`.
    pub fn drill(
        &self,
        database: &str,
        location: &str,
        requested_by: &str,
    ) -> Result<Drilled, BackupError> {
        let id = self
            .history
            .start(database, DRILL, Path::new(location), requested_by)?;
        let outcome = self.verify(location).and_then(|checked| {
            let drilled = Drilled::of(checked);
            if drilled.database != database {
                return Err(BackupError::InvalidOption(format!(
                    "{location} holds database \"{}\", not \"{database}\"; drill an archive of \"{database}\"",
                    drilled.database
                )));
            }
            Ok(drilled)
        });
        let recorded = match &outcome {
            Ok(drilled) => self
                .history
                .finish(id, Status::Complete, Some(drilled.bytes), None),
            Err(e) => self
                .history
                .finish(id, Status::Failed, None, Some(&e.to_string())),
        };
        if let Err(e) = recorded {
            tracing::error!(id, error = %e, "recording a drill's outcome in the backup history");
        }
        // Whoever asked for the drill alerts on its failure (the automatic-backup plugin
        // raises an alert): a failed drill is no failed backup.
        outcome
    }

    /// A scratch directory in the backup directory, removed when dropped.
    fn scratch(&self) -> Result<tempfile::TempDir, BackupError> {
        tempfile::Builder::new()
            .prefix(files::TEMP_PREFIX)
            .tempdir_in(&self.rules.directory)
            .map_err(|source| BackupError::Io {
                action: "creating a scratch directory in",
                path: self.rules.directory.clone(),
                source,
            })
    }

    /// Deletes the archive or export `requested` (a file by the path rules, or `NAME:key`;
    /// only `.zip` and `.json.gz` names); `false` when there was nothing there.
    pub fn delete_archive(&self, requested: &str, requested_by: &str) -> Result<bool, BackupError> {
        let refused = || {
            BackupError::PathRefused(format!(
                "'{requested}' is not an archive (.zip) or an export (.json.gz); only those are deleted"
            ))
        };
        let named_like_one = |name: &str| name.ends_with(".zip") || name.ends_with(".json.gz");
        let deleted = match self.destinations.resolve(requested)? {
            Location::Local(path) => {
                if !named_like_one(path) {
                    return Err(refused());
                }
                // A temporary file is a backup in progress, never an archive to delete.
                files::refuse_reserved(Path::new(path))?;
                let file = match self.rules.archive_source(path) {
                    Ok(file) => file,
                    Err(BackupError::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::NotFound =>
                    {
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                match std::fs::remove_file(&file) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                    Err(source) => {
                        return Err(BackupError::Io {
                            action: "deleting",
                            path: file,
                            source,
                        });
                    }
                }
                files::sync_dir(file.parent().unwrap_or(Path::new(".")))?;
                true
            }
            Location::Object { destination, key } => {
                if !named_like_one(key) {
                    return Err(refused());
                }
                if destination.head(key)?.is_none() {
                    return Ok(false);
                }
                destination.delete(key)?;
                true
            }
        };
        tracing::info!(location = requested, by = requested_by, "archive deleted");
        Ok(deleted)
    }

    /// The newest archive of `database` where `requested` points (see [`archives::latest`]).
    pub fn latest(
        &self,
        requested: &str,
        database: &str,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<Archive, BackupError> {
        archives::latest(&self.rules, &self.destinations, requested, database, as_of)
    }

    /// The parent of a backup into a collection, made ready before its snapshot is taken
    /// (see [`chain::prepare_parent`]).
    fn prepare_parent(
        &self,
        into: Option<&IntoCollection>,
        progress: &Progress,
    ) -> Result<Option<chain::ReadyParent>, BackupError> {
        let Some(at) = into.and_then(|into| into.parent.as_deref()) else {
            return Ok(None);
        };
        let opener = |at: &str| self.open_archive(at);
        chain::prepare_parent(&self.digests, at, &opener, &self.rules.directory, progress).map(Some)
    }

    /// The archive at `location` (a file by the path rules, or `NAME:key`), opened and its
    /// manifest checked.
    pub fn open_archive(&self, location: &str) -> Result<AnyArchive<'_>, BackupError> {
        match self.destinations.resolve(location)? {
            Location::Local(path) => {
                let source = self.rules.archive_source(path)?;
                let file = std::fs::File::open(&source).map_err(|e| BackupError::Io {
                    action: "opening",
                    path: source.clone(),
                    source: e,
                })?;
                let reader: Box<dyn chain::ReadSeek> = Box::new(std::io::BufReader::new(file));
                Ok(ArchiveReader::from_reader(reader, &source)?.unlock(&self.keys))
            }
            Location::Object { destination, key } => {
                let shown = PathBuf::from(destination.display(key));
                // The client this server keeps, so that the reader may outlive this call.
                let destination = self.destinations.get(destination.name()).ok_or_else(|| {
                    BackupError::UnknownDestination {
                        name: destination.name().to_owned(),
                        known: self.destinations.names().join(", "),
                    }
                })?;
                let reader: Box<dyn chain::ReadSeek + '_> = Box::new(destination.open(key)?);
                Ok(ArchiveReader::from_reader(reader, &shown)?.unlock(&self.keys))
            }
        }
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Raises an alert about `database`: logged at error level and sent to the plugins
    /// subscribed to alerts.
    pub fn alert(&self, database: &str, message: &str) {
        tracing::error!(database, alert = true, "{message}");
        self.emit(EventKind::Alert, database, message);
    }

    fn emit(&self, kind: EventKind, database: &str, detail: &str) {
        if let Some(sink) = self.events.get() {
            sink(kind, database, detail);
        }
    }

    /// The job table, provided `database` has no job running.
    fn claim(
        &self,
        database: &str,
    ) -> Result<MutexGuard<'_, HashMap<String, Running>>, BackupError> {
        let running = lock(&self.running);
        match running.get(database) {
            Some(job) => Err(BackupError::AlreadyRunning {
                database: database.to_owned(),
                id: job.id,
                kind: job.kind,
            }),
            None => Ok(running),
        }
    }

    /// The running job of `database`, if any: its id and kind.
    pub fn running_job(&self, database: &str) -> Option<(i64, &'static str)> {
        lock(&self.running).get(database).map(|r| (r.id, r.kind))
    }

    /// Starts backing up `database` to the archive `requested` (resolved by the path rules).
    pub fn start(
        self: &Arc<Self>,
        database: &str,
        requested: &str,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        self.start_kind(Kind::Backup, database, requested, options, requested_by)
    }

    /// Starts a backup or an export of `database` to `requested` (resolved by the path rules).
    pub fn start_kind(
        self: &Arc<Self>,
        kind: Kind,
        database: &str,
        requested: &str,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        if kind == Kind::Export {
            export::writer::check_options(&options)?;
            if options.key_name.is_some() && !requested.ends_with(".zip") {
                return Err(BackupError::InvalidOption(format!(
                    "an encrypted export is a ZIP holding the export file (export.json.gz): name it with .zip, such as '{}.export.zip'",
                    database
                )));
            }
        }
        let target = self.target_of(kind, database, requested, requested_by)?;
        self.start_target(kind, database, target, options, requested_by, None)
    }

    /// Starts a backup of `database` into the collection at `location` (a directory by the
    /// path rules, or `NAME:prefix`): a new archive named by the time it starts,
    /// `<database>-<UTC time>-full.zip`, or with `incremental` `…-incr.zip` holding only the
    /// pages changed since the newest archive of the database there.
    pub fn start_into(
        self: &Arc<Self>,
        database: &str,
        location: &str,
        incremental: bool,
        full_when_empty: bool,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        let newest = incremental.then(|| {
            archives::latest_member(&self.rules, &self.destinations, location, database)
                .map(|newest| newest.location)
        });
        self.start_member(
            database,
            location,
            newest,
            full_when_empty,
            options,
            requested_by,
        )
    }

    /// A backup into a collection as an increment on `parent` (a file name in it), chosen by
    /// the caller (the automatic-backup plugin picks the newest archive of its own ledger).
    pub fn start_increment_on(
        self: &Arc<Self>,
        database: &str,
        location: &str,
        parent: &str,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        if !chain::is_plain_archive_name(parent) {
            return Err(BackupError::InvalidOption(format!(
                "parent {parent:?} is not the plain file name of an archive in the collection (name.zip, no directory)"
            )));
        }
        let at = chain::in_collection(location, parent);
        let chosen = self.open_archive(&at).and_then(|archive| {
            if archive.manifest.database == database {
                Ok(at.clone())
            } else {
                Err(BackupError::PathRefused(format!(
                    "{at} is an archive of database {:?}, not of {database:?}: an increment builds on an archive of its own database",
                    archive.manifest.database
                )))
            }
        });
        self.start_member(
            database,
            location,
            Some(chosen),
            false,
            options,
            requested_by,
        )
    }

    /// Starts a backup into the collection at `location`, on the parent found (or none).
    fn start_member(
        self: &Arc<Self>,
        database: &str,
        location: &str,
        newest: Option<Result<String, BackupError>>,
        full_when_empty: bool,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        // A collection's archives are the database's restorable points: whole databases.
        if options.tables.is_some() {
            return Err(BackupError::InvalidOption(
                "a table-level backup goes TO a file of its own; a collection (INTO, the default destination) holds whole databases, which FROM LATEST restores".into(),
            ));
        }
        let parent = match newest {
            None => None,
            Some(Ok(newest)) => Some(newest),
            // OrientDB's -incremental into an empty directory takes the full one.
            Some(Err(BackupError::NoArchive { .. })) if full_when_empty => None,
            Some(Err(BackupError::NoArchive {
                database, location, ..
            })) => {
                return Err(BackupError::NoArchive {
                    as_of: Some(format!(
                        " for an increment to build on (BACKUP DATABASE {database} INTO {location} takes the full one first)"
                    )),
                    database,
                    location,
                });
            }
            Some(Err(e)) => {
                return Err(self.failed_before_start(
                    Kind::Backup,
                    database,
                    location,
                    requested_by,
                    e,
                ));
            }
        };
        let incremental = parent.is_some();
        let name = chain::member_name(database, incremental, chrono::Utc::now());
        // Beside its parent, where a reader will look for it: the same directory however the
        // location was written.
        let requested = match &parent {
            Some(parent) => chain::sibling(parent, &name),
            None => chain::in_collection(location, &name),
        };
        let target = self.target_of(Kind::Backup, database, &requested, requested_by)?;
        self.start_target(
            Kind::Backup,
            database,
            target,
            options,
            requested_by,
            Some(IntoCollection { parent }),
        )
    }

    /// Where `requested` puts a new file: a path by the rules, or an object not yet there.
    fn target_of(
        &self,
        kind: Kind,
        database: &str,
        requested: &str,
        requested_by: &str,
    ) -> Result<Target, BackupError> {
        let requested = match self.destinations.resolve(requested)? {
            Location::Local(path) => path,
            Location::Object { destination, key } => {
                // Checked before a job exists, as a local name is.
                let taken = match destination.head(key) {
                    Ok(None) => None,
                    Ok(Some(_)) => Some(BackupError::TargetExists {
                        path: destination.display(key).into(),
                    }),
                    Err(e) => Some(e),
                };
                if let Some(e) = taken {
                    return Err(self.failed_before_start(
                        kind,
                        database,
                        requested,
                        requested_by,
                        e,
                    ));
                }
                return Ok(Target::Object {
                    destination,
                    key: key.to_owned(),
                });
            }
        };
        match self.rules.archive_target(requested) {
            Ok(target) => Ok(Target::File(target)),
            Err(e) => Err(self.failed_before_start(kind, database, requested, requested_by, e)),
        }
    }

    /// A request that was sound but whose target the file system or the store refused, or
    /// whose name is taken, is a failed attempt: an unattended caller finds it in the history
    /// like any other. Returns `e`.
    fn failed_before_start(
        &self,
        kind: Kind,
        database: &str,
        requested: &str,
        requested_by: &str,
        e: BackupError,
    ) -> BackupError {
        let recorded = matches!(
            e,
            BackupError::Io { .. }
                | BackupError::TargetExists { .. }
                | BackupError::Destination { .. }
        );
        if !recorded || !self.catalog.exists(database) {
            return e;
        }
        let message = e.to_string();
        tracing::error!(database, kind = kind.as_str(), error = %message, "failed before it started");
        self.emit(EventKind::BackupFailed, database, &message);
        if let Err(recording) =
            self.history
                .failed_to_start(database, kind.as_str(), requested, &message, requested_by)
        {
            tracing::error!(error = %recording, "could not record a failed backup in the history");
        }
        e
    }

    /// As [`Self::start_kind`], with the target path already decided (trusted callers).
    pub fn start_at(
        self: &Arc<Self>,
        kind: Kind,
        database: &str,
        target: PathBuf,
        options: BackupOptions,
        requested_by: &str,
    ) -> Result<Job, BackupError> {
        self.start_target(
            kind,
            database,
            Target::File(target),
            options,
            requested_by,
            None,
        )
    }

    fn start_target(
        self: &Arc<Self>,
        kind: Kind,
        database: &str,
        target: Target,
        options: BackupOptions,
        requested_by: &str,
        into: Option<IntoCollection>,
    ) -> Result<Job, BackupError> {
        let shown = target.display();
        let mut options = options;
        options.resolve_key(&self.keys)?;
        let mut running = self.claim(database)?;
        // Opening the source now reports a missing database before a job exists, and the
        // lease keeps DROP DATABASE away until the job ends.
        let (source, lease) = self.catalog.connect(database, Access::ReadOnly)?;
        // A table-level backup's names and keys are refused now, not by a failed job.
        if let Some(filter) = &options.tables {
            super::tables::kept(&source, filter, database, &shown)?;
        }
        let id = self
            .history
            .start(database, kind.as_str(), &shown, requested_by)?;
        let (progress, completion) = register(&mut running, database, id, kind.as_str());
        drop(running);
        if let Some(timeout) = options.timeout {
            progress.set_timeout(timeout);
        }
        tracing::info!(id, database, kind = kind.as_str(), path = %shown.display(), level = options.compression_level, by = requested_by, "started");
        self.emit(
            EventKind::BackupStarted,
            database,
            &shown.display().to_string(),
        );

        let job = Job {
            id,
            kind,
            database: database.to_owned(),
            started: Instant::now(),
            completion: Arc::clone(&completion),
        };
        let this = Arc::clone(self);
        let database = database.to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("{}-{id}", kind.as_str()))
            .spawn(move || {
                // An increment reads its snapshot where it is instead of copying it first,
                // unless it is paced: its read transaction lasts the whole job.
                let live = into.as_ref().is_some_and(|into| into.parent.is_some())
                    && options.max_rate.is_none();
                let result = this.reporting_progress(id, &progress, || {
                    let parent = this.prepare_parent(into.as_ref(), &progress)?;
                    let plan =
                        |image: &mut super::snapshot::Image,
                         snapshot: &super::snapshot::Snapshot| {
                            match &into {
                                None => Ok(archive_writer::Body::Full),
                                Some(_) => chain::plan(
                                    &this.digests,
                                    parent.as_ref(),
                                    image,
                                    snapshot,
                                    &progress,
                                ),
                            }
                        };
                    match (kind, &target) {
                        (Kind::Backup, Target::File(path)) => archive_writer::write_planned(
                            &source, &database, path, &options, this.busy, &progress, &plan, live,
                        )
                        .map(Product::Archive),
                        (Kind::Backup, Target::Object { destination, key }) => {
                            archive_writer::write_to_object(
                                &source,
                                &database,
                                destination,
                                key,
                                &this.rules.directory,
                                &options,
                                this.busy,
                                &progress,
                                &plan,
                                live,
                            )
                            .map(Product::Archive)
                        }
                        (Kind::Export, Target::File(path)) => {
                            export::writer::write(&source, &database, path, &options, &progress)
                                .map(Product::Export)
                        }
                        (Kind::Export, Target::Object { destination, key }) => {
                            export::writer::write_to_object(
                                &source,
                                &database,
                                destination,
                                key,
                                &options,
                                &progress,
                            )
                            .map(Product::Export)
                        }
                    }
                });
                drop(source);
                drop(lease);
                progress.end();
                this.finish(id, kind.as_str(), &database, result.as_ref(), &completion);
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

    /// Runs `work` while a watcher thread copies its progress, and whether it waits paused,
    /// into the history.
    fn reporting_progress<T>(&self, id: i64, progress: &Progress, work: impl FnOnce() -> T) -> T {
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
                    // A pause that took effect after PAUSE JOB returned shows here.
                    progress.report_pause(|paused| self.record_pause(id, paused));
                }
            });
            let result = work();
            done.store(true, std::sync::atomic::Ordering::Release);
            watcher.thread().unpark();
            result
        })
    }

    fn finish(
        &self,
        id: i64,
        kind: &str,
        database: &str,
        result: Result<&Product, &BackupError>,
        completion: &Completion,
    ) {
        // Backup events are about files written; an import writes a database.
        let emit = |event, detail: &str| {
            if kind != "import" {
                self.emit(event, database, detail);
            }
        };
        let (outcome, recorded) = match result {
            Ok(product) => {
                tracing::info!(id, database, kind, path = %product.path().display(), bytes = product.bytes(), "complete");
                emit(
                    EventKind::BackupFinished,
                    &product.path().display().to_string(),
                );
                let recorded =
                    self.history
                        .finish(id, Status::Complete, Some(product.bytes()), None);
                (Outcome::Complete(Box::new(product.clone())), recorded)
            }
            Err(BackupError::Aborted) => {
                tracing::info!(id, database, kind, "aborted");
                emit(EventKind::BackupFailed, "aborted");
                let recorded = self
                    .history
                    .finish(id, Status::Aborted, None, Some("aborted"));
                (Outcome::Aborted, recorded)
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(id, database, kind, error = %message, "failed");
                emit(EventKind::BackupFailed, &message);
                let recorded = self
                    .history
                    .finish(id, Status::Failed, None, Some(&message));
                let outcome = match e {
                    BackupError::TimedOut { after } => Outcome::TimedOut(*after),
                    _ => Outcome::Failed(message),
                };
                (outcome, recorded)
            }
        };
        if let Err(e) = recorded {
            tracing::error!(id, error = %e, "could not record the end of a backup in the history");
        }
        lock(&self.running).remove(database);
        completion.set(outcome);
    }

    /// Imports the export `requested` (resolved by the path rules) as database `name`: a new
    /// database, or with `replace` an existing one that no session uses. It runs on the
    /// caller's thread as a job of `name`, so it shows in the history with its progress
    /// and CANCEL BACKUP stops it; nothing is installed unless the whole file checked out.
    /// Without a `name`, the database is the one the file's header names.
    pub fn import(
        &self,
        name: Option<&str>,
        requested: &str,
        replace: bool,
        requested_by: &str,
    ) -> Result<Imported, BackupError> {
        let location = self.destinations.resolve(requested)?;
        let source = match &location {
            Location::Local(path) => self.rules.archive_source(path)?,
            Location::Object { destination, key } => destination.display(key).into(),
        };
        // An encrypted export is a ZIP: its manifest names the database and the key.
        let mut sealed = None;
        if source.extension().is_some_and(|e| e == "zip") {
            let archive = self.open_archive(requested)?;
            if archive.manifest.kind != manifest::EXPORT {
                return Err(BackupError::Unsupported {
                    path: source.clone(),
                    reason: "it is a backup archive, not an export: restore it with RESTORE DATABASE name FROM '…'".into(),
                });
            }
            sealed = Some(archive);
        }
        let named_in_file;
        let name = match name {
            Some(name) => name,
            None => {
                named_in_file = match (&sealed, &location) {
                    (Some(archive), _) => archive.manifest.database.clone(),
                    (None, Location::Local(_)) => export::reader::header(&source)?.database,
                    (None, Location::Object { destination, key }) => {
                        export::reader::header_from(destination.open(key)?, &source)?.database
                    }
                };
                if !replace && self.catalog.exists(&named_in_file) {
                    return Err(BackupError::ImportTargetExists {
                        database: named_in_file,
                    });
                }
                named_in_file.as_str()
            }
        };
        crate::catalog::validate_name(name)?;
        if !replace && self.catalog.exists(name) {
            return Err(BackupError::ReplaceNeeded {
                database: name.to_owned(),
                statement: "IMPORT",
            });
        }
        let mut running = self.claim(name)?;
        let id = self.history.start(name, "import", &source, requested_by)?;
        let (progress, completion) = register(&mut running, name, id, "import");
        drop(running);
        tracing::info!(id, database = name, path = %source.display(), replace, by = requested_by, "import started");
        let result = self.reporting_progress(id, &progress, || match (sealed, &location) {
            (Some(mut archive), _) => {
                export::sealed::import(&self.catalog, &mut archive, name, replace, &progress)
            }
            (None, Location::Local(_)) => {
                export::import_into(&self.catalog, &source, name, replace, &progress)
            }
            (None, Location::Object { destination, key }) => {
                let reader = destination.open(key)?;
                let bytes = reader.size();
                export::import_from(
                    &self.catalog,
                    reader,
                    bytes,
                    &source,
                    name,
                    replace,
                    &progress,
                )
            }
        });
        progress.end();
        let product = result.as_ref().map(|i| Product::Import(i.clone()));
        self.finish(
            id,
            "import",
            name,
            product.as_ref().map_err(|e| *e),
            &completion,
        );
        result.map_err(|e| named_abort(e, "import", id))
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

    /// Aborts job `id` (a backup, export, restore or import) wherever it runs, paused or
    /// not. `None`: no job has that id.
    pub fn cancel(&self, id: i64) -> Result<Option<Stopped>, BackupError> {
        let database = lock(&self.running)
            .iter()
            .find(|(_, r)| r.id == id)
            .map(|(db, _)| db.clone());
        match database {
            Some(database) => Ok(Some(self.abort_database(&database))),
            None => Ok(self.history.get(id)?.map(|_| Stopped::NotRunning(Some(id)))),
        }
    }

    /// The progress of running job `id`; why there is none otherwise.
    fn running_progress(&self, id: i64) -> Result<Arc<Progress>, BackupError> {
        let found = lock(&self.running)
            .values()
            .find(|r| r.id == id)
            .map(|r| Arc::clone(&r.progress));
        match found {
            Some(progress) => Ok(progress),
            None => Err(match self.history.get(id)? {
                Some(record) => BackupError::JobEnded {
                    id,
                    status: record.status,
                },
                None => BackupError::NoJob { id },
            }),
        }
    }

    /// Pauses running job `id` at its next step, waiting up to `wait` for it to get there:
    /// whether it has (else it pauses when it does). It keeps what it holds (its snapshot's
    /// copy or read transaction, its temporary file) until it is resumed or cancelled; its
    /// timeout goes on counting.
    pub fn pause(&self, id: i64, wait: Duration) -> Result<bool, BackupError> {
        let progress = self.running_progress(id)?;
        progress.pause();
        tracing::info!(id, "job pause requested");
        let paused = progress.wait_paused(wait);
        // Where it stopped, so the history holds still from now on.
        let _ = self.history.progress(id, progress.percent());
        progress.report_pause(|paused| self.record_pause(id, paused));
        Ok(paused)
    }

    /// Lets paused job `id` go on (a running one is left as it is).
    pub fn resume(&self, id: i64) -> Result<(), BackupError> {
        let progress = self.running_progress(id)?;
        progress.resume();
        progress.report_pause(|paused| self.record_pause(id, paused));
        Ok(())
    }

    /// Writes whether job `id` waits paused into the history (a failure is logged: the job
    /// goes on either way).
    fn record_pause(&self, id: i64, paused: bool) {
        tracing::info!(
            id,
            paused,
            "job {}",
            if paused { "paused" } else { "running" }
        );
        if let Err(e) = self.history.set_paused(id, paused) {
            tracing::error!(id, error = %e, "could not record a pause or a resume in the history");
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

    /// `RESTORE … FROM LATEST IN collection [AS OF SYSTEM TIME …]`: with a continuous
    /// archive of `database` there, its newest base whose window holds the instant, replayed
    /// to it (to the newest point without one); otherwise the newest archive (as of it).
    /// Returns what was restored and where from.
    pub fn restore_latest(
        &self,
        name: &str,
        collection: &str,
        database: &str,
        as_of: Option<chrono::DateTime<chrono::Utc>>,
        what: Restoring<'_>,
        requested_by: &str,
    ) -> Result<(Restored, String), BackupError> {
        use super::continuous::{replay, store::Store};
        let store = Store::of(&self.rules, &self.destinations, collection, database)?;
        let exists = |base: &str| {
            self.open_archive(&chain::in_collection(collection, base))
                .is_ok()
        };
        let Some((plan, _window)) = replay::plan(&store, database, as_of, exists)? else {
            let archive = self.latest(collection, database, as_of)?;
            let restored = self.restore(name, &archive.location, what, requested_by)?;
            return Ok((restored, archive.location));
        };
        let base = chain::in_collection(collection, &plan.marker.base);
        let opener = |at: &str| self.open_archive(at);
        let restored =
            self.restore_prepared(name, &base, what, requested_by, |path, progress| {
                replay::rebuild_to(&store, &plan, &base, &opener, path, progress)
            })?;
        Ok((restored, store.display("")))
    }

    /// Verifies the archive `requested` and restores it as database `name`: a new database,
    /// or with `replace` an existing one that no session uses, swapped in atomically; or
    /// copies tables of it into database `name`. The existing database is untouched when
    /// anything fails.
    pub fn restore(
        &self,
        name: &str,
        requested: &str,
        what: Restoring<'_>,
        requested_by: &str,
    ) -> Result<Restored, BackupError> {
        let opener = |at: &str| self.open_archive(at);
        self.restore_prepared(name, requested, what, requested_by, |path, progress| {
            let archive = self.open_archive(requested)?;
            if archive.manifest.kind != manifest::INCREMENTAL {
                let mut archive = archive;
                return archive.extract_database(path, progress);
            }
            // A chain: every link checked and the image rebuilt before anything is installed.
            chain::rebuild(
                archive,
                requested,
                &opener,
                path,
                progress,
                chain::Proof::Newest,
            )
        })
    }

    /// A restore into database `name` of what `prepare` makes in a temporary file (from
    /// `requested`, as the history shows it): the database itself, or tables of it.
    fn restore_prepared(
        &self,
        name: &str,
        requested: &str,
        what: Restoring<'_>,
        requested_by: &str,
        prepare: impl FnOnce(&Path, &Progress) -> Result<Verified, BackupError>,
    ) -> Result<Restored, BackupError> {
        let location = self.destinations.resolve(requested)?;
        let source = match &location {
            Location::Local(path) => self.rules.archive_source(path)?,
            Location::Object { destination, key } => destination.display(key).into(),
        };
        crate::catalog::validate_name(name)?;
        match what {
            Restoring::Database { replace: false } if self.catalog.exists(name) => {
                return Err(BackupError::ReplaceNeeded {
                    database: name.to_owned(),
                    statement: "RESTORE",
                });
            }
            Restoring::Tables(tables) => {
                // A table already there is refused now, not after the archive is read.
                let target = self.catalog.open_unleased(name, Access::ReadOnly)?;
                super::tables::refuse_present(&target, tables, name)?;
            }
            _ => {}
        }
        let mut running = self.claim(name)?;
        let id = self.history.start(name, "restore", &source, requested_by)?;
        let (progress, completion) = register(&mut running, name, id, "restore");
        drop(running);
        // However the restore ends, a panic included, it leaves the job table.
        let mut entry = Entered {
            running: &self.running,
            database: name,
            progress: &progress,
            completion: &completion,
            outcome: None,
        };
        tracing::info!(id, database = name, path = %source.display(), ?what, by = requested_by, "restore started");
        let result = self.reporting_progress(id, &progress, || match what {
            Restoring::Database { replace } => {
                install_prepared(&self.catalog, name, replace, ".restore", |path| {
                    prepare(path, &progress)
                })
                .map(|verified| Restored {
                    verified,
                    tables: Vec::new(),
                })
            }
            Restoring::Tables(tables) => {
                let temp = TempFile::in_dir(self.catalog.dir(), ".restore");
                let verified = prepare(temp.path(), &progress)?;
                // The copy is one write transaction: a pause or cancel takes effect before.
                progress.check()?;
                let (target, _lease) = self.catalog.connect_attaching(
                    name,
                    Access::ReadWrite,
                    Some(("archived", temp.path())),
                )?;
                let tables = super::tables::copy_into(
                    &target,
                    tables,
                    &verified.manifest.database,
                    name,
                    &source,
                )?;
                Ok(Restored { verified, tables })
            }
        });
        let (recorded, outcome) = match &result {
            Ok(Restored { verified, tables }) => {
                tracing::info!(
                    id,
                    database = name,
                    bytes = verified.database_bytes,
                    tables = tables.len(),
                    "restore complete"
                );
                let recorded =
                    self.history
                        .finish(id, Status::Complete, Some(verified.database_bytes), None);
                let product = Product::Restore(Box::new(verified.clone()));
                (recorded, Outcome::Complete(Box::new(product)))
            }
            Err(BackupError::Aborted) => {
                tracing::info!(
                    id,
                    database = name,
                    "restore aborted; the existing database (if any) is untouched"
                );
                let recorded = self
                    .history
                    .finish(id, Status::Aborted, None, Some("aborted"));
                (recorded, Outcome::Aborted)
            }
            Err(e) => {
                tracing::error!(id, database = name, error = %e, "restore failed; the existing database (if any) is untouched");
                let message = e.to_string();
                let recorded = self
                    .history
                    .finish(id, Status::Failed, None, Some(&message));
                (recorded, Outcome::Failed(message))
            }
        };
        if let Err(e) = recorded {
            tracing::error!(id, error = %e, "could not record the end of a restore in the history");
        }
        entry.outcome = Some(outcome);
        drop(entry);
        result.map_err(|e| named_abort(e, "restore", id))
    }
}

/// What a restore does with the database it verified.
#[derive(Debug, Clone, Copy)]
pub enum Restoring<'a> {
    /// Installs it as the database: a new one, or with `replace` over one no session uses.
    Database { replace: bool },
    /// Copies these tables of it (every one when empty) into the existing database
    /// (`RESTORE TABLE`).
    Tables(&'a [String]),
}

/// What a restore did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub verified: Verified,
    /// Of a table restore: each table copied, with its rows.
    pub tables: Vec<(String, u64)>,
}

/// A job run on the caller's thread, in the job table until this is dropped: then it
/// leaves it, and whoever waits for its end (a CANCEL) learns `outcome` (a failure when
/// unset, as after a panic).
struct Entered<'a> {
    running: &'a Mutex<HashMap<String, Running>>,
    database: &'a str,
    progress: &'a Progress,
    completion: &'a Completion,
    outcome: Option<Outcome>,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.progress.end();
        lock(self.running).remove(self.database);
        let outcome = self
            .outcome
            .take()
            .unwrap_or_else(|| Outcome::Failed("the job stopped unexpectedly".into()));
        self.completion.set(outcome);
    }
}

/// An abort as the job that `CANCEL JOB` stopped (a job run on the caller's thread).
fn named_abort(e: BackupError, kind: &'static str, id: i64) -> BackupError {
    match e {
        BackupError::Aborted => BackupError::JobAborted { kind, id },
        other => other,
    }
}

/// What a verification read.
#[derive(Debug, Clone)]
pub enum Checked {
    Archive(Verified),
    Export(Imported),
}

/// Enters job `id` of `database` in the job table; returns what its work and its watchers
/// share.
fn register(
    running: &mut HashMap<String, Running>,
    database: &str,
    id: i64,
    kind: &'static str,
) -> (Arc<Progress>, Arc<Completion>) {
    let progress = Arc::new(Progress::default());
    let completion = Arc::new(Completion::default());
    running.insert(
        database.to_owned(),
        Running {
            id,
            kind,
            progress: Arc::clone(&progress),
            completion: Arc::clone(&completion),
        },
    );
    (progress, completion)
}

/// Verifies the opened `archive` and installs its database as `name` in `catalog`.
pub fn restore_from<R: std::io::Read + std::io::Seek>(
    catalog: &Catalog,
    mut archive: ArchiveReader<R>,
    name: &str,
    replace: bool,
    progress: &Progress,
) -> Result<Verified, BackupError> {
    crate::catalog::validate_name(name)?;
    install_prepared(catalog, name, replace, ".restore", |path| {
        archive.extract_database(path, progress)
    })
}

/// Makes a database file with `prepare` under a temporary name in the catalog's directory,
/// then installs it as `name` (a new database, or with `replace` one that no session uses).
/// If anything fails, the temporary file is removed and nothing is installed.
pub fn install_prepared<T>(
    catalog: &Catalog,
    name: &str,
    replace: bool,
    suffix: &str,
    prepare: impl FnOnce(&Path) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    crate::catalog::validate_name(name)?;
    let taken = || BackupError::ReplaceNeeded {
        database: name.to_owned(),
        statement: if suffix == ".import" {
            "IMPORT"
        } else {
            "RESTORE"
        },
    };
    // Before the work, so a taken name is refused at once (install checks again).
    if !replace && catalog.exists(name) {
        return Err(taken());
    }
    let temp = TempFile::in_dir(catalog.dir(), suffix);
    let made = prepare(temp.path())?;
    catalog
        .install(name, temp.path(), replace)
        .map_err(|e| match e {
            crate::catalog::CatalogError::AlreadyExists(_) => taken(),
            other => other.into(),
        })?;
    // The file now lives under its final name; nothing is left to remove.
    temp.keep();
    Ok(made)
}
