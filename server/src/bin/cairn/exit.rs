//! What a failed command tells its caller: a documented exit status per kind of failure, and
//! the error as one sentence (each cause once).

use cairn_plugin_api::ffi::host::LoadError;
use cairn_server::backup::BackupError;
use cairn_server::catalog::CatalogError;
use cairn_server::config::ConfigError;
use cairn_server::data_dir_lock::LockError;
use cairn_server::error::Error as ServerError;

/// The kinds of failure, each with its exit status (listed in `cairn --help` and the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Anything not listed below.
    Failed,
    /// Bad arguments or a bad config file.
    Usage,
    /// A file, database, archive or destination that does not exist; for `status`, no
    /// server running.
    NotFound,
    /// Refused: it exists already, it is in use, it cannot be loaded.
    Refused,
    /// An archive or export that is damaged or not one.
    Verification,
    /// The disk, the network, permissions.
    Io,
    /// `status`: a server holds the data directory but is not ready (starting, stopping),
    /// or the lock is held by `cairn restore`/`import`.
    NotReady,
}

impl Failure {
    pub fn code(self) -> u8 {
        match self {
            Failure::Failed => 1,
            Failure::Usage => 2,
            Failure::NotFound => 3,
            Failure::Refused => 4,
            Failure::Verification => 5,
            Failure::Io => 6,
            Failure::NotReady => 7,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Failure::Failed => "failed",
            Failure::Usage => "usage",
            Failure::NotFound => "not_found",
            Failure::Refused => "refused",
            Failure::Verification => "verification_failed",
            Failure::Io => "io",
            Failure::NotReady => "not_ready",
        }
    }

    /// The kind of `error`: the first cause in its chain that says.
    pub fn of(error: &anyhow::Error) -> Failure {
        error
            .chain()
            .find_map(|cause| {
                if let Some(f) = cause.downcast_ref::<Classified>() {
                    Some(f.failure)
                } else if let Some(e) = cause.downcast_ref::<ServerError>() {
                    Some(of_server(e))
                } else if let Some(e) = cause.downcast_ref::<BackupError>() {
                    Some(of_backup(e))
                } else if let Some(e) = cause.downcast_ref::<CatalogError>() {
                    Some(of_catalog(e))
                } else if let Some(e) = cause.downcast_ref::<ConfigError>() {
                    Some(of_config(e))
                } else if let Some(e) = cause.downcast_ref::<LockError>() {
                    Some(of_lock(e))
                } else if let Some(e) = cause.downcast_ref::<LoadError>() {
                    Some(match e {
                        LoadError::Open { path, .. } if !path.exists() => Failure::NotFound,
                        _ => Failure::Refused,
                    })
                } else {
                    cause.downcast_ref::<std::io::Error>().map(of_io)
                }
            })
            .unwrap_or(Failure::Failed)
    }
}

fn of_io(e: &std::io::Error) -> Failure {
    match e.kind() {
        std::io::ErrorKind::NotFound => Failure::NotFound,
        _ => Failure::Io,
    }
}

/// Start-up errors wrap the others transparently, which hides them from the error chain.
fn of_server(e: &ServerError) -> Failure {
    match e {
        ServerError::Config(e) => of_config(e),
        ServerError::Lock(e) => of_lock(e),
        ServerError::Catalog(e) => of_catalog(e),
        // Reading or writing the generated password file: the disk, not the config.
        ServerError::Credentials(_) => Failure::Io,
        // The users made in SQL: unreadable (the disk) or holding a row it cannot read.
        ServerError::UserStore(_) => Failure::Io,
        // A certificate or key that cannot be read or used: the config names them.
        ServerError::Tls(_) => Failure::Usage,
        ServerError::Destination(_) | ServerError::Keys(_) => Failure::Usage,
        ServerError::Backup(e) => of_backup(e),
        ServerError::DataDir { source, .. } => of_io(source),
        ServerError::Listen { source, .. } => match source.kind() {
            std::io::ErrorKind::AddrInUse => Failure::Refused,
            _ => Failure::Io,
        },
    }
}

