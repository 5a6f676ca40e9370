//! `manifest.json`, the first thing a reader checks: what the archive holds and how to prove
//! it is intact. The format is documented in docs/FORMATS.md, with its version log.

use serde::{Deserialize, Serialize};

/// The manifest format this server writes; it reads this version and older.
pub const FORMAT_VERSION: u32 = 1;
/// The value of `format`, so a stray JSON file is not taken for a manifest.
pub const FORMAT_NAME: &str = "cairn-backup";
pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const DATABASE_ENTRY: &str = "database.sqlite";
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
