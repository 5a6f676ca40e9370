//! The server library's error type: what can stop the server from starting or running.

use crate::catalog::CatalogError;
use crate::config::ConfigError;
use crate::credentials::CredentialError;
use crate::data_dir_lock::LockError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Tls(#[from] crate::pg::tls::TlsError),
    #[error(transparent)]
    UserStore(#[from] crate::user_store::UserStoreError),
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    #[error("{0}")]
    Destination(String),
    /// A `[backup.keys.NAME]` whose passphrase cannot be read.
    #[error("{0}")]
    Keys(String),
    #[error("creating data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot listen on {addr}: {source}; is another server using the port? change [server] listen in the config"
    )]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}
