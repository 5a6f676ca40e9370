//! Writing a backup archive: snapshot, then stream the copy through the parallel compressor
//! into a temporary ZIP next to the target, sync, and publish under the final name; or, for
//! object storage, into a temporary object that is read back before it is published.

use std::fs::File;
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use sha2::{Digest as _, Sha256};

use super::archive_reader::ArchiveReader;
use super::deflate::{self, DeflateOptions};
use super::destination::ObjectDestination;
use super::encryption::{ALGORITHM, ENTRY_FORMAT, Key, Sealer};
use super::error::BackupError;
use super::files::{PacedFile, TempFile};
use super::incremental::{FileImage, PageReader, Pages};

/// How much archive data may wait in the page cache before it is synced (see [`PacedFile`]).
const SYNC_EVERY: u64 = 8 << 20;
use super::manifest::{self, Manifest, ManifestEntry};
use super::options::BackupOptions;
use super::progress::{Progress, RateLimit};
use super::snapshot::{self, Image};
use super::zip_writer::{DosTime, Method, ZipWriter};

/// What an archive holds besides its manifest, decided once the snapshot is taken.
#[derive(Debug, Clone)]
pub enum Body {
    /// The whole snapshot.
    Full,
    /// The snapshot's pages that differ from `parent`'s (1-based, ascending).
    Increment {
        parent: manifest::Parent,
        pages: Vec<u32>,
        image_sha256: String,
    },
}

/// Decides an archive's [`Body`] from the snapshot (its pages, and what was taken).
pub type Plan<'a> =
    &'a (dyn Fn(&mut Image, &snapshot::Snapshot) -> Result<Body, BackupError> + Sync);

/// The plan of every archive but an increment.
pub fn full(_: &mut Image, _: &snapshot::Snapshot) -> Result<Body, BackupError> {
    Ok(Body::Full)
}

/// A finished archive.
#[derive(Debug, Clone)]
pub struct Written {
    pub path: PathBuf,
    /// Size of the archive file.
    pub bytes: u64,
    pub manifest: Manifest,
}

/// Backs up the database open on `source` (named `database`) to `target`, which must not
/// exist. On any failure or cancellation nothing is left under `target` and no temporary
/// file remains.
pub fn write(
    source: &Connection,
    database: &str,
    target: &Path,
    options: &BackupOptions,
    busy: Duration,
    progress: &Progress,
) -> Result<Written, BackupError> {
    write_planned(
        source, database, target, options, busy, progress, &full, false,
    )
}

/// As [`write`], with what the archive holds decided by `plan`; with `live` (an increment)
/// the snapshot is read where it is rather than copied first, where SQLite can.
#[allow(clippy::too_many_arguments)]
pub fn write_planned(
    source: &Connection,
    database: &str,
    target: &Path,
    options: &BackupOptions,
    busy: Duration,
    progress: &Progress,
    plan: Plan<'_>,
    live: bool,
) -> Result<Written, BackupError> {
    let dir = target.parent().unwrap_or(Path::new("."));
    if target.exists() {
        return Err(BackupError::TargetExists {
            path: target.to_owned(),
        });
    }
    progress.check()?;
    let (mut image, snapshot) =
        Image::take_tables(source, dir, busy, live, options.tables.as_ref(), database)?;
    progress.check()?;
    let body = plan(&mut image, &snapshot)?;
    progress.set_total(body_size(&body, &snapshot));
    progress.check()?;

    let archive = TempFile::in_dir(dir, ".zip");
    let file =
        crate::new_file::create_new(archive.path()).map_err(io("creating", archive.path()))?;
    let paced = PacedFile::new(file, options.buffer_size, SYNC_EVERY);
    let zip = ZipWriter::new(paced).map_err(io("writing", archive.path()))?;
    let (paced, bytes, manifest) = write_entries(
        zip,
        image,
        &snapshot,
        &body,
        database,
        options,
        progress,
        archive.path(),
    )?;
    let file = paced.finish().map_err(io("syncing", archive.path()))?;
    drop(file);
    progress.check()?;
    archive.publish(target)?;
    Ok(Written {
        path: target.to_owned(),
        bytes,
        manifest,
    })
}

