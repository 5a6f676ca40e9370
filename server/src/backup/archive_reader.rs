//! Reading an archive back: every check a restore relies on. Nothing is trusted before it is
//! checked: entry names (no `..`, no absolute paths, nothing unexpected), the manifest, every
//! entry's CRC, size and SHA-256, and finally SQLite's own integrity check of the database.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};

use std::path::{Path, PathBuf};
use zip::HasZipMetadata as _;

use rusqlite::{Connection, OpenFlags};
use sha2::{Digest as _, Sha256};

use std::sync::Arc;

use super::encryption::{Key, Keyring};
use super::error::BackupError;
use super::manifest::{self, Manifest};
use super::progress::Progress;

/// An archive whose structure and manifest have been checked: a local file, or any reader
/// that can seek (an object in a destination).
#[derive(Debug)]
pub struct ArchiveReader<R: Read + Seek = BufReader<File>> {
    path: PathBuf,
    zip: zip::ZipArchive<R>,
    pub manifest: Manifest,
    /// The manifest as stored, for the comparison with its sealed copy.
    manifest_text: String,
    /// The key of an encrypted archive, once [`ArchiveReader::unlock`] found it.
    key: Option<Arc<Key>>,
}

/// What a full verification found.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub database_bytes: u64,
}

impl ArchiveReader {
    /// Opens `path` and checks its entry names and manifest.
    pub fn open(path: &Path) -> Result<ArchiveReader, BackupError> {
        let file = File::open(path).map_err(|source| BackupError::Io {
            action: "opening",
            path: path.to_owned(),
            source,
        })?;
        ArchiveReader::from_reader(BufReader::new(file), path)
    }
}

