//! How Cairn creates files. Every file it writes holds rows of a database (snapshots,
//! archives, exports, restores, databases) or says where they are, so each is created with
//! mode 0600 from its first byte, whatever the umask and however open its directory is. A
//! file that is not complete yet carries a temporary name, which start-up removes.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Every temporary file (or scratch directory) Cairn creates starts with this.
pub const TEMP_PREFIX: &str = ".cairn-tmp-";

/// A fresh temporary name in `dir` ending with `suffix` (nothing is created).
pub fn temporary_name(dir: &Path, suffix: &str) -> PathBuf {
    dir.join(format!(
        "{TEMP_PREFIX}{}{suffix}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Creates `path`, which must not exist, for writing, readable by its owner only.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn files_are_owner_only_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        create_new(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(create_new(&path).is_err());
    }
}