/// Backs up the database open on `source` to `key` in an object-storage destination, which
/// must not exist there. The snapshot is taken into `scratch` (a local directory); the
/// archive streams to a temporary object, is read back and checked, and only then is copied
/// under `key`. On any failure nothing is left under `key` and the temporary object goes.
#[allow(clippy::too_many_arguments)]
pub fn write_to_object(
    source: &Connection,
    database: &str,
    destination: &ObjectDestination,
    key: &str,
    scratch: &Path,
    options: &BackupOptions,
    busy: Duration,
    progress: &Progress,
    plan: Plan<'_>,
    live: bool,
) -> Result<Written, BackupError> {
    progress.check()?;
    let mut upload = destination.create(key)?;
    let shown = PathBuf::from(upload.display());
    let (mut image, snapshot) = Image::take_tables(
        source,
        scratch,
        busy,
        live,
        options.tables.as_ref(),
        database,
    )?;
    progress.check()?;
    let body = plan(&mut image, &snapshot)?;
    // Written once, then read back once.
    progress.set_total(body_size(&body, &snapshot) * 2);
    progress.check()?;
    let zip = ZipWriter::streaming(&mut upload);
    let (_, bytes, manifest) = write_entries(
        zip, image, &snapshot, &body, database, options, progress, &shown,
    )?;
    upload.finish()?;
    progress.check()?;
    // Read back from the store: every entry's CRC, size and SHA-256 as the manifest lists.
    {
        let reader = upload.reopen()?;
        let mut archive = ArchiveReader::from_reader(reader, &shown)?.with_key(options.key.clone());
        archive.check_entries(progress)?;
    }
    progress.check()?;
    upload.publish()?;
    Ok(Written {
        path: shown,
        bytes,
        manifest,
    })
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// The bytes of the snapshot an archive with `body` reads and compresses.
fn body_size(body: &Body, snapshot: &snapshot::Snapshot) -> u64 {
    match body {
        Body::Full => snapshot.size,
        Body::Increment { pages, .. } => pages.len() as u64 * snapshot.page_size,
    }
}

/// Writes the body (streamed from the snapshot's `image`, which goes afterwards) and the
/// manifest into `zip`, and finishes the archive; `shown` names it in errors.
#[allow(clippy::too_many_arguments)]
fn write_entries<W: Write>(
    mut zip: ZipWriter<W>,
    image: Image,
    snapshot: &snapshot::Snapshot,
    body: &Body,
    database: &str,
    options: &BackupOptions,
    progress: &Progress,
    shown: &Path,
) -> Result<(W, u64, Manifest), BackupError> {
    let modified = DosTime::from_utc(snapshot.taken_at);
    let key = match (&options.key_name, &options.key) {
        (Some(_), None) => {
            return Err(BackupError::InvalidOption(
                "the key named was not looked up in the server's keys".into(),
            ));
        }
        (_, key) => key.as_deref(),
    };
    let row_counts = image.row_counts()?;
    let level = options.level_for(matches!(body, Body::Increment { .. }));
    let method = if level == 0 {
        Method::Stored
    } else {
        Method::Deflated
    };
    let mut entries = Vec::new();
    // A copy is kept until the archive is written (it goes when dropped); a live image's
    // transaction lasts as long.
    let (input, _copy): (Box<dyn std::io::Read + Send>, Option<TempFile>) = match (image, body) {
        (Image::Copy(copy), Body::Full) => {
            let file = File::open(copy.path()).map_err(io("reading", copy.path()))?;
            (
                Box::new(BufReader::with_capacity(options.buffer_size, file)),
                Some(copy),
            )
        }
        (Image::Copy(copy), Body::Increment { pages, .. }) => {
            let (file, _) = FileImage::open(copy.path(), snapshot.page_size)
                .map_err(io("reading", copy.path()))?;
            let pages = Pages::Listed(pages.clone().into_iter());
            (
                Box::new(PageReader::new(Box::new(file), pages, snapshot.page_size)),
                Some(copy),
            )
        }
        (Image::Live(live), body) => {
            let pages = match body {
                Body::Full => Pages::All(1..=u32::try_from(snapshot.page_count).unwrap_or(0)),
                Body::Increment { pages, .. } => Pages::Listed(pages.clone().into_iter()),
            };
            (
                Box::new(BufReader::with_capacity(
                    options.buffer_size,
                    PageReader::new(Box::new(live), pages, snapshot.page_size),
                )),
                None,
            )
        }
    };
    let (name, size) = match body {
        Body::Full => (manifest::DATABASE_ENTRY, snapshot.size),
        Body::Increment { pages, .. } => {
            let map = super::incremental::encode_map(pages);
            write_small_entry(
                &mut zip,
                manifest::PAGE_MAP_ENTRY,
                &map,
                modified,
                key,
                shown,
            )?;
            entries.push(ManifestEntry {
                name: manifest::PAGE_MAP_ENTRY.into(),
                size: map.len() as u64,
                sha256: manifest::hex(&Sha256::digest(&map)),
            });
            (
                manifest::PAGES_ENTRY,
                pages.len() as u64 * snapshot.page_size,
            )
        }
    };
    let mut sealer = key.map(Sealer::new);
    match &sealer {
        Some(sealer) => zip
            .start_sealed_entry(name, method, size, modified)
            .and_then(|()| zip.write_data(sealer.header())),
        None => zip.start_entry(name, method, size, modified),
    }
    .map_err(io("writing", shown))?;

    let mut sha = Sha256::new();
    let mut limit = options.max_rate.map(|rate| RateLimit::new(rate, progress));
    let mut pace_error = None;
    let deflate_options = DeflateOptions {
        level,
        chunk_size: options.buffer_size,
        threads: options.threads,
    };
    let result = deflate::compress(
        input,
        Some(size),
        deflate_options,
        |chunk| {
            sha.update(chunk);
            progress.advance(chunk.len() as u64);
            let paced = match limit.as_mut() {
                Some(limit) => limit.pace(chunk.len() as u64, progress),
                None => progress.check(),
            };
            paced.map_err(|e| {
                pace_error = Some(e);
                std::io::Error::other("stopped")
            })
        },
        |bytes| match sealer.as_mut() {
            Some(sealer) => zip.write_data(sealer.seal(bytes)),
            None => zip.write_data(bytes),
        },
    );
    // An abort or cancellation seen while pacing is reported as itself, not as I/O.
    let digest = result.map_err(|e| pace_error.unwrap_or_else(|| io("writing", shown)(e)))?;
    if let Some(sealer) = sealer {
        zip.write_data(&sealer.finish())
            .map_err(io("writing", shown))?;
    }
    zip.finish_entry(digest.crc32, digest.size)
        .map_err(io("writing", shown))?;
    entries.push(ManifestEntry {
        name: name.into(),
        size,
        sha256: manifest::hex(&sha.finalize()),
    });
    let (kind, format_version, image_sha256, parent) = match body {
        Body::Full => (manifest::FULL, manifest::FULL_FORMAT_VERSION, None, None),
        Body::Increment {
            parent,
            image_sha256,
            ..
        } => (
            manifest::INCREMENTAL,
            manifest::INCREMENT_FORMAT_VERSION,
            Some(image_sha256.clone()),
            Some(parent.clone()),
        ),
    };
    let format_version = if key.is_some() {
        manifest::ENCRYPTED_FORMAT_VERSION
    } else {
        format_version
    };
    let manifest = Manifest {
        format: manifest::FORMAT_NAME.into(),
        format_version,
        server_version: env!("CARGO_PKG_VERSION").into(),
        sqlite_version: rusqlite::version().into(),
        database: database.into(),
        kind: kind.into(),
        created_at: snapshot
            .taken_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        page_size: snapshot.page_size,
        page_count: snapshot.page_count,
        compression_level: level,
        entries,
        image_sha256,
        parent,
        tables: snapshot.tables.as_ref().map(|s| s.tables.clone()),
        left_out: snapshot
            .tables
            .as_ref()
            .map(|s| s.left_out.clone())
            .unwrap_or_default(),
        encryption: key.map(|key| {
            Box::new(manifest::Encryption {
                algorithm: ALGORITHM.into(),
                entries: ENTRY_FORMAT.into(),
                key: key.name().into(),
            })
        }),
        row_counts: Some(row_counts),
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| io("writing", shown)(std::io::Error::other(e)))?;
    // Plain, so that listing and retention read it without the key; sealed again, so that a
    // reader with the key proves it unaltered.
    write_small_entry(
        &mut zip,
        manifest::MANIFEST_ENTRY,
        &json,
        modified,
        None,
        shown,
    )?;
    if key.is_some() {
        write_small_entry(
            &mut zip,
            manifest::SEALED_MANIFEST_ENTRY,
            &json,
            modified,
            key,
            shown,
        )?;
    }
    let (out, bytes) = zip.finish().map_err(io("writing", shown))?;
    Ok((out, bytes, manifest))
}

/// One small entry (the manifest, a page map), deflated in memory, sealed with `key` if
/// given.
pub(crate) fn write_small_entry<W: Write>(
    zip: &mut ZipWriter<W>,
    name: &str,
    bytes: &[u8],
    modified: DosTime,
    key: Option<&Key>,
    shown: &Path,
) -> Result<(), BackupError> {
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
    encoder.write_all(bytes).map_err(io("writing", shown))?;
    let compressed = encoder.finish().map_err(io("writing", shown))?;
    let size = bytes.len() as u64;
    match key {
        Some(key) => {
            let mut sealer = Sealer::new(key);
            zip.start_sealed_entry(name, Method::Deflated, size, modified)
                .and_then(|()| zip.write_data(sealer.header()))
                .and_then(|()| zip.write_data(sealer.seal(&compressed)))
                .and_then(|()| zip.write_data(&sealer.finish()))
        }
        None => zip
            .start_entry(name, Method::Deflated, size, modified)
            .and_then(|()| zip.write_data(&compressed)),
    }
    .and_then(|()| zip.finish_entry(crc32fast::hash(bytes), size))
    .map_err(io("writing", shown))
}
