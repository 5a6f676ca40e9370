//! Where SQL may read and write archives. `BACKUP … TO 'x.zip'` and `RESTORE … FROM 'x.zip'`
//! run with the server's file-system rights, so a client names files only inside directories
//! the operator chose: relative paths resolve under the backup directory, absolute paths must
//! lie under it or under one of the allowed directories. Symbolic links are resolved before
//! the check, so a link cannot lead out.

use std::path::{Component, Path, PathBuf};

use super::error::BackupError;
use super::files;

/// The operator's choice of directories (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathRules {
    pub directory: PathBuf,
    pub allowed: Vec<PathBuf>,
}

impl PathRules {
    /// Every directory archives may be in: the backup directory first.
    pub fn roots(&self) -> impl Iterator<Item = &Path> {
        std::iter::once(self.directory.as_path()).chain(self.allowed.iter().map(PathBuf::as_path))
    }

    /// The file a new archive named `requested` goes to; its directory is created if needed.
    pub fn archive_target(&self, requested: &str) -> Result<PathBuf, BackupError> {
        files::refuse_reserved(Path::new(requested))?;
        let (path, root) = self.lexical(requested)?;
        let parent = path.parent().unwrap_or(&root).to_owned();
        create_directory(&parent)?;
        self.check_real(&parent, &root, requested)?;
        if path.exists() {
            return Err(BackupError::TargetExists { path });
        }
        Ok(path)
    }

    /// The directory `requested` names (the backup directory itself included, for an empty
    /// path or "."), created if needed.
    pub fn archive_directory(&self, requested: &str) -> Result<PathBuf, BackupError> {
        files::refuse_reserved(Path::new(requested))?;
        let (path, root) = self.directory_and_root(requested)?;
        create_directory(&path)?;
        self.check_real(&path, &root, requested)?;
        Ok(path)
    }

    /// The directory `requested` names, for listing what it holds: as
    /// [`Self::archive_directory`], but nothing is created (it may not exist).
    pub fn listing_directory(&self, requested: &str) -> Result<PathBuf, BackupError> {
        let (path, root) = self.directory_and_root(requested)?;
        if path.exists() {
            self.check_real(&path, &root, requested)?;
        }
        Ok(path)
    }

    /// The directory `requested` names (the backup directory for "" or ".", a root named
    /// whole) and the root it lies under, by the names alone.
    fn directory_and_root(&self, requested: &str) -> Result<(PathBuf, PathBuf), BackupError> {
        let trimmed = requested.trim();
        if trimmed.is_empty() || trimmed == "." {
            return Ok((self.directory.clone(), self.directory.clone()));
        }
        if let Some(root) = self
            .roots()
            .find(|root| normalize(Path::new(trimmed)) == *root)
        {
            return Ok((root.to_owned(), root.to_owned()));
        }
        self.lexical(trimmed)
    }

    /// The existing archive or export file named `requested`.
    pub fn archive_source(&self, requested: &str) -> Result<PathBuf, BackupError> {
        let (path, root) = self.lexical(requested)?;
        if !path.is_file() {
            return Err(BackupError::Io {
                action: "there is no file at",
                path,
                // Said instead of the OS's "entity not found", which repeats the action.
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "SHOW ARCHIVES lists the archives and exports there are",
                ),
            });
        }
        self.check_real(&path, &root, requested)?;
        Ok(path)
    }

    fn lexical(&self, requested: &str) -> Result<(PathBuf, PathBuf), BackupError> {
        if requested.trim().is_empty() {
            return Err(BackupError::PathRefused(
                "empty archive path; write a file name such as 'sales.zip'".into(),
            ));
        }
        let requested_path = Path::new(requested);
        if requested_path.is_relative() {
            let mut path = self.directory.clone();
            for component in requested_path.components() {
                match component {
                    Component::Normal(part) => path.push(part),
                    Component::CurDir => {}
                    _ => {
                        return Err(BackupError::PathRefused(format!(
                            "archive path '{requested}' leaves the backup directory {}; use a path inside it, or an absolute path under an allowed directory",
                            self.directory.display()
                        )));
                    }
                }
            }
            if path == self.directory {
                return Err(BackupError::PathRefused(format!(
                    "archive path '{requested}' names the backup directory itself; add a file name"
                )));
            }
            return Ok((path, self.directory.clone()));
        }
        let normalized = normalize(requested_path);
        match self
            .roots()
            .find(|root| normalized.starts_with(root) && normalized != *root)
        {
            Some(root) => Ok((normalized.clone(), root.to_owned())),
            None => Err(self.outside(requested)),
        }
    }

    /// Resolves links in `path` and checks it is still under `root`.
    fn check_real(&self, path: &Path, root: &Path, requested: &str) -> Result<(), BackupError> {
        let real = path.canonicalize().map_err(|source| BackupError::Io {
            action: "resolving",
            path: path.to_owned(),
            source,
        })?;
        let real_root = root.canonicalize().unwrap_or_else(|_| root.to_owned());
        if real.starts_with(&real_root) {
            Ok(())
        } else {
            let allowed: Vec<String> = self.roots().map(|p| p.display().to_string()).collect();
            Err(BackupError::PathRefused(format!(
                "archive path '{requested}' leads through a symbolic link to {}, outside the directories backups may use ({}); point the link inside them, or add the directory to [backup] allowed_directories in the config",
                real.display(),
                allowed.join(", ")
            )))
        }
    }

    fn outside(&self, requested: &str) -> BackupError {
        let allowed: Vec<String> = self.roots().map(|p| p.display().to_string()).collect();
        BackupError::PathRefused(format!(
            "archive path '{requested}' is outside the directories backups may use ({}); use a relative path (it resolves under {}) or add the directory to [backup] allowed_directories in the config",
            allowed.join(", "),
            self.directory.display()
        ))
    }
}