impl<R: Read + Seek> ArchiveReader<R> {
    /// Reads the archive in `reader` (named `path` in errors) and checks its entry names and
    /// manifest.
    pub fn from_reader(reader: R, path: &Path) -> Result<ArchiveReader<R>, BackupError> {
        let not_archive = |reason: String| BackupError::NotAnArchive {
            path: path.to_owned(),
            reason,
        };
        let mut zip = zip::ZipArchive::new(reader)
            .map_err(|e| not_archive(format!("not a readable ZIP file ({e})")))?;
        let names: Vec<String> = zip
            .file_names()
            .map(|name| name.map(|n| n.into_owned()))
            .collect::<Result<_, _>>()
            .map_err(|e| not_archive(format!("unreadable entry name ({e})")))?;
        for name in &names {
            check_entry_name(name).map_err(|reason| BackupError::Damaged {
                path: path.to_owned(),
                entry: name.clone(),
                reason,
            })?;
        }
        let damaged = |entry: &str, reason: String| BackupError::Damaged {
            path: path.to_owned(),
            entry: entry.to_owned(),
            reason,
        };
        let mut text = String::new();
        {
            let mut entry = zip
                .by_name(manifest::MANIFEST_ENTRY)
                .map_err(|_| not_archive(format!("it has no {}", manifest::MANIFEST_ENTRY)))?;
            // Read whole, so bounded: a crafted archive may declare, or inflate to, gigabytes.
            let too_long = |bytes: u64| {
                not_archive(format!(
                    "its manifest.json is {bytes} bytes long (declared or read), and a manifest is at most {} bytes",
                    manifest::MAX_MANIFEST_BYTES
                ))
            };
            if entry.size() > manifest::MAX_MANIFEST_BYTES {
                return Err(too_long(entry.size()));
            }
            (&mut entry)
                .take(manifest::MAX_MANIFEST_BYTES + 1)
                .read_to_string(&mut text)
                .map_err(|e| damaged(manifest::MANIFEST_ENTRY, e.to_string()))?;
            if text.len() as u64 > manifest::MAX_MANIFEST_BYTES {
                return Err(too_long(text.len() as u64));
            }
        }
        let manifest: Manifest = serde_json::from_str(&text).map_err(|e| BackupError::Damaged {
            path: path.to_owned(),
            entry: manifest::MANIFEST_ENTRY.into(),
            reason: format!("invalid manifest: {e}"),
        })?;
        if manifest.format != manifest::FORMAT_NAME {
            return Err(not_archive(format!(
                "its manifest says format {:?}, not {:?}",
                manifest.format,
                manifest::FORMAT_NAME
            )));
        }
        if manifest.format_version > manifest::FORMAT_VERSION {
            return Err(BackupError::Unsupported {
                path: path.to_owned(),
                reason: format!(
                    "archive format {} was written by Cairn {}; this server reads format {} and older: upgrade Cairn to restore it",
                    manifest.format_version,
                    manifest.server_version,
                    manifest::FORMAT_VERSION
                ),
            });
        }
        if let Some(e) = &manifest.encryption {
            // Named in errors and looked up: it must be a key name, not arbitrary text.
            if crate::catalog::validate_identifier("key", &e.key).is_err() {
                return Err(damaged(
                    manifest::MANIFEST_ENTRY,
                    "its encryption names a key that is not a key name".into(),
                ));
            }
            if e.algorithm != super::encryption::ALGORITHM
                || e.entries != super::encryption::ENTRY_FORMAT
            {
                return Err(BackupError::Unsupported {
                    path: path.to_owned(),
                    reason: format!(
                        "its entries are encrypted as {:?} {:?}, and this server reads {} {}",
                        e.algorithm,
                        e.entries,
                        super::encryption::ALGORITHM,
                        super::encryption::ENTRY_FORMAT
                    ),
                });
            }
        }
        for name in &names {
            if name != manifest::MANIFEST_ENTRY
                && name != manifest::SEALED_MANIFEST_ENTRY
                && !manifest.entries.iter().any(|e| &e.name == name)
            {
                return Err(BackupError::Damaged {
                    path: path.to_owned(),
                    entry: name.clone(),
                    reason: "the entry is not listed in the manifest".into(),
                });
            }
        }
        for entry in &manifest.entries {
            if !names.contains(&entry.name) {
                return Err(BackupError::Damaged {
                    path: path.to_owned(),
                    entry: entry.name.clone(),
                    reason: "listed in the manifest but missing from the archive".into(),
                });
            }
            // The ZIP's own record of the size must agree, so neither can be inflated alone;
            // read raw, as an encrypted entry cannot be opened without its key.
            let raw = zip
                .index_for_name(&entry.name)
                .ok_or_else(|| damaged(&entry.name, "missing from the archive".into()))
                .and_then(|index| {
                    zip.by_index_raw(index)
                        .map_err(|e| damaged(&entry.name, e.to_string()))
                })?;
            // Sealed as we seal: WinZip AES-256, AE-2 (not ZipCrypto, not AE-1).
            let encrypted = raw.encrypted()
                && matches!(
                    raw.get_metadata().aes_settings(),
                    Some((
                        zip::AesMode::Aes256,
                        zip::unstable::format::aes::AesVendorVersion::Ae2
                    ))
                );
            let declared = raw.size();
            drop(raw);
            if encrypted != manifest.encryption.is_some() {
                return Err(damaged(
                    &entry.name,
                    if encrypted {
                        "the entry is encrypted, but the manifest says the archive is not".into()
                    } else {
                        "the entry is not encrypted, but the manifest says the archive is".into()
                    },
                ));
            }
            if declared != entry.size {
                return Err(damaged(
                    &entry.name,
                    format!(
                        "the archive declares {declared} bytes, the manifest {}",
                        entry.size
                    ),
                ));
            }
        }
        let sealed_copy = names.iter().any(|n| n == manifest::SEALED_MANIFEST_ENTRY);
        if sealed_copy != manifest.encryption.is_some() {
            return Err(damaged(
                manifest::SEALED_MANIFEST_ENTRY,
                if sealed_copy {
                    "a sealed manifest in an archive whose manifest says it is not encrypted".into()
                } else {
                    "missing: an encrypted archive carries its manifest sealed too".into()
                },
            ));
        }
        let listed = |name: &str| manifest.entries.iter().find(|e| e.name == name);
        let expected: &[&str] = match manifest.kind.as_str() {
            manifest::INCREMENTAL => &[manifest::PAGE_MAP_ENTRY, manifest::PAGES_ENTRY],
            manifest::EXPORT => &[manifest::EXPORT_ENTRY],
            _ => &[manifest::DATABASE_ENTRY],
        };
        for name in expected {
            if listed(name).is_none() {
                return Err(not_archive(format!(
                    "its manifest ({} archive) lists no {name}",
                    manifest.kind
                )));
            }
        }
        if let Some(other) = manifest
            .entries
            .iter()
            .find(|e| !expected.contains(&e.name.as_str()))
        {
            return Err(damaged(
                &other.name,
                format!("a {} archive holds no such entry", manifest.kind),
            ));
        }
        if manifest.kind == manifest::INCREMENTAL {
            check_increment(&manifest).map_err(|(entry, reason)| damaged(entry, reason))?;
        } else if let Some(database) = listed(manifest::DATABASE_ENTRY)
            && manifest.page_size.checked_mul(manifest.page_count) != Some(database.size)
        {
            // A database file is exactly its pages.
            return Err(damaged(
                manifest::DATABASE_ENTRY,
                format!(
                    "the manifest lists {} bytes, but {} pages of {} bytes",
                    database.size, manifest.page_count, manifest.page_size
                ),
            ));
        }
        Ok(ArchiveReader {
            path: path.to_owned(),
            zip,
            manifest,
            manifest_text: text,
            key: None,
        })
    }

