//! Where archives go: the local backup directory (the destination `local`, by the path rules)
//! or a named destination of the config in object storage. SQL names a file in a destination
//! as `'NAME:key'` (`'offsite:daily/d.zip'`); a name without such a prefix is local.

pub mod object;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub use object::{ObjectDestination, ObjectInfo, ObjectReader, S3Settings, SecretSource, Upload};
use tokio::runtime::Handle;

use super::error::BackupError;

/// A temporary object older than this is left from an interrupted upload, not a running one.
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The name of the local backup directory as a destination.
pub const LOCAL: &str = "local";

/// Where a request named a file.
#[derive(Debug, Clone)]
pub enum Location<'a> {
    /// A path for the path rules (relative to the backup directory, or absolute).
    Local(&'a str),
    /// A key in an object-storage destination.
    Object {
        destination: Arc<ObjectDestination>,
        key: &'a str,
    },
}

/// A file to write, wherever it is.
#[derive(Debug, Clone)]
pub enum Target {
    File(PathBuf),
    Object {
        destination: Arc<ObjectDestination>,
        key: String,
    },
}

impl Target {
    /// As the history, the log and SQL show it.
    pub fn display(&self) -> PathBuf {
        match self {
            Target::File(path) => path.clone(),
            Target::Object { destination, key } => destination.display(key).into(),
        }
    }
}

/// The configured object-storage destinations, by name.
#[derive(Debug, Default, Clone)]
pub struct Destinations {
    by_name: BTreeMap<String, Arc<ObjectDestination>>,
}

impl Destinations {
    /// Clients for every configured destination (nothing is sent yet).
    pub fn connect(settings: &[S3Settings], runtime: &Handle) -> Result<Destinations, String> {
        let mut by_name = BTreeMap::new();
        for s in settings {
            let destination = ObjectDestination::connect(s.clone(), runtime.clone())
                .map_err(|e| format!("backup destination \"{}\": {e}", s.name))?;
            by_name.insert(s.name.clone(), Arc::new(destination));
        }
        Ok(Destinations { by_name })
    }

    /// In the background, removes what crashed uploads left in every destination (see
    /// [`ObjectDestination::remove_stale_temporaries`]): a store that is down must not delay
    /// start-up.
    pub fn remove_stale_temporaries(&self) {
        for destination in self.by_name.values() {
            let destination = Arc::clone(destination);
            let spawned = std::thread::Builder::new()
                .name("destination-cleanup".into())
                .spawn(move || match destination.remove_stale_temporaries(STALE_AFTER) {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(destination = %destination.name(), removed = n, "removed temporary objects left by interrupted uploads"),
                    Err(e) => tracing::warn!(error = %e, "could not look for temporary objects left by interrupted uploads"),
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no thread to clean up a destination");
            }
        }
    }

    /// Every name a request may use, `local` first.
    pub fn names(&self) -> Vec<&str> {
        std::iter::once(LOCAL)
            .chain(self.by_name.keys().map(String::as_str))
            .collect()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ObjectDestination>> {
        self.by_name.get(name)
    }

    /// Reads `'NAME:key'` (or a plain local path).
    pub fn resolve<'a>(&self, requested: &'a str) -> Result<Location<'a>, BackupError> {
        let Some((name, key)) = split(requested) else {
            return Ok(Location::Local(requested));
        };
        if name == LOCAL {
            return Ok(Location::Local(key));
        }
        match self.by_name.get(name) {
            Some(destination) => Ok(Location::Object {
                destination: Arc::clone(destination),
                key,
            }),
            None => Err(BackupError::UnknownDestination {
                name: name.to_owned(),
                known: self.names().join(", "),
            }),
        }
    }
}

/// `NAME:rest` where NAME is an identifier: a destination prefix. Anything else (an absolute
/// path, `./a:b.zip`) is a plain path.
fn split(requested: &str) -> Option<(&str, &str)> {
    // The plugins' rule too: they tell a destination from a directory by the same function.
    cairn_plugin_api::backup_options::split_destination(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_prefixes_are_identifiers() {
        assert_eq!(
            split("offsite:daily/d.zip"),
            Some(("offsite", "daily/d.zip"))
        );
        assert_eq!(split("local:d.zip"), Some(("local", "d.zip")));
        assert_eq!(split("d.zip"), None);
        assert_eq!(split("/mnt/a:b.zip"), None);
        assert_eq!(split("./a:b.zip"), None);
        assert_eq!(split("Daily:x"), None);
    }

    #[test]
    fn an_unknown_destination_names_the_known_ones() {
        let none = Destinations::default();
        assert!(matches!(
            none.resolve("x.zip"),
            Ok(Location::Local("x.zip"))
        ));
        assert!(matches!(
            none.resolve("local:x.zip"),
            Ok(Location::Local("x.zip"))
        ));
        let err = none.resolve("offsite:x.zip").unwrap_err().to_string();
        assert!(err.contains("offsite") && err.contains("local"), "{err}");
    }
}