/// Makes `path` a directory (and its parents), saying plainly when a file is in the way.
fn create_directory(path: &Path) -> Result<(), BackupError> {
    let in_the_way = path
        .ancestors()
        .find(|a| a.exists())
        .filter(|a| !a.is_dir())
        .map(Path::to_owned);
    if let Some(file) = in_the_way {
        return Err(BackupError::Io {
            action: "a file stands where a directory should be:",
            path: file,
            source: std::io::Error::from(std::io::ErrorKind::NotADirectory),
        });
    }
    std::fs::create_dir_all(path).map_err(|source| BackupError::Io {
        action: "creating directory",
        path: path.to_owned(),
        source,
    })
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> (tempfile::TempDir, PathRules) {
        let dir = tempfile::tempdir().unwrap();
        let rules = PathRules {
            directory: dir.path().join("backups"),
            allowed: vec![dir.path().join("extra")],
        };
        std::fs::create_dir_all(&rules.directory).unwrap();
        std::fs::create_dir_all(&rules.allowed[0]).unwrap();
        (dir, rules)
    }

    #[test]
    fn relative_paths_stay_in_the_backup_directory() {
        let (_dir, rules) = rules();
        let path = rules.archive_target("daily/a.zip").unwrap();
        assert_eq!(path, rules.directory.join("daily/a.zip"));
        for bad in ["../a.zip", "daily/../../a.zip", "", "."] {
            assert!(rules.archive_target(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn absolute_paths_only_under_allowed_directories() {
        let (dir, rules) = rules();
        let ok = rules.allowed[0].join("a.zip");
        assert_eq!(rules.archive_target(ok.to_str().unwrap()).unwrap(), ok);
        let outside = dir.path().join("elsewhere.zip");
        let err = rules
            .archive_target(outside.to_str().unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("allowed_directories"), "{err}");
        let sneaky = format!("{}/../x.zip", rules.allowed[0].display());
        assert!(rules.archive_target(&sneaky).is_err());
    }

    #[test]
    fn a_symbolic_link_cannot_lead_out() {
        let (dir, rules) = rules();
        std::os::unix::fs::symlink(dir.path(), rules.directory.join("out")).unwrap();
        let err = rules.archive_target("out/a.zip").unwrap_err().to_string();
        assert!(
            err.contains("symbolic link") && err.contains(&dir.path().display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_file_where_a_directory_should_be_is_named() {
        let (_dir, rules) = rules();
        std::fs::write(rules.directory.join("nightly"), b"in the way").unwrap();
        for err in [
            rules.archive_directory("nightly").unwrap_err(),
            rules.archive_target("nightly/a.zip").unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(
                err.contains("a file stands where a directory should be")
                    && err.contains("nightly"),
                "{err}"
            );
        }
    }

    #[test]
    fn directories_resolve_like_archives_and_may_be_a_root() {
        let (dir, rules) = rules();
        assert_eq!(rules.archive_directory("").unwrap(), rules.directory);
        assert_eq!(rules.archive_directory(".").unwrap(), rules.directory);
        let nightly = rules.archive_directory("nightly").unwrap();
        assert_eq!(nightly, rules.directory.join("nightly"));
        assert!(nightly.is_dir());
        let extra = rules.allowed[0].to_str().unwrap();
        assert_eq!(rules.archive_directory(extra).unwrap(), rules.allowed[0]);
        assert!(rules.archive_directory("../x").is_err());
        let outside = dir.path().join("elsewhere");
        assert!(rules.archive_directory(outside.to_str().unwrap()).is_err());
    }
}