    /// Finds the key an encrypted archive names in `keys` (one not configured is an error
    /// when the archive's data is first read, not now: listing needs no key).
    pub fn unlock(mut self, keys: &Keyring) -> ArchiveReader<R> {
        if let Some(e) = &self.manifest.encryption {
            self.key = keys.find(&e.key);
        }
        self
    }

    /// As [`Self::unlock`], with the key itself (an archive read back as it is written).
    pub fn with_key(mut self, key: Option<Arc<Key>>) -> ArchiveReader<R> {
        self.key = key;
        self
    }

    /// The name of the key an encrypted archive was written with.
    pub fn key_name(&self) -> Option<&str> {
        self.manifest.encryption.as_ref().map(|e| e.key.as_str())
    }

    /// Proves, before anything is written, that the key opens every entry (its password
    /// verifier; the authentication code is checked as each entry is read through).
    pub fn check_key(&mut self) -> Result<(), BackupError> {
        if self.manifest.encryption.is_none() {
            return Ok(());
        }
        for entry in self.manifest.entries.clone() {
            self.open_entry(&entry.name).map(drop)?;
        }
        // The plain manifest is what its sealed copy says (read to its end: authenticated).
        let mut sealed = String::new();
        let path = self.path.clone();
        let damaged = |reason: String| BackupError::Damaged {
            path: path.clone(),
            entry: manifest::SEALED_MANIFEST_ENTRY.into(),
            reason,
        };
        self.open_entry(manifest::SEALED_MANIFEST_ENTRY)?
            .take(manifest::MAX_MANIFEST_BYTES + 1)
            .read_to_string(&mut sealed)
            .map_err(|e| damaged(e.to_string()))?;
        if sealed != self.manifest_text {
            return Err(damaged(
                "the plain manifest.json differs from the copy sealed with the key: it was altered"
                    .into(),
            ));
        }
        Ok(())
    }

    /// An encrypted export's file (its key proven first) and its size: read it through to its
    /// end, so that the authentication code is checked.
    pub fn export_entry(&mut self) -> Result<(zip::read::ZipFile<'_, R>, u64), BackupError> {
        let entry = self.listed(manifest::EXPORT_ENTRY)?;
        self.check_key()?;
        Ok((self.open_entry(manifest::EXPORT_ENTRY)?, entry.size))
    }

    /// Refuses to restore what is not a database: an encrypted export.
    fn restorable(&self) -> Result<(), BackupError> {
        if self.manifest.kind == manifest::EXPORT {
            return Err(BackupError::Unsupported {
                path: self.path.clone(),
                reason: "it is an encrypted export, not a backup archive: load it with IMPORT DATABASE name FROM '…'".into(),
            });
        }
        Ok(())
    }

