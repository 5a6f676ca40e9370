//! The command-line side of backups and exports: `cairn backup`, `cairn verify`,
//! `cairn restore`, `cairn export` and `cairn import` work on a data directory or a file
//! directly, without a running server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use std::sync::Arc;

use super::archive_reader::{ArchiveReader, Verified};
use super::archive_writer::{self, Written};
use super::chain::{self, AnyArchive};
use super::destination::{Destinations, Location, ObjectDestination};
use super::error::BackupError;
use super::history::{History, Status};
use super::incremental::DigestCache;
use super::jobs::{install_prepared, restore_from};
use super::manifest;
use super::options::BackupOptions;
use super::progress::Progress;
use crate::catalog::{Catalog, validate_name};
use crate::data_dir_lock::{DataDirLock, LockError};
use crate::export::{Exported, Imported};
use std::os::unix::fs::DirBuilderExt;

/// How long the CLI waits for a lock held by a live server's writers.
const BUSY: Duration = Duration::from_secs(5);

/// The destinations of a server config (`--config`), so that the CLI reads and writes
/// `NAME:key` as the server does, with a runtime for their clients.
pub struct Stores {
    pub rules: super::PathRules,
    pub destinations: Destinations,
    /// `[backup.keys.NAME]` of the config, read.
    pub keys: super::encryption::Keyring,
    runtime: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("destinations", &self.destinations.names())
            .finish_non_exhaustive()
    }
}

impl Stores {
    /// Clients for the destinations `config` declares (secrets read now, as at start-up).
    pub fn open(config: &crate::Config) -> Result<Stores, String> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| format!("starting the async runtime: {e}"))?;
        let destinations = Destinations::connect(&config.destinations, runtime.handle())?;
        // A tool run from an operator's shell may lack a key's variable: the keys it can
        // read are used, and an archive that needs another says which one is missing.
        let keys = super::encryption::Keyring::load_readable(&config.keys);
        Ok(Stores {
            rules: config.backup.clone(),
            destinations,
            keys,
            runtime,
        })
    }

    /// What `requested` names, as the server reads it: `NAME:key` in a destination (which
    /// needs `--config`), or a local path (`local:` and `./` prefixes allowed).
    fn locate<'a>(stores: Option<&Stores>, requested: &'a str) -> Result<Named<'a>, BackupError> {
        let Some(stores) = stores else {
            return match Destinations::default().resolve(requested) {
                Ok(Location::Local(path)) => Ok(Named::Local(path)),
                Err(BackupError::UnknownDestination { name, .. }) => {
                    Err(BackupError::PathRefused(format!(
                        "'{requested}' names the backup destination \"{name}\": give --config with the server config that declares it (a local file with a colon in its name: ./{requested})"
                    )))
                }
                Ok(Location::Object { destination, key }) => Ok(Named::Object(destination, key)),
                Err(e) => Err(e),
            };
        };
        let _entered = stores.runtime.enter();
        Ok(match stores.destinations.resolve(requested)? {
            Location::Object { destination, key } => Named::Object(destination, key),
            Location::Local(path) => Named::Local(path),
        })
    }
}

