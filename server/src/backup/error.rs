//! Why a backup, a verification or a restore failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(
        "database \"{database}\" already exists in this data directory; add --replace to replace it (no session may use it), or name another with --database"
    )]
    CliTargetExists { database: String },
    #[error(
        "database \"{database}\" already exists; add WITH (replace) to {statement} over it (no session may use it), or {statement} under another name"
    )]
    ReplaceNeeded {
        database: String,
        statement: &'static str,
    },
    #[error("{path} already exists; choose another file name (backups never overwrite a file)")]
    TargetExists { path: PathBuf },
    #[error("{0}")]
    PathRefused(String),
    #[error(
        "BACKUP DATABASE with no TO writes to [backup] default_destination, which is not set: set it in the config (\"offsite:auto\" or a directory), or write BACKUP DATABASE name TO 'file.zip'"
    )]
    NoDefaultDestination,
    #[error(
        "{0}; `cairn restore` and `cairn import` work on a stopped server's data directory (use RESTORE DATABASE or IMPORT DATABASE on a running one)"
    )]
    ServerRunning(String),
    #[error(
        "the data directory {path} {reason}; check --data-dir (it is the server's `data_dir`), or add --create-data-dir to start a new one there"
    )]
    NoDataDir { path: PathBuf, reason: String },
    #[error(
        "{what} needs {} in {path}, which has {} free; free some space (or choose another place) and retry; nothing was written",
        crate::disk_space::describe(*needed),
        crate::disk_space::describe(*available)
    )]
    NoSpace {
        what: &'static str,
        path: PathBuf,
        needed: u64,
        available: u64,
    },
    #[error(
        "{what} encodes to {bytes} bytes, more than the {limit} bytes such an export line may hold (so that an import's memory stays bounded); back this database up with BACKUP DATABASE instead"
    )]
    LineTooLong {
        what: String,
        bytes: usize,
        limit: usize,
    },
    #[error("invalid option: {0}")]
    InvalidOption(String),
    #[error(
        "a {kind} of database \"{database}\" is already running (id {id}); wait for it, or stop it with CANCEL JOB {id}"
    )]
    AlreadyRunning {
        database: String,
        id: i64,
        kind: &'static str,
    },
    #[error(
        "stopped after {} hours paused (a paused job holds its snapshot and its files); RESUME JOB sooner, or run it again",
        after.as_secs() / 3600
    )]
    PausedTooLong { after: std::time::Duration },
    #[error("database {database} has no table {table}; it has {has}")]
    NoSuchTable {
        table: String,
        database: String,
        has: String,
    },
    #[error(
        "database {database} already has the {kind} {name}; drop it first, or restore into another database WITH (into_db = 'name')"
    )]
    ObjectExists {
        kind: &'static str,
        name: String,
        database: String,
    },
    #[error("{0}")]
    TableDependency(String),
    #[error("there is no job with id {id}; SHOW JOBS lists them")]
    NoJob { id: i64 },
    #[error("job {id} has ended ({status}); only a running job can be paused or resumed")]
    JobEnded { id: i64, status: String },
    #[error(
        "the database stayed locked for {} ms, so no snapshot could be taken; retry, or raise busy_timeout_ms",
        waited.as_millis()
    )]
    Busy { waited: std::time::Duration },
    #[error("the backup was aborted")]
    Aborted,
    #[error(
        "stopped at its timeout of {after:?}; WITH (timeout = '…') raises it (the default is a day, 0 is no limit), or a higher max_rate shortens the job"
    )]
    TimedOut { after: std::time::Duration },
    #[error("{kind} {id} was aborted; {}", left_as_it_was(kind))]
    JobAborted { kind: &'static str, id: i64 },
    #[error(
        "{kind} {id} stopped at its timeout of {after:?}; no file was written; WITH (timeout = '…') raises it (the default is a day, 0 is no limit), or a higher max_rate shortens the job"
    )]
    JobTimedOut {
        kind: &'static str,
        id: i64,
        after: std::time::Duration,
    },
    #[error("{kind} {id} failed: {message}; no file was written")]
    JobFailed {
        kind: &'static str,
        id: i64,
        message: String,
    },
    #[error(
        "the file holds database \"{database}\", which already exists; import it under another name with IMPORT DATABASE name FROM 'file' (add WITH (replace) to replace it)"
    )]
    ImportTargetExists { database: String },
    #[error(
        "no backup destination \"{name}\"; the configured ones are: {known} (a destination is a [backup.destinations.{name}] table of the server config; write ./{name}:… for a local file with a colon in its name)"
    )]
    UnknownDestination { name: String, known: String },
    #[error("backup destination \"{destination}\" ({url}): {action} {key}: {reason}")]
    Destination {
        destination: String,
        url: String,
        action: &'static str,
        key: String,
        reason: String,
    },
    #[error(
        "no backup archive of database \"{database}\" in {location}{}; SHOW ARCHIVES IN '…' lists what is there",
        as_of.as_deref().unwrap_or("")
    )]
    NoArchive {
        database: String,
        location: String,
        as_of: Option<String>,
    },
    /// `key = '…'` names no configured key (the value is not repeated: it may be a secret
    /// written by mistake).
    #[error(
        "key does not name a [backup.keys.NAME] table of the server config; the configured keys are: {known}"
    )]
    UnknownKey { known: String },
    #[error(
        "{path} is encrypted with key \"{key}\", which this server's config does not have; add [backup.keys.{key}] with its passphrase_env or key_file (keys in use are never removed while archives name them); nothing was written"
    )]
    KeyMissing { path: PathBuf, key: String },
    #[error(
        "{path}: key \"{key}\" does not open entry \"{entry}\" ({reason}); the passphrase configured for it is not the one the archive was written with; nothing was written"
    )]
    WrongKey {
        path: PathBuf,
        key: String,
        entry: String,
        reason: &'static str,
    },
    #[error("{path} is not a Cairn backup archive: {reason}")]
    NotAnArchive { path: PathBuf, reason: String },
    #[error("{path}: entry \"{entry}\" is damaged: {reason}")]
    Damaged {
        path: PathBuf,
        entry: String,
        reason: String,
    },
    #[error("{path}: {reason}")]
    Unsupported { path: PathBuf, reason: String },
    /// A segment of a continuous archive that cannot be read.
    #[error("{path} is not a WAL segment Cairn can replay: {reason}")]
    BadSegment { path: PathBuf, reason: String },
    /// A point in time a continuous archive cannot restore to.
    #[error("{0}")]
    OutsideWindow(String),
    #[error("{path}: line {line}: {reason}; nothing was imported")]
    BadExport {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    /// The compressor stopped reading (its own error says why).
    #[error("the compressor stopped")]
    PipeClosed,
    #[error("backup history {path}: {source}")]
    History {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// What an aborted job of `kind` left: a restore or an import installs nothing.
fn left_as_it_was(kind: &str) -> &'static str {
    match kind {
        "restore" | "import" => "no database was installed or changed",
        _ => "no file was written",
    }
}