    /// Entry `name`, decrypted with the archive's key when it is encrypted.
    fn open_entry(&mut self, name: &str) -> Result<zip::read::ZipFile<'_, R>, BackupError> {
        let damaged = |reason: String| BackupError::Damaged {
            path: self.path.clone(),
            entry: name.to_owned(),
            reason,
        };
        let Some(encryption) = &self.manifest.encryption else {
            return self.zip.by_name(name).map_err(|e| damaged(e.to_string()));
        };
        let Some(key) = &self.key else {
            return Err(BackupError::KeyMissing {
                path: self.path.clone(),
                key: encryption.key.clone(),
            });
        };
        match self.zip.by_name_decrypt(name, key.passphrase()) {
            Err(zip::result::ZipError::InvalidPassword) => Err(BackupError::WrongKey {
                path: self.path.clone(),
                key: encryption.key.clone(),
                entry: name.to_owned(),
                reason: "its password verifier differs",
            }),
            other => other.map_err(|e| damaged(e.to_string())),
        }
    }

    /// Bytes of every listed entry, uncompressed.
    pub fn total_size(&self) -> u64 {
        self.manifest.entries.iter().map(|e| e.size).sum()
    }

    /// Where errors name this archive.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the database entry to `dest` (a new file), checking CRC, size and SHA-256 on the
    /// way, then runs SQLite's integrity check on it. `dest` is left for the caller to remove
    /// on error.
    pub fn extract_database(
        &mut self,
        dest: &Path,
        progress: &Progress,
    ) -> Result<Verified, BackupError> {
        let verified = self.extract_image(dest, progress)?;
        self.check_database(dest)?;
        Ok(verified)
    }

    /// SQLite's integrity check of the image at `path`, against this archive's geometry.
    pub fn check_database(&self, path: &Path) -> Result<(), BackupError> {
        integrity_check(path, &self.manifest).map_err(|reason| BackupError::Damaged {
            path: self.path.clone(),
            entry: match self.manifest.kind.as_str() {
                manifest::INCREMENTAL => manifest::PAGES_ENTRY.into(),
                _ => manifest::DATABASE_ENTRY.into(),
            },
            reason,
        })
    }

    /// Applies this increment to the image at `image` (its parent's, rebuilt): every page of
    /// its page map at its place, then the image cut or grown to its page count. Entries
    /// are checked (CRC, size, SHA-256) as they are read.
    pub fn apply_increment(
        &mut self,
        image: &Path,
        progress: &Progress,
    ) -> Result<(), BackupError> {
        self.restorable()?;
        let map_entry = self.listed(manifest::PAGE_MAP_ENTRY)?;
        let pages_entry = self.listed(manifest::PAGES_ENTRY)?;
        self.check_key()?;
        // At most 4 bytes per page of the image: `check_increment` bounded it.
        let mut map = Vec::with_capacity(usize::try_from(map_entry.size).unwrap_or(0));
        self.copy_entry(&map_entry, &mut map, Path::new(""), progress)?;
        let pages =
            super::incremental::decode_map(&map, self.manifest.page_count).map_err(|reason| {
                BackupError::Damaged {
                    path: self.path.clone(),
                    entry: manifest::PAGE_MAP_ENTRY.into(),
                    reason,
                }
            })?;
        let io = |source| BackupError::Io {
            action: "rebuilding",
            path: image.to_owned(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .map_err(io)?;
        let mut placer =
            super::incremental::PagePlacer::new(&file, &pages, self.manifest.page_size);
        self.copy_entry(&pages_entry, &mut placer, image, progress)?;
        file.set_len(self.manifest.page_size * self.manifest.page_count)
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        Ok(())
    }

    fn listed(&self, name: &str) -> Result<manifest::ManifestEntry, BackupError> {
        self.manifest
            .entries
            .iter()
            .find(|e| e.name == name)
            .cloned()
            .ok_or_else(|| BackupError::Damaged {
                path: self.path.clone(),
                entry: name.into(),
                reason: "not listed in the manifest".into(),
            })
    }

    /// As [`Self::extract_database`], without the integrity check (the image of a full
    /// archive an increment will be applied to).
    pub fn extract_image(
        &mut self,
        dest: &Path,
        progress: &Progress,
    ) -> Result<Verified, BackupError> {
        self.restorable()?;
        let archive = self.path.clone();
        let damaged = |reason: String| BackupError::Damaged {
            path: archive.clone(),
            entry: manifest::DATABASE_ENTRY.into(),
            reason,
        };
        let Some(expected) = self
            .manifest
            .entries
            .iter()
            .find(|e| e.name == manifest::DATABASE_ENTRY)
            .cloned()
        else {
            return Err(damaged("not listed in the manifest".into()));
        };
        progress.set_total(expected.size);
        // Refused before the first byte: the key must open it, the database must fit where
        // it is going.
        self.check_key()?;
        ensure_room("restoring this archive's database", dest, expected.size)?;
        let out = crate::new_file::create_new(dest).map_err(|source| BackupError::Io {
            action: "creating",
            path: dest.to_owned(),
            source,
        })?;
        let mut out = BufWriter::with_capacity(1 << 20, out);
        let size = self.copy_entry(&expected, &mut out, dest, progress)?;
        let io = |source| BackupError::Io {
            action: "writing",
            path: dest.to_owned(),
            source,
        };
        let file = out.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        Ok(Verified {
            manifest: self.manifest.clone(),
            database_bytes: size,
        })
    }

    /// Everything a restore checks, with the database extracted into a scratch directory in
    /// `near` (else the system's temporary directory) that is removed afterwards.
    pub fn verify_near(
        &mut self,
        near: &Path,
        progress: &Progress,
    ) -> Result<Verified, BackupError> {
        let scratch = tempfile::Builder::new()
            .prefix(super::files::TEMP_PREFIX)
            .tempdir_in(near)
            .or_else(|_| tempfile::Builder::new().prefix("cairn-verify-").tempdir())
            .map_err(|source| BackupError::Io {
                action: "creating a scratch directory to verify",
                path: self.path.clone(),
                source,
            })?;
        self.extract_database(&scratch.path().join("database.sqlite"), progress)
    }

    /// Reads every entry the manifest lists through its CRC, size and SHA-256 checks,
    /// writing nothing (an upload read back before it is published).
    pub fn check_entries(&mut self, progress: &Progress) -> Result<(), BackupError> {
        self.check_key()?;
        for expected in self.manifest.entries.clone() {
            self.copy_entry(&expected, &mut std::io::sink(), Path::new(""), progress)?;
        }
        Ok(())
    }

    /// Streams entry `expected` into `out` (`dest` names it in errors), checking it against
    /// the manifest on the way; returns its size.
    fn copy_entry(
        &mut self,
        expected: &manifest::ManifestEntry,
        out: &mut impl Write,
        dest: &Path,
        progress: &Progress,
    ) -> Result<u64, BackupError> {
        let path = self.path.clone();
        let damaged = |reason: String| BackupError::Damaged {
            path: path.clone(),
            entry: expected.name.clone(),
            reason,
        };
        let mut entry = self.open_entry(&expected.name)?;
        let mut sha = Sha256::new();
        let mut size = 0u64;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            progress.check()?;
            // The zip reader checks the CRC when the entry ends.
            let n = entry
                .read(&mut buffer)
                .map_err(|e| damaged(e.to_string()))?;
            if n == 0 {
                break;
            }
            size += n as u64;
            if size > expected.size {
                return Err(damaged(format!(
                    "longer than the {} bytes the manifest lists",
                    expected.size
                )));
            }
            sha.update(&buffer[..n]);
            out.write_all(&buffer[..n])
                .map_err(|source| BackupError::Io {
                    action: "writing",
                    path: dest.to_owned(),
                    source,
                })?;
            progress.advance(n as u64);
        }
        if size != expected.size {
            return Err(damaged(format!(
                "{size} bytes, but the manifest lists {}",
                expected.size
            )));
        }
        let actual = manifest::hex(&sha.finalize());
        if actual != expected.sha256 {
            return Err(damaged(format!(
                "SHA-256 {actual} does not match the manifest's {}",
                expected.sha256
            )));
        }
        Ok(size)
    }
}

