//! Durable file handling: every archive and restored database is written under a temporary
//! name in its final directory, synced, and only then given its final name, so a crash or a
//! failure never leaves a partial file under a name that looks complete.

use std::path::{Path, PathBuf};

use super::error::BackupError;

pub use crate::new_file::TEMP_PREFIX;

/// Refuses a path with a component in the temporary pattern: start-up deletes such files, so
/// an archive by that name would be accepted, recorded complete, then lost.
pub fn refuse_reserved(path: &Path) -> Result<(), BackupError> {
    let reserved = path.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|part| part.starts_with(TEMP_PREFIX))
    });
    if reserved {
        return Err(BackupError::PathRefused(format!(
            "'{}': names starting with {TEMP_PREFIX} are Cairn's temporary files, which are removed at every start; choose another name",
            path.display()
        )));
    }
    Ok(())
}

/// A temporary file that is removed when dropped, unless it was published.
#[derive(Debug)]
pub struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    /// A fresh temporary name in `dir` (nothing is created yet).
    pub fn in_dir(dir: &Path, suffix: &str) -> TempFile {
        TempFile {
            path: crate::new_file::temporary_name(dir, suffix),
            armed: true,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives the (synced) file its final name without ever replacing an existing file, then
    /// syncs the directory so the name survives a crash.
    pub fn publish(mut self, target: &Path) -> Result<(), BackupError> {
        let io = |action, source| BackupError::Io {
            action,
            path: target.to_owned(),
            source,
        };
        // A hard link fails if the target exists: an atomic "rename without replacing".
        match std::fs::hard_link(&self.path, target) {
            Ok(()) => {
                std::fs::remove_file(&self.path).map_err(|e| io("removing the temporary", e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::TargetExists {
                    path: target.to_owned(),
                });
            }
            // File systems without hard links: check, then rename.
            Err(_) => {
                if target.exists() {
                    return Err(BackupError::TargetExists {
                        path: target.to_owned(),
                    });
                }
                std::fs::rename(&self.path, target).map_err(|e| io("renaming into", e))?;
            }
        }
        self.armed = false;
        sync_dir(target.parent().unwrap_or(Path::new(".")))
    }

    /// Leaves the file where it is (someone else moved it under its final name).
    pub fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A buffered file that makes its data durable every `sync_every` bytes as it goes. A backup
/// that left hundreds of megabytes dirty for one fsync at the end would stall every other
/// fsync on the disk (a database's commits) while that flush runs; small, regular flushes
/// keep the stall short.
#[derive(Debug)]
pub struct PacedFile {
    out: std::io::BufWriter<std::fs::File>,
    unsynced: u64,
    sync_every: u64,
}

impl PacedFile {
    pub fn new(file: std::fs::File, buffer: usize, sync_every: u64) -> PacedFile {
        PacedFile {
            out: std::io::BufWriter::with_capacity(buffer, file),
            unsynced: 0,
            sync_every,
        }
    }

    /// Flushes and syncs what is left; returns the file.
    pub fn finish(self) -> std::io::Result<std::fs::File> {
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        Ok(file)
    }
}

impl std::io::Write for PacedFile {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(bytes)?;
        self.unsynced += n as u64;
        if self.unsynced >= self.sync_every {
            self.out.flush()?;
            self.out.get_ref().sync_data()?;
            self.unsynced = 0;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

impl std::io::Seek for PacedFile {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.out.seek(to)
    }
}

/// Makes a directory's entries (a new or renamed file) durable.
pub fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| BackupError::Io {
            action: "syncing directory",
            path: dir.to_owned(),
            source,
        })
}

/// Removes the temporary files a crash or a kill left in `dir`; returns what it removed.
/// Only call this where no backup can be running (at start-up).
pub fn remove_stale_temp_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let stale = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(TEMP_PREFIX));
        let removed_it = match entry.file_type() {
            Ok(t) if stale && t.is_file() => std::fs::remove_file(entry.path()).is_ok(),
            // `cairn verify` extracts into a scratch directory.
            Ok(t) if stale && t.is_dir() => std::fs::remove_dir_all(entry.path()).is_ok(),
            _ => false,
        };
        if removed_it {
            removed.push(entry.path());
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_never_replaces_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a.zip");
        let temp = TempFile::in_dir(dir.path(), ".zip");
        std::fs::write(temp.path(), b"one").unwrap();
        temp.publish(&target).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"one");

        let temp = TempFile::in_dir(dir.path(), ".zip");
        std::fs::write(temp.path(), b"two").unwrap();
        assert!(matches!(
            temp.publish(&target),
            Err(BackupError::TargetExists { .. })
        ));
        assert_eq!(std::fs::read(&target).unwrap(), b"one");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "the temporary file was left behind");
    }

    #[test]
    fn a_backup_named_like_a_temporary_file_is_refused() {
        for reserved in [
            ".cairn-tmp-x.zip",
            "daily/.cairn-tmp-x.zip",
            ".cairn-tmp-d/a.zip",
        ] {
            let err = refuse_reserved(Path::new(reserved))
                .unwrap_err()
                .to_string();
            assert!(err.contains("temporary files"), "{reserved}: {err}");
        }
        refuse_reserved(Path::new("daily/sales.zip")).unwrap();
        refuse_reserved(Path::new("x.cairn-tmp-.zip")).unwrap();
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".cairn-tmp-abc.zip"), b"x").unwrap();
        std::fs::write(dir.path().join("keep.zip"), b"x").unwrap();
        let removed = remove_stale_temp_files(dir.path());
        assert_eq!(removed.len(), 1);
        assert!(dir.path().join("keep.zip").exists());
    }
}
