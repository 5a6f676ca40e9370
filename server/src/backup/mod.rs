//! Backups: consistent snapshots of live databases written as ZIP archives, verified and
//! restored. The archive format is in docs/FORMATS.md.
//!
//! Layers, bottom up: [`zip_writer`] and [`deflate`] (the container and parallel compression),
//! [`snapshot`] (a consistent copy without blocking writers), [`archive_writer`] and
//! [`archive_reader`] (one archive, with its manifest and checks), [`encryption`] (keys,
//! and archives' entries sealed with them), [`files`] and [`paths`]
//! (durable publishing, where SQL may put files), [`destination`] (the local directory or
//! object storage, named `'NAME:key'`), [`history`] and [`jobs`] (backups as watchable,
//! abortable jobs), [`continuous`] (shipping the write-ahead log between base archives, and
//! replaying it to an instant).

pub mod archive_reader;
pub mod archive_writer;
pub mod archives;
pub mod chain;
pub mod continuous;
pub mod deflate;
pub mod destination;
pub mod encryption;
pub mod error;
pub mod files;
pub mod history;
pub mod incremental;
pub mod jobs;
pub mod manifest;
pub mod offline;
pub mod options;
pub mod paths;
pub mod progress;
pub mod snapshot;
pub mod tables;
pub mod zip_writer;

pub use error::BackupError;
pub use jobs::{Backups, Job, Outcome, Stopped};
pub use options::BackupOptions;
pub use paths::PathRules;