/// A place the CLI was given.
enum Named<'a> {
    Local(&'a str),
    Object(Arc<ObjectDestination>, &'a str),
}

/// Takes the same consistent snapshot the server takes, from a live or stopped data
/// directory (SQLite's own locking keeps the two processes apart), into the new file `to`.
pub fn backup(
    data_dir: &Path,
    database: &str,
    to: &str,
    stores: Option<&Stores>,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<Written, BackupError> {
    backup_planned(
        data_dir,
        database,
        to,
        stores,
        options,
        progress,
        &archive_writer::full,
        false,
    )
}

/// As `BACKUP DATABASE … INTO 'location' [WITH (incremental)]`: a new member of the
/// collection at `location` (a directory, or `NAME:prefix` with `stores`), named by the time;
/// with `incremental`, the pages changed since the newest archive of `database` there.
pub fn backup_into(
    data_dir: &Path,
    database: &str,
    location: &str,
    incremental: bool,
    stores: Option<&Stores>,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<Written, BackupError> {
    let parent = match incremental {
        true => Some(newest_member(location, stores, database)?),
        false => None,
    };
    let name = chain::member_name(database, incremental, chrono::Utc::now());
    // Beside its parent, where a reader will look for it.
    let to = match &parent {
        Some(parent) => chain::sibling(parent, &name),
        None => chain::in_collection(location, &name),
    };
    // The server's own cache: an increment taken here and one taken by the server agree.
    let digests = DigestCache::new(data_dir.join("system").join("page-digests"));
    let scratch = data_dir.join("databases");
    let opener = |at: &str| open_any(stores, at);
    // Before the snapshot: its read transaction is not held while archives are fetched.
    let parent = parent
        .map(|at| chain::prepare_parent(&digests, &at, &opener, &scratch, progress))
        .transpose()?;
    let plan = |image: &mut super::snapshot::Image, snapshot: &super::snapshot::Snapshot| {
        chain::plan(&digests, parent.as_ref(), image, snapshot, progress)
    };
    // Unless paced: a live snapshot's read transaction lasts the whole backup.
    let live = parent.is_some() && options.max_rate.is_none();
    backup_planned(
        data_dir, database, &to, stores, options, progress, &plan, live,
    )
}

#[allow(clippy::too_many_arguments)]
fn backup_planned(
    data_dir: &Path,
    database: &str,
    to: &str,
    stores: Option<&Stores>,
    options: &BackupOptions,
    progress: &Progress,
    plan: archive_writer::Plan<'_>,
    live: bool,
) -> Result<Written, BackupError> {
    let to = match Stores::locate(stores, to)? {
        Named::Local(path) => path,
        Named::Object(destination, key) => {
            let source = open_source(data_dir, database)?;
            // The snapshot goes beside the databases: the server cleans up what a crash leaves.
            let scratch = data_dir.join("databases");
            return archive_writer::write_to_object(
                &source,
                database,
                &destination,
                key,
                &scratch,
                options,
                BUSY,
                progress,
                plan,
                live,
            );
        }
    };
    let to = Path::new(to);
    super::files::refuse_reserved(to)?;
    let source = open_source(data_dir, database)?;
    let to = absolute(to)?;
    archive_writer::write_planned(&source, database, &to, options, BUSY, progress, plan, live)
}

/// Exports one database of a live or stopped data directory, from one read transaction,
/// into the new file `to`.
pub fn export(
    data_dir: &Path,
    database: &str,
    to: &Path,
    options: &BackupOptions,
    progress: &Progress,
) -> Result<Exported, BackupError> {
    super::files::refuse_reserved(to)?;
    let source = open_source(data_dir, database)?;
    let to = absolute(to)?;
    crate::export::writer::write(&source, database, &to, options, progress)
}

fn absolute(path: &Path) -> Result<PathBuf, BackupError> {
    std::path::absolute(path).map_err(|source| BackupError::Io {
        action: "resolving",
        path: path.to_owned(),
        source,
    })
}

/// A read-only connection to `database` that waits out a live server's writers.
fn open_source(data_dir: &Path, database: &str) -> Result<Connection, BackupError> {
    validate_name(database)?;
    let file = data_dir
        .join("databases")
        .join(format!("{database}.sqlite"));
    if !file.is_file() {
        return Err(crate::catalog::CatalogError::NotFound(database.to_owned()).into());
    }
    let source = Connection::open_with_flags(
        &file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| BackupError::Sqlite {
        action: "opening",
        path: file.clone(),
        source,
    })?;
    source
        .busy_timeout(BUSY)
        .map_err(|source| BackupError::Sqlite {
            action: "opening",
            path: file.clone(),
            source,
        })?;
    Ok(source)
}

/// Checks everything a restore would check, extracting the database to a scratch file next
/// to the archive (or in the system's temporary directory) that is removed afterwards.
pub fn verify(
    archive: &str,
    stores: Option<&Stores>,
    progress: &Progress,
) -> Result<Verified, BackupError> {
    let near = match Stores::locate(stores, archive)? {
        Named::Local(path) => Path::new(path)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_owned(),
        Named::Object(..) => std::env::temp_dir(),
    };
    let mut opened = open_any(stores, archive)?;
    if opened.manifest.kind == manifest::EXPORT {
        // An encrypted export: every line and count, and the authentication code.
        let read = crate::export::sealed::verify(&mut opened, progress)?;
        return Ok(Verified {
            manifest: opened.manifest.clone(),
            database_bytes: read.bytes,
        });
    }
    if opened.manifest.kind != manifest::INCREMENTAL {
        return opened.verify_near(&near, progress);
    }
    // An increment is checked with its whole chain, rebuilt into a scratch file.
    let scratch = tempfile::Builder::new()
        .prefix(super::files::TEMP_PREFIX)
        .tempdir_in(&near)
        .or_else(|_| tempfile::Builder::new().prefix("cairn-verify-").tempdir())
        .map_err(|source| BackupError::Io {
            action: "creating a scratch directory to verify",
            path: PathBuf::from(archive),
            source,
        })?;
    let opener = |at: &str| open_any(stores, at);
    chain::rebuild(
        opened,
        archive,
        &opener,
        &scratch.path().join("database.sqlite"),
        progress,
        chain::Proof::EveryLink,
    )
}

/// The archive at `location` (a file, or `NAME:key` in a destination of `stores`).
fn open_any<'s>(stores: Option<&'s Stores>, location: &str) -> Result<AnyArchive<'s>, BackupError> {
    match Stores::locate(stores, location)? {
        Named::Local(path) => {
            let file = std::fs::File::open(path).map_err(|source| BackupError::Io {
                action: "opening",
                path: PathBuf::from(path),
                source,
            })?;
            let reader: Box<dyn chain::ReadSeek> = Box::new(std::io::BufReader::new(file));
            Ok(ArchiveReader::from_reader(reader, Path::new(path))?.unlock(&keys_of(stores)))
        }
        Named::Object(destination, key) => {
            // The client `stores` keeps, so that the reader may outlive this call.
            let kept = stores
                .and_then(|s| s.destinations.get(destination.name()))
                .ok_or_else(|| {
                    BackupError::PathRefused(format!(
                        "'{location}' names a destination; give --config with the server config that declares it"
                    ))
                })?;
            let _entered = stores.map(|s| s.runtime.enter());
            let reader: Box<dyn chain::ReadSeek + 's> = Box::new(kept.open(key)?);
            Ok(ArchiveReader::from_reader(reader, Path::new(location))?.unlock(&keys_of(stores)))
        }
    }
}

/// The keys of `--config`, or none.
fn keys_of(stores: Option<&Stores>) -> super::encryption::Keyring {
    stores.map(|s| s.keys.clone()).unwrap_or_default()
}

/// `cairn archives list`: what exists at `location` (a `NAME:prefix` with `--config`, or a
/// local directory), read from the files themselves.
pub fn archives(
    location: &str,
    stores: Option<&Stores>,
    verify: bool,
) -> Result<Vec<super::archives::Archive>, BackupError> {
    let path = match Stores::locate(stores, location)? {
        Named::Local(path) => path,
        Named::Object(..) => {
            let Some(stores) = stores else {
                return Ok(Vec::new());
            };
            return super::archives::list(
                &stores.rules,
                &stores.destinations,
                location,
                verify.then_some(&stores.keys),
            );
        }
    };
    // A local directory, named by the operator: no path rules beyond the directory itself.
    let dir = absolute(Path::new(path))?;
    let rules = super::PathRules {
        directory: dir,
        allowed: Vec::new(),
    };
    super::archives::list(
        &rules,
        &Destinations::default(),
        "",
        verify.then_some(&super::encryption::Keyring::default()),
    )
}

/// The newest archive of `database` directly in the collection at `location`: what an
/// increment there builds on.
fn newest_member(
    location: &str,
    stores: Option<&Stores>,
    database: &str,
) -> Result<String, BackupError> {
    let newest = in_collection(location, stores, |rules, destinations, requested| {
        super::archives::latest_member(rules, destinations, requested, database)
    })?;
    Ok(newest.location)
}

/// Runs `work` on the collection at `location` as the server's path rules and destinations
/// see it: a local directory (then named `""` under rules of its own), or `NAME:prefix` in
/// a destination of `--config`.
fn in_collection<T>(
    location: &str,
    stores: Option<&Stores>,
    work: impl FnOnce(&super::PathRules, &Destinations, &str) -> Result<T, BackupError>,
) -> Result<T, BackupError> {
    match (Stores::locate(stores, location)?, stores) {
        (Named::Object(..), Some(stores)) => work(&stores.rules, &stores.destinations, location),
        (Named::Object(..), None) => Err(BackupError::PathRefused(format!(
            "'{location}' is in a destination: give --config"
        ))),
        (Named::Local(path), _) => {
            let rules = super::PathRules {
                directory: absolute(Path::new(path))?,
                allowed: Vec::new(),
            };
            work(&rules, &Destinations::default(), "")
        }
    }
}

/// What `FROM LATEST` restores: an archive, or a base with its stream replayed.
enum Latest {
    Archive(String),
    Replayed(
        super::continuous::store::Store,
        Box<super::continuous::replay::Replay>,
    ),
}

/// `cairn restore --from-latest LOCATION [--as-of INSTANT]`, as SQL's `RESTORE … FROM
/// LATEST IN … [AS OF SYSTEM TIME …]` does it: with a continuous archive of `database`
/// there, its base whose window holds the instant, replayed to it (to the newest point
/// without one); otherwise the newest archive (at or before the instant). Restored as
/// `target`; returns what was restored and where from.
#[allow(clippy::too_many_arguments)]
pub fn restore_latest(
    data_dir: &Path,
    location: &str,
    stores: Option<&Stores>,
    database: &str,
    as_of: Option<chrono::DateTime<chrono::Utc>>,
    target: &str,
    replace: bool,
    create: DataDir,
    progress: &Progress,
) -> Result<(Verified, String), BackupError> {
    use super::continuous::{replay, store::Store};
    validate_name(target)?;
    let opener = |at: &str| open_any(stores, at);
    let planned = in_collection(location, stores, |rules, destinations, requested| {
        let store = Store::of(rules, destinations, requested, database)?;
        let exists = |base: &str| opener(&chain::in_collection(location, base)).is_ok();
        match replay::plan(&store, database, as_of, exists)? {
            Some((plan, _window)) => Ok(Latest::Replayed(store, Box::new(plan))),
            None => super::archives::latest(rules, destinations, requested, database, as_of)
                .map(|archive| Latest::Archive(archive.location)),
        }
    })?;
    let (store, plan) = match planned {
        Latest::Archive(archive) => {
            let verified = restore(
                data_dir, &archive, stores, target, replace, create, progress,
            )?;
            return Ok((verified, archive));
        }
        Latest::Replayed(store, plan) => (store, plan),
    };
    let base = chain::in_collection(location, &plan.marker.base);
    let shown = store.display("");
    let verified = restore_recorded(
        data_dir,
        create,
        target,
        replace,
        Path::new(&shown),
        |catalog| {
            install_prepared(catalog, target, replace, ".restore", |path| {
                replay::rebuild_to(&store, &plan, &base, &opener, path, progress)
            })
        },
    )?;
    Ok((verified, shown))
}

/// A restore as `database` into the data directory of a stopped server, of what `restore`
/// installs there, recorded in the backup history (from `shown`).
fn restore_recorded(
    data_dir: &Path,
    create: DataDir,
    database: &str,
    replace: bool,
    shown: &Path,
    restore: impl FnOnce(&Catalog) -> Result<Verified, BackupError>,
) -> Result<Verified, BackupError> {
    let (_lock, catalog, history) = open_stopped(data_dir, create)?;
    if !replace && catalog.exists(database) {
        return Err(BackupError::CliTargetExists {
            database: database.to_owned(),
        });
    }
    let id = history.start(database, "restore", shown, "cli")?;
    let result = restore(&catalog);
    let _ = match &result {
        Ok(v) => history.finish(id, Status::Complete, Some(v.database_bytes), None),
        Err(e) => history.finish(id, Status::Failed, None, Some(&e.to_string())),
    };
    result
}

/// What the CLI may do with the data directory it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataDir {
    /// It must be an existing server's data directory (a mistyped path is refused).
    Existing,
    /// Made if missing (`--create-data-dir`): restoring onto a new machine.
    CreateIfMissing,
}

