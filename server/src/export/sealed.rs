//! An encrypted export: the export file, byte for byte, as the one WinZip AES-256 entry
//! (`export.json.gz`) of a ZIP whose plain manifest (kind `export`) names the database and
//! the key. 7-Zip or `pyzipper` give back the `.json.gz` with the passphrase; IMPORT reads it
//! through the archive reader, which proves the key before anything is written and the
//! authentication code once the file is read.

use std::io::{self, Read, Seek, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::format::Header;
use super::reader::{self, Imported};
use crate::backup::archive_reader::ArchiveReader;
use crate::backup::archive_writer::write_small_entry;
use crate::backup::encryption::{ALGORITHM, ENTRY_FORMAT, Key, Sealer};
use crate::backup::manifest::{self, Manifest, ManifestEntry};
use crate::backup::progress::Progress;
use crate::backup::zip_writer::{DosTime, Method, ZipWriter};
use crate::backup::{BackupError, BackupOptions};
use crate::catalog::Catalog;

/// The export file being written into its sealed entry: what the gzip writer writes to.
pub struct SealedExport<W: Write> {
    zip: ZipWriter<W>,
    sealer: Sealer,
    sha: Sha256,
    size: u64,
    modified: DosTime,
}

impl<W: Write> std::fmt::Debug for SealedExport<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedExport")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<W: Write> SealedExport<W> {
    /// Opens the sealed entry in `zip`.
    pub fn start(mut zip: ZipWriter<W>, key: &Key) -> io::Result<SealedExport<W>> {
        let modified = DosTime::from_utc(chrono::Utc::now());
        let sealer = Sealer::new(key);
        // Stored: the export is gzip already.
        zip.start_sealed_stream(manifest::EXPORT_ENTRY, Method::Stored, modified)?;
        zip.write_data(sealer.header())?;
        Ok(SealedExport {
            zip,
            sealer,
            sha: Sha256::new(),
            size: 0,
            modified,
        })
    }

    /// Closes the entry, writes the manifest (`header` says what the export holds) and
    /// finishes the ZIP; returns the writer and the file's size.
    pub fn finish(
        mut self,
        header: &Header,
        key: &Key,
        options: &BackupOptions,
        shown: &Path,
    ) -> Result<(W, u64), BackupError> {
        let io = |source| BackupError::Io {
            action: "writing",
            path: shown.to_owned(),
            source,
        };
        self.zip.write_data(&self.sealer.finish()).map_err(io)?;
        self.zip.finish_entry(0, self.size).map_err(io)?;
        let manifest = Manifest {
            format: manifest::FORMAT_NAME.into(),
            format_version: manifest::ENCRYPTED_FORMAT_VERSION,
            server_version: env!("CARGO_PKG_VERSION").into(),
            sqlite_version: rusqlite::version().into(),
            database: header.database.clone(),
            kind: manifest::EXPORT.into(),
            created_at: header.created_at.clone(),
            page_size: 0,
            page_count: 0,
            compression_level: options.compression_level,
            entries: vec![ManifestEntry {
                name: manifest::EXPORT_ENTRY.into(),
                size: self.size,
                sha256: manifest::hex(&self.sha.finalize()),
            }],
            image_sha256: None,
            parent: None,
            tables: None,
            left_out: Vec::new(),
            encryption: Some(Box::new(manifest::Encryption {
                algorithm: ALGORITHM.into(),
                entries: ENTRY_FORMAT.into(),
                key: key.name().into(),
            })),
            row_counts: None,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| io(io::Error::other(e)))?;
        write_small_entry(
            &mut self.zip,
            manifest::MANIFEST_ENTRY,
            &json,
            self.modified,
            None,
            shown,
        )?;
        write_small_entry(
            &mut self.zip,
            manifest::SEALED_MANIFEST_ENTRY,
            &json,
            self.modified,
            Some(key),
            shown,
        )?;
        self.zip.finish().map_err(io)
    }
}

impl<W: Write> Write for SealedExport<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.sha.update(bytes);
        self.size += bytes.len() as u64;
        self.zip.write_data(self.sealer.seal(bytes))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an encrypted export's file through every check an import makes, writing nothing.
pub fn verify<R: Read + Seek>(
    archive: &mut ArchiveReader<R>,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    let shown = archive.path().to_owned();
    let (mut entry, bytes) = archive.export_entry()?;
    let imported = reader::verify_from(&mut entry, bytes, &shown, progress)?;
    to_the_end(&mut entry, &shown)?;
    Ok(imported)
}

/// Loads an encrypted export into the new database file `into` (see [`reader::load`]).
pub fn load<R: Read + Seek>(
    archive: &mut ArchiveReader<R>,
    into: &Path,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    let shown = archive.path().to_owned();
    let (mut entry, bytes) = archive.export_entry()?;
    let imported = reader::load_from(&mut entry, bytes, &shown, into, progress)?;
    to_the_end(&mut entry, &shown)?;
    Ok(imported)
}

/// As [`super::import_into`], from an encrypted export.
pub fn import<R: Read + Seek>(
    catalog: &Catalog,
    archive: &mut ArchiveReader<R>,
    name: &str,
    replace: bool,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    super::import_with(catalog, name, replace, progress, |path| {
        load(archive, path, progress)
    })
}

/// Reads what the gzip reader left of the entry: its end is where the authentication code
/// is checked.
fn to_the_end(entry: &mut impl Read, shown: &Path) -> Result<(), BackupError> {
    io::copy(entry, &mut io::sink())
        .map(drop)
        .map_err(|e| BackupError::Damaged {
            path: shown.to_owned(),
            entry: manifest::EXPORT_ENTRY.into(),
            reason: e.to_string(),
        })
}
