//! EXPORT and IMPORT DATABASE: a database as portable, streamable gzip JSON lines (the
//! format is in docs/FORMATS.md). A backup copies the storage; an export copies the meaning,
//! so it survives a change of storage format and is read by `zcat | jq`.
//!
//! [`format`] is the line and value encoding, [`writer`] exports from one read transaction
//! through [`gzip`] (the parallel deflate of backups), and [`reader`] checks a file as it
//! loads it into a new database file. Jobs, history, path rules and crash safety are the
//! backups' own ([`crate::backup`]).

pub mod format;
pub mod gzip;
pub mod reader;
pub mod writer;

use std::path::Path;

pub use reader::Imported;
pub use writer::Exported;

use crate::backup::BackupError;
use crate::backup::files::TempFile;
use crate::backup::progress::Progress;
use crate::catalog::Catalog;

/// Loads `file` and installs it as database `name` in `catalog` (a new database, or with
/// `replace` an existing one that no session uses). Until the whole file was read and
/// checked, the database exists only as a temporary file, removed on failure.
pub fn import_into(
    catalog: &Catalog,
    file: &Path,
    name: &str,
    replace: bool,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    crate::catalog::validate_name(name)?;
    if !replace && catalog.exists(name) {
        return Err(crate::catalog::CatalogError::AlreadyExists(name.to_owned()).into());
    }
    let temp = TempFile::in_dir(catalog.dir(), ".import");
    let imported = reader::load(file, temp.path(), progress)?;
    progress.check()?;
    catalog.install(name, temp.path(), replace)?;
    // The file now lives under its final name; nothing is left to remove.
    temp.keep();
    Ok(imported)
}

/// Whether `file` starts like a gzip file (an export) rather than a ZIP (a backup archive).
pub fn looks_like_export(file: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| magic == [0x1f, 0x8b])
}