fn of_config(e: &ConfigError) -> Failure {
    match e {
        ConfigError::Read { source, .. } => of_io(source),
        ConfigError::Invalid { .. } => Failure::Usage,
    }
}

fn of_lock(e: &LockError) -> Failure {
    match e {
        LockError::InUse { .. } => Failure::Refused,
        LockError::Io { source, .. } => of_io(source),
    }
}

fn of_catalog(e: &CatalogError) -> Failure {
    match e {
        CatalogError::InvalidName { .. } => Failure::Usage,
        CatalogError::NotFound(_) => Failure::NotFound,
        CatalogError::AlreadyExists(_)
        | CatalogError::InUse { .. }
        | CatalogError::Busy(_)
        | CatalogError::DefaultDatabase => Failure::Refused,
        CatalogError::Io { source, .. } => of_io(source),
        CatalogError::Sqlite { .. } => Failure::Failed,
    }
}

fn of_backup(e: &BackupError) -> Failure {
    use BackupError as B;
    match e {
        B::Io { source, .. } => of_io(source),
        B::Catalog(e) => of_catalog(e),
        B::InvalidOption(_) => Failure::Usage,
        B::NoDataDir { .. }
        | B::NoArchive { .. }
        | B::UnknownDestination { .. }
        | B::UnknownKey { .. }
        | B::KeyMissing { .. }
        | B::NoDefaultDestination
        | B::NoJob { .. }
        | B::NoSuchTable { .. }
        | B::OutsideWindow(_) => Failure::NotFound,
        B::CliTargetExists { .. }
        | B::ReplaceNeeded { .. }
        | B::TargetExists { .. }
        | B::ImportTargetExists { .. }
        | B::PathRefused(_)
        | B::ServerRunning(_)
        | B::LineTooLong { .. }
        | B::AlreadyRunning { .. }
        | B::JobEnded { .. }
        | B::ObjectExists { .. }
        | B::TableDependency(_)
        | B::Busy { .. }
        | B::Unsupported { .. } => Failure::Refused,
        B::NotAnArchive { .. }
        | B::Damaged { .. }
        | B::BadExport { .. }
        | B::BadSegment { .. }
        | B::WrongKey { .. } => Failure::Verification,
        B::NoSpace { .. } | B::Destination { .. } | B::History { .. } => Failure::Io,
        B::Sqlite { .. }
        | B::Aborted
        | B::TimedOut { .. }
        | B::PausedTooLong { .. }
        | B::JobTimedOut { .. }
        | B::JobAborted { .. }
        | B::JobFailed { .. }
        | B::PipeClosed => Failure::Failed,
    }
}

/// An error whose kind the command knows better than its type says.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Classified {
    pub failure: Failure,
    pub message: String,
}

/// A failure of kind `failure` saying `message`.
pub fn failure(failure: Failure, message: impl Into<String>) -> anyhow::Error {
    Classified {
        failure,
        message: message.into(),
    }
    .into()
}

/// The error and its causes as one sentence. Most of our errors already print their cause
/// (`reading x: No such file`), so a cause whose text the sentence holds is not repeated.
pub fn sentence(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let error = anyhow::Error::new(BackupError::Io {
            action: "reading",
            path: "/x".into(),
            source: io,
        })
        .context("backing up");
        assert_eq!(
            sentence(&error),
            "backing up: reading /x: No such file or directory"
        );
        assert_eq!(Failure::of(&error), Failure::NotFound);
    }

    #[test]
    fn every_kind_has_its_own_status() {
        let all = [
            Failure::Failed,
            Failure::Usage,
            Failure::NotFound,
            Failure::Refused,
            Failure::Verification,
            Failure::Io,
            Failure::NotReady,
        ];
        let codes: Vec<u8> = all.iter().map(|f| f.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7]);
        let names: std::collections::BTreeSet<&str> = all.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), all.len());
    }
}