/// Restores into the data directory of a stopped server and records the restore in the
/// backup history.
pub fn restore(
    data_dir: &Path,
    archive: &str,
    stores: Option<&Stores>,
    database: &str,
    replace: bool,
    create: DataDir,
    progress: &Progress,
) -> Result<Verified, BackupError> {
    validate_name(database)?;
    let located = Stores::locate(stores, archive)?;
    let shown = match &located {
        Named::Object(..) => PathBuf::from(archive),
        Named::Local(path) => absolute(Path::new(path))?,
    };
    let opener = |at: &str| open_any(stores, at);
    restore_recorded(data_dir, create, database, replace, &shown, |catalog| {
        let opened = open_any(stores, archive)?;
        if opened.manifest.kind != manifest::INCREMENTAL {
            return restore_from(catalog, opened, database, replace, progress);
        }
        install_prepared(catalog, database, replace, ".restore", |path| {
            chain::rebuild(
                opened,
                archive,
                &opener,
                path,
                progress,
                chain::Proof::Newest,
            )
        })
    })
}

/// Imports an export into the data directory of a stopped server as `database` (by default
/// the database the file names) and records the import in the history.
pub fn import(
    data_dir: &Path,
    file: &Path,
    database: Option<&str>,
    replace: bool,
    create: DataDir,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    let file = absolute(file)?;
    let named_in_file;
    let database = match database {
        Some(name) => name,
        None => {
            named_in_file = crate::export::reader::header(&file)?.database;
            named_in_file.as_str()
        }
    };
    validate_name(database)?;
    let (_lock, catalog, history) = open_stopped(data_dir, create)?;
    if !replace && catalog.exists(database) {
        return Err(BackupError::CliTargetExists {
            database: database.to_owned(),
        });
    }
    let id = history.start(database, "import", &file, "cli")?;
    let result = crate::export::import_into(&catalog, &file, database, replace, progress);
    let _ = match &result {
        Ok(i) => history.finish(id, Status::Complete, Some(i.bytes), None),
        Err(e) => history.finish(id, Status::Failed, None, Some(&e.to_string())),
    };
    result
}

