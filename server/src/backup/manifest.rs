//! `manifest.json`, the first thing a reader checks: what the archive holds and how to prove
//! it is intact. The format is documented in docs/FORMATS.md, with its version log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The newest manifest format this server reads (and writes, for encrypted archives); full
/// archives are still written as [`FULL_FORMAT_VERSION`] and increments as
/// [`INCREMENT_FORMAT_VERSION`], so that older servers read them.
pub const FORMAT_VERSION: u32 = 3;
/// The format of a plain increment.
pub const INCREMENT_FORMAT_VERSION: u32 = 2;
/// The format of an encrypted archive: older servers refuse it as newer than they read,
/// rather than as damaged.
pub const ENCRYPTED_FORMAT_VERSION: u32 = 3;
/// The format of a full archive.
pub const FULL_FORMAT_VERSION: u32 = 1;
/// The value of `format`, so a stray JSON file is not taken for a manifest.
pub const FORMAT_NAME: &str = "cairn-backup";
pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const DATABASE_ENTRY: &str = "database.sqlite";
/// An increment's page numbers (4 bytes each, little-endian, ascending).
pub const PAGE_MAP_ENTRY: &str = "pages.map";
/// An increment's pages, in the page map's order.
pub const PAGES_ENTRY: &str = "pages.bin";
/// `kind` of a full archive, and of an increment.
pub const FULL: &str = "full";
pub const INCREMENTAL: &str = "incremental";
/// `kind` of an encrypted export: a ZIP whose one sealed entry is the export file.
pub const EXPORT: &str = "export";
/// Of an encrypted archive: the manifest's bytes again, sealed with the key, so that a reader
/// holding the key proves the plain manifest was not altered (it is not listed in itself).
pub const SEALED_MANIFEST_ENTRY: &str = "manifest.json.sealed";
/// An encrypted export's entry: the gzip JSON-lines export file, byte for byte.
pub const EXPORT_ENTRY: &str = "export.json.gz";
/// The largest manifest a reader accepts. Ours are a few hundred bytes; the bound keeps a
/// crafted archive from costing its inflated size in memory.
pub const MAX_MANIFEST_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The Cairn version that wrote the archive.
    pub server_version: String,
    pub sqlite_version: String,
    /// The database the snapshot was taken of.
    pub database: String,
    /// `full`: the whole database as of one instant.
    pub kind: String,
    /// When the snapshot was pinned, RFC 3339 in UTC.
    pub created_at: String,
    pub page_size: u64,
    pub page_count: u64,
    pub compression_level: u32,
    pub entries: Vec<ManifestEntry>,
    /// Of an increment: the SHA-256 of the whole database image it rebuilds (a full
    /// archive's is its database entry's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_sha256: Option<String>,
    /// Of an increment: the archive it applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Of a table-level backup: the tables it holds (the database's others were left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Of a table-level backup: the views and triggers left out with the tables they use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
    /// Of an encrypted archive: how its entries are sealed, and the name of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Box<Encryption>>,
    /// The rows of each table as of the snapshot (what a restore drill compares with).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_counts: Option<BTreeMap<String, u64>>,
}

/// How an archive's entries besides the manifest are encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encryption {
    /// `aes-256`.
    pub algorithm: String,
    /// `winzip-ae2`: WinZip AES entries, AE-2 (no CRC of the plaintext), key from PBKDF2.
    pub entries: String,
    /// The name of the configured key (`[backup.keys.NAME]`), never the key.
    pub key: String,
}

impl Manifest {
    /// The SHA-256 of the database image this archive holds or rebuilds.
    pub fn image_sha256(&self) -> Option<&str> {
        match self.kind.as_str() {
            INCREMENTAL => self.image_sha256.as_deref(),
            _ => self
                .entries
                .iter()
                .find(|e| e.name == DATABASE_ENTRY)
                .map(|e| e.sha256.as_str()),
        }
    }
}

/// The archive an increment applies to: a sibling in the same directory or prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// Its file name (the last part of its key or path).
    pub name: String,
    pub created_at: String,
    /// The SHA-256 of the image it holds or rebuilds.
    pub image_sha256: String,
}

/// One file of the archive besides the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    /// Uncompressed size in bytes.
    pub size: u64,
    /// SHA-256 of the uncompressed bytes, lowercase hex.
    pub sha256: String,
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