/// Refuses, before anything is written, a file of `needed` bytes at `dest` that its disk has
/// no room for.
pub(super) fn ensure_room(what: &'static str, dest: &Path, needed: u64) -> Result<(), BackupError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let available = crate::disk_space::available(dir).map_err(|source| BackupError::Io {
        action: "reading the free space of",
        path: dir.to_owned(),
        source,
    })?;
    if available < needed {
        return Err(BackupError::NoSpace {
            what,
            path: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Refuses names that could write outside a restore directory or that we never write.
fn check_entry_name(name: &str) -> Result<(), String> {
    let unsafe_name = name.starts_with('/')
        || name.starts_with('\\')
        || name.contains('\\')
        || name.split('/').any(|part| part == "..")
        || name.as_bytes().get(1) == Some(&b':')
        || name.contains('\0');
    if unsafe_name {
        return Err(
            "unsafe entry name (absolute, or containing '..'); refusing the archive".into(),
        );
    }
    let known = [
        manifest::MANIFEST_ENTRY,
        manifest::DATABASE_ENTRY,
        manifest::PAGE_MAP_ENTRY,
        manifest::PAGES_ENTRY,
        manifest::EXPORT_ENTRY,
        manifest::SEALED_MANIFEST_ENTRY,
    ];
    if !known.contains(&name) {
        return Err(format!(
            "unexpected entry; a Cairn archive holds only {}",
            known.join(", ")
        ));
    }
    Ok(())
}

/// An increment's manifest: a parent, an image digest, and entries whose sizes fit the page
/// geometry (so that a crafted one cannot make a reader allocate or write without bound).
fn check_increment(m: &Manifest) -> Result<(), (&'static str, String)> {
    let entry = |name| m.entries.iter().find(|e| e.name == name);
    let (Some(map), Some(pages)) = (
        entry(manifest::PAGE_MAP_ENTRY),
        entry(manifest::PAGES_ENTRY),
    ) else {
        return Err((
            manifest::MANIFEST_ENTRY,
            "an increment lists pages.map and pages.bin".into(),
        ));
    };
    let (Some(parent), Some(_)) = (&m.parent, &m.image_sha256) else {
        return Err((
            manifest::MANIFEST_ENTRY,
            "an increment's manifest names its parent and its image's SHA-256".into(),
        ));
    };
    // A sibling's plain file name: nothing that could lead out of the collection.
    let name = parent.name.as_str();
    if !super::chain::is_plain_archive_name(name) {
        return Err((
            manifest::MANIFEST_ENTRY,
            format!("its parent {name:?} is not the plain name of an archive beside it"),
        ));
    }
    // SQLite's own limits: a crafted geometry must not size anything.
    if !(512..=65536).contains(&m.page_size)
        || !m.page_size.is_power_of_two()
        || m.page_count > u64::from(u32::MAX - 1)
    {
        return Err((
            manifest::MANIFEST_ENTRY,
            format!(
                "{} pages of {} bytes is not a SQLite database's geometry",
                m.page_count, m.page_size
            ),
        ));
    }
    if map.size > super::incremental::MAX_MAP_BYTES {
        return Err((
            manifest::PAGE_MAP_ENTRY,
            format!(
                "{} bytes; an increment lists at most {} pages",
                map.size,
                super::incremental::MAX_MAP_BYTES / 4
            ),
        ));
    }
    if !map.size.is_multiple_of(4) || map.size / 4 > m.page_count {
        return Err((
            manifest::PAGE_MAP_ENTRY,
            format!(
                "{} bytes do not list at most {} pages",
                map.size, m.page_count
            ),
        ));
    }
    if Some(pages.size) != (map.size / 4).checked_mul(m.page_size) {
        return Err((
            manifest::PAGES_ENTRY,
            format!(
                "{} bytes, but the page map lists {} pages of {} bytes",
                pages.size,
                map.size / 4,
                m.page_size
            ),
        ));
    }
    Ok(())
}

/// SQLite's `PRAGMA integrity_check` plus the page geometry the manifest promises.
fn integrity_check(path: &Path, manifest: &Manifest) -> Result<(), String> {
    let conn = sqlite_integrity(path)?;
    let pragma = |name: &str| {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0))
            .map(|v| v as u64)
            .map_err(|e| e.to_string())
    };
    let (page_size, page_count) = (pragma("page_size")?, pragma("page_count")?);
    if (page_size, page_count) != (manifest.page_size, manifest.page_count) {
        return Err(format!(
            "{page_count} pages of {page_size} bytes, but the manifest lists {} of {}",
            manifest.page_count, manifest.page_size
        ));
    }
    if let Some(expected) = &manifest.row_counts {
        let found =
            super::snapshot::count_rows(&conn).map_err(|e| format!("counting its rows: {e}"))?;
        if &found != expected {
            return Err(row_count_difference(expected, &found));
        }
    }
    Ok(())
}

/// How the rows found differ from those the manifest recorded at snapshot time.
fn row_count_difference(
    expected: &std::collections::BTreeMap<String, u64>,
    found: &std::collections::BTreeMap<String, u64>,
) -> String {
    let mut differences = Vec::new();
    for (table, rows) in expected {
        match found.get(table) {
            Some(n) if n == rows => {}
            Some(n) => differences.push(format!(
                "table {table} has {n} rows, the manifest recorded {rows}"
            )),
            None => differences.push(format!(
                "table {table} (recorded with {rows} rows) is missing"
            )),
        }
    }
    for (table, n) in found {
        if !expected.contains_key(table) {
            differences.push(format!("table {table} ({n} rows) is not in the manifest"));
        }
    }
    let shown: Vec<&str> = differences.iter().take(5).map(String::as_str).collect();
    format!(
        "row counts differ from the snapshot's: {}",
        shown.join("; ")
    )
}

/// SQLite's integrity check of the database file at `path` (opened read-only); the open
/// connection when it is `ok`.
pub fn sqlite_integrity(path: &Path) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("SQLite cannot open it: {e}"))?;
    let mut stmt = conn
        .prepare("PRAGMA integrity_check")
        .map_err(|e| format!("not a SQLite database: {e}"))?;
    let problems: Vec<String> = stmt
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| format!("SQLite integrity check failed: {e}"))?;
    if problems != ["ok"] {
        let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
        return Err(format!("SQLite integrity check: {}", shown.join("; ")));
    }
    drop(stmt);
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::zip_writer::{DosTime, Method, ZipWriter};

    /// An archive holding `manifest` (as written) and a database entry that declares
    /// `declared` bytes but stores only `data`, deflated.
    fn crafted(dir: &Path, manifest: &str, declared: u64, data: &[u8]) -> PathBuf {
        let path = dir.join("crafted.zip");
        let deflate = |bytes: &[u8]| {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let when = DosTime::from_utc(chrono::Utc::now());
        let mut zip = ZipWriter::new(File::create(&path).unwrap()).unwrap();
        zip.start_entry(manifest::DATABASE_ENTRY, Method::Deflated, declared, when)
            .unwrap();
        zip.write_data(&deflate(data)).unwrap();
        zip.finish_entry(crc32fast::hash(data), declared).unwrap();
        let json = manifest.as_bytes();
        zip.start_entry(
            manifest::MANIFEST_ENTRY,
            Method::Deflated,
            json.len() as u64,
            when,
        )
        .unwrap();
        zip.write_data(&deflate(json)).unwrap();
        zip.finish_entry(crc32fast::hash(json), json.len() as u64)
            .unwrap();
        zip.finish().unwrap();
        path
    }

    fn manifest_json(size: u64, page_size: u64, page_count: u64) -> String {
        serde_json::json!({
            "format": "cairn-backup", "format_version": 1, "server_version": "0.1.0",
            "sqlite_version": "3.54.1", "database": "sales", "kind": "full",
            "created_at": "2026-11-21T11:26:41.113Z", "page_size": page_size,
            "page_count": page_count, "compression_level": 6,
            "entries": [{"name": "database.sqlite", "size": size, "sha256": "00"}]
        })
        .to_string()
    }

    /// A manifest that says the archive is encrypted while its entries are plain could hand
    /// a reader data no key ever authenticated: refused, naming the entry.
    #[test]
    fn crafted_archive_plain_entries_under_an_encrypted_manifest_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_str(&manifest_json(4096, 4096, 1)).unwrap();
        manifest["format_version"] = 3.into();
        manifest["encryption"] = serde_json::json!({
            "algorithm": "aes-256", "entries": "winzip-ae2", "key": "k"
        });
        let path = crafted(dir.path(), &manifest.to_string(), 4096, &[0u8; 4096]);
        let refused = refusal(&path);
        assert!(
            refused.contains("not encrypted, but the manifest says the archive is"),
            "{refused}"
        );
    }

    /// Writes `data` as the sealed entry `name` (deflated) of `zip`.
    fn sealed_entry(
        zip: &mut ZipWriter<File>,
        key: &crate::backup::encryption::Key,
        name: &str,
        data: &[u8],
    ) {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        let compressed = e.finish().unwrap();
        let mut sealer = crate::backup::encryption::Sealer::new(key);
        let when = DosTime::from_utc(chrono::Utc::now());
        zip.start_sealed_entry(name, Method::Deflated, data.len() as u64, when)
            .unwrap();
        zip.write_data(sealer.header()).unwrap();
        zip.write_data(sealer.seal(&compressed)).unwrap();
        zip.write_data(&sealer.finish()).unwrap();
        zip.finish_entry(0, data.len() as u64).unwrap();
    }

    /// The plain manifest of an encrypted archive is only believed once its sealed copy, read
    /// with the key, says the same: rewriting the hashes or row counts under sealed entries
    /// is found before anything is written.
    #[test]
    fn crafted_archive_an_encrypted_archives_altered_manifest_is_refused_with_the_key() {
        use crate::backup::encryption::{Key, Keyring};
        let dir = tempfile::tempdir().unwrap();
        let key = Key::new("k", b"a passphrase");
        let mut manifest: serde_json::Value =
            serde_json::from_str(&manifest_json(4096, 4096, 1)).unwrap();
        manifest["format_version"] = 3.into();
        manifest["encryption"] = serde_json::json!({
            "algorithm": "aes-256", "entries": "winzip-ae2", "key": "k"
        });
        let sealed_text = manifest.to_string();
        manifest["row_counts"] = serde_json::json!({"t": 5});
        let plain_text = manifest.to_string();
        let path = dir.path().join("altered.zip");
        let when = DosTime::from_utc(chrono::Utc::now());
        let mut zip = ZipWriter::new(File::create(&path).unwrap()).unwrap();
        sealed_entry(&mut zip, &key, manifest::DATABASE_ENTRY, &[0u8; 4096]);
        zip.start_entry(
            manifest::MANIFEST_ENTRY,
            Method::Stored,
            plain_text.len() as u64,
            when,
        )
        .unwrap();
        zip.write_data(plain_text.as_bytes()).unwrap();
        zip.finish_entry(
            crc32fast::hash(plain_text.as_bytes()),
            plain_text.len() as u64,
        )
        .unwrap();
        sealed_entry(
            &mut zip,
            &key,
            manifest::SEALED_MANIFEST_ENTRY,
            sealed_text.as_bytes(),
        );
        zip.finish().unwrap();

        let keys = Keyring::of([Key::new("k", b"a passphrase")]);
        let mut reader = ArchiveReader::open(&path).unwrap().unlock(&keys);
        let dest = dir.path().join("restored.sqlite");
        let refused = reader
            .extract_image(&dest, &Progress::default())
            .unwrap_err()
            .to_string();
        assert!(refused.contains("it was altered"), "{refused}");
        assert!(!dest.exists());
    }

    fn refusal(path: &Path) -> String {
        match ArchiveReader::open(path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.to_string(),
        }
    }

    fn increment(parent: &str, page_size: u64, page_count: u64, map: u64) -> Manifest {
        serde_json::from_value(serde_json::json!({
            "format": "cairn-backup", "format_version": 2, "server_version": "0.1.0",
            "sqlite_version": "3.54.1", "database": "sales", "kind": "incremental",
            "created_at": "2026-12-02T06:00:00.000Z", "page_size": page_size,
            "page_count": page_count, "compression_level": 6,
            "entries": [{"name": "pages.map", "size": map, "sha256": "00"},
                        {"name": "pages.bin", "size": map / 4 * page_size, "sha256": "00"}],
            "image_sha256": "00",
            "parent": {"name": parent, "created_at": "2026-12-01T00:00:00Z", "image_sha256": "00"}
        }))
        .unwrap()
    }

    #[test]
    fn crafted_increment_parents_and_geometry_are_refused() {
        assert!(check_increment(&increment("sales-full.zip", 4096, 100, 40)).is_ok());
        for parent in [
            "../other/x.zip",
            "sub/x.zip",
            "offsite:x.zip",
            ".cairn-tmp-x.zip",
            "x.json.gz",
        ] {
            let refused = check_increment(&increment(parent, 4096, 100, 40)).unwrap_err();
            assert!(refused.1.contains("plain name"), "{parent}: {refused:?}");
        }
        // A page of one byte, or four billion pages, is no SQLite database.
        assert!(check_increment(&increment("p.zip", 1, 1 << 40, 4)).is_err());
        assert!(check_increment(&increment("p.zip", 4096, 1 << 40, 4)).is_err());
        // A page map past its bound is refused before a byte of it is read.
        let huge = check_increment(&increment("p.zip", 4096, 1 << 31, 1 << 30)).unwrap_err();
        assert_eq!(huge.0, manifest::PAGE_MAP_ENTRY, "{huge:?}");
    }

    #[test]
    fn crafted_archive_a_huge_manifest_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        // Valid JSON, padded with whitespace far past what any manifest needs.
        let padded = format!("{}{}", manifest_json(4096, 4096, 1), " ".repeat(2 << 20));
        let path = crafted(dir.path(), &padded, 4096, &[0; 4096]);
        assert!(std::fs::metadata(&path).unwrap().len() < 64 << 10);
        let message = refusal(&path);
        assert!(
            message.contains("manifest.json is") && message.contains("at most 1048576 bytes"),
            "{message}"
        );
    }

    #[test]
    fn crafted_archive_declared_sizes_must_agree() {
        let dir = tempfile::tempdir().unwrap();
        // The manifest claims a gigabyte the ZIP does not.
        let path = crafted(
            dir.path(),
            &manifest_json(1 << 30, 4096, (1 << 30) / 4096),
            4096,
            &[0; 4096],
        );
        let message = refusal(&path);
        assert!(
            message.contains("the archive declares 4096 bytes, the manifest 1073741824"),
            "{message}"
        );
        // Sizes that agree with each other but not with the pages the manifest lists.
        let path = crafted(dir.path(), &manifest_json(4096, 4096, 2), 4096, &[0; 4096]);
        let message = refusal(&path);
        assert!(message.contains("2 pages of 4096 bytes"), "{message}");
    }

    #[test]
    fn crafted_archive_larger_than_the_free_space_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // A petabyte, by every declaration, in a few kilobytes.
        let size = 1u64 << 50;
        let path = crafted(
            dir.path(),
            &manifest_json(size, 4096, size / 4096),
            size,
            &[0; 4096],
        );
        let mut reader = ArchiveReader::open(&path).unwrap();
        let dest = dir.path().join("restored.sqlite");
        let err = reader
            .extract_database(&dest, &Progress::default())
            .unwrap_err();
        assert!(
            matches!(err, BackupError::NoSpace { needed, .. } if needed == size),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert!(!dest.exists());
    }
}
