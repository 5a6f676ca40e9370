//! Where a database's stream goes: the directory (or object prefix) `<database>.wal` in the
//! collection its base archives are written to. It holds the segments (`000000000001.seg`,
//! …) and one marker per base archive (`base-<archive>.json`) saying from which segment the
//! stream replays onto that base.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::backup::destination::{Destinations, Location, ObjectDestination};
use crate::backup::files::{TempFile, sync_dir};
use crate::backup::{BackupError, PathRules, chain};

/// The largest object of a stream read back whole (a segment, a marker).
const MAX_OBJECT: u64 = 64 << 20;

/// A stream's directory or prefix.
#[derive(Debug, Clone)]
pub enum Store {
    Dir(PathBuf),
    Object {
        destination: Arc<ObjectDestination>,
        /// The key prefix, ending with `/`.
        prefix: String,
    },
}

/// How a stream's directory name ends.
pub const WAL_SUFFIX: &str = ".wal";

/// The stream's directory name beside the base archives of `database`.
pub fn stream_name(database: &str) -> String {
    format!("{database}{WAL_SUFFIX}")
}

impl Store {
    /// The stream of `database` in `collection` (`NAME:prefix` or a directory).
    pub fn of(
        rules: &PathRules,
        destinations: &Destinations,
        collection: &str,
        database: &str,
    ) -> Result<Store, BackupError> {
        let stream = chain::in_collection(collection, &stream_name(database));
        match destinations.resolve(&stream)? {
            Location::Local(path) => Ok(Store::Dir(rules.listing_directory(path)?)),
            Location::Object { destination, key } => Ok(Store::Object {
                destination,
                prefix: format!("{}/", key.trim_end_matches('/')),
            }),
        }
    }

    /// As SQL and the log name `name` here.
    pub fn display(&self, name: &str) -> String {
        match self {
            Store::Dir(dir) => dir.join(name).display().to_string(),
            Store::Object {
                destination,
                prefix,
            } => destination.display(&format!("{prefix}{name}")),
        }
    }

    /// Writes `name`, whole or not at all (a file is written aside, synced and linked in).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), BackupError> {
        match self {
            Store::Dir(dir) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .create(dir)
                    .map_err(|source| BackupError::Io {
                        action: "creating",
                        path: dir.clone(),
                        source,
                    })?;
                let temp = TempFile::in_dir(dir, ".part");
                let io = |source| BackupError::Io {
                    action: "writing",
                    path: temp.path().to_owned(),
                    source,
                };
                let mut file = crate::new_file::create_new(temp.path()).map_err(io)?;
                file.write_all(&bytes).map_err(io)?;
                file.sync_all().map_err(io)?;
                let target = dir.join(name);
                if !target.exists() {
                    return temp.publish(&target);
                }
                // The idle note, rewritten: replaced in one rename, so a reader sees the old
                // one or the new one.
                std::fs::rename(temp.path(), &target).map_err(|source| BackupError::Io {
                    action: "replacing",
                    path: target.clone(),
                    source,
                })?;
                temp.keep();
                sync_dir(dir)
            }
            Store::Object {
                destination,
                prefix,
            } => destination.put(&format!("{prefix}{name}"), bytes),
        }
    }

    /// Reads `name` whole.
    pub fn get(&self, name: &str) -> Result<Vec<u8>, BackupError> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join(name);
                let io = |source| BackupError::Io {
                    action: "reading",
                    path: path.clone(),
                    source,
                };
                let size = std::fs::metadata(&path).map_err(io)?.len();
                if size > MAX_OBJECT {
                    return Err(BackupError::BadSegment {
                        path,
                        reason: format!("larger than the {MAX_OBJECT} bytes it may have"),
                    });
                }
                std::fs::read(&path).map_err(io)
            }
            Store::Object {
                destination,
                prefix,
            } => destination.get(&format!("{prefix}{name}"), MAX_OBJECT),
        }
    }

    /// The names in the stream (none when it does not exist yet).
    pub fn list(&self) -> Result<Vec<String>, BackupError> {
        let mut names = match self {
            Store::Dir(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(source) => {
                    return Err(BackupError::Io {
                        action: "listing",
                        path: dir.clone(),
                        source,
                    });
                }
            },
            Store::Object {
                destination,
                prefix,
            } => destination
                .list(prefix)?
                .into_iter()
                .filter_map(|o| o.key.strip_prefix(prefix.as_str()).map(str::to_owned))
                .filter(|name| !name.contains('/'))
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// Removes `name` (a missing one counts as removed).
    pub fn delete(&self, name: &str) -> Result<(), BackupError> {
        match self {
            Store::Dir(dir) => match std::fs::remove_file(dir.join(name)) {
                Ok(()) => sync_dir(dir),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(BackupError::Io {
                    action: "removing",
                    path: dir.join(name),
                    source,
                }),
            },
            Store::Object {
                destination,
                prefix,
            } => destination.delete(&format!("{prefix}{name}")),
        }
    }
}

/// What a base archive's marker says: the stream replays onto it from `replay_from`, and
/// must be replayed at least through `through` (the log's end when the base was finished,
/// so past everything the base holds) before it is the database at any one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseMarker {
    /// `cairn-wal-base`.
    pub format: String,
    pub version: u32,
    pub database: String,
    /// The base archive's file name, in the collection beside the stream.
    pub base: String,
    /// Its snapshot instant (RFC 3339).
    pub base_created_at: String,
    /// The first segment to replay onto it.
    pub replay_from: u64,
    /// The last segment that must be replayed (below `replay_from`: none).
    pub through: u64,
}

pub const MARKER_FORMAT: &str = "cairn-wal-base";

impl BaseMarker {
    /// The marker's name in the stream.
    pub fn name_for(base: &str) -> String {
        format!("base-{base}.json")
    }

    pub fn is_marker_name(name: &str) -> bool {
        name.starts_with("base-") && name.ends_with(".json")
    }
}

/// The name of the idle note: rewritten now and then while nothing is shipped.
pub const IDLE_NOTE: &str = "idle.json";

/// What the idle note says: every transaction committed before `complete_at` (Unix
/// microseconds) is in the segments up to `through`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Idle {
    pub through: u64,
    pub complete_at: i64,
}