/// The catalog and history of a stopped server's data directory (made if missing only when
/// asked: a mistyped path must not become a new data directory that nobody serves). The lock
/// proves no server runs.
fn open_stopped(
    data_dir: &Path,
    create: DataDir,
) -> Result<(DataDirLock, Catalog, History), BackupError> {
    if create == DataDir::Existing {
        let refused = |reason: &str| BackupError::NoDataDir {
            path: data_dir.to_owned(),
            reason: reason.to_owned(),
        };
        if !data_dir.is_dir() {
            return Err(refused("does not exist"));
        }
        if !data_dir.join("databases").is_dir() {
            return Err(refused(
                "is not a Cairn data directory (it has no databases/ directory)",
            ));
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|source| BackupError::Io {
            action: "creating the data directory",
            path: data_dir.to_owned(),
            source,
        })?;
    let lock = DataDirLock::acquire(data_dir).map_err(|e| match e {
        LockError::InUse { .. } => BackupError::ServerRunning(e.to_string()),
        LockError::Io { path, source } => BackupError::Io {
            action: "locking",
            path,
            source,
        },
    })?;
    // The reserve is the server's to manage: the CLI only looks at the disk.
    let disk = std::sync::Arc::new(crate::disk_space::DataDisk::observing(data_dir));
    let catalog = Catalog::open(data_dir, BUSY, disk)?;
    let history = History::open(data_dir)?;
    Ok((lock, catalog, history))
}
