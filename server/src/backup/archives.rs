//! What archives exist: the catalog of a directory or of a destination's prefix, read from
//! the archives' own manifests (and exports' headers), never from the job history, which
//! remembers files that retention or an operator has since deleted.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::archive_reader::ArchiveReader;
use super::continuous::replay;
use super::continuous::store::{Store, WAL_SUFFIX};
use super::destination::{Location, ObjectDestination};
use super::encryption::Keyring;
use super::error::BackupError;
use super::progress::Progress;
use super::{PathRules, destination::Destinations};
use crate::new_file::TEMP_PREFIX;

/// How deep a local listing descends below the directory it starts from.
const MAX_DEPTH: usize = 8;

/// One archive or export file, as its own manifest or header describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    /// As SQL names it: an absolute path, or `NAME:key`.
    pub location: String,
    pub database: Option<String>,
    /// `full` (a backup archive), `incremental` (the pages changed since its parent) or
    /// `export`.
    pub kind: Option<String>,
    /// The snapshot instant (RFC 3339, UTC).
    pub created_at: Option<String>,
    pub bytes: u64,
    pub compression_level: Option<u32>,
    pub server_version: Option<String>,
    /// Whether every entry checked out; `None` unless verification was asked for.
    pub verified: Option<bool>,
    /// Why it could not be read or verified (then the fields above may be missing).
    pub problem: Option<String>,
    /// Of an increment: the file name of the archive it applies to (beside it).
    pub parent: Option<String>,
    /// Of a base of a continuous archive, and of the stream itself (kind `continuous`): the
    /// instants `RESTORE … FROM LATEST IN … AS OF SYSTEM TIME` can restore (RFC 3339, UTC).
    pub restorable_from: Option<String>,
    pub restorable_until: Option<String>,
    /// Of a table-level archive: the tables it holds. `FROM LATEST` and increments pass it
    /// by: it is not the whole database.
    pub tables: Option<Vec<String>>,
    /// Of an encrypted archive: the name of its key (`[backup.keys.NAME]`).
    pub encryption_key: Option<String>,
}

impl Archive {
    /// The snapshot instant, when the manifest has a readable one.
    pub fn created(&self) -> Option<DateTime<Utc>> {
        let text = self.created_at.as_deref()?;
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn unreadable(location: String, bytes: u64, problem: String) -> Archive {
        Archive {
            location,
            database: None,
            kind: None,
            created_at: None,
            bytes,
            compression_level: None,
            server_version: None,
            verified: None,
            problem: Some(problem),
            parent: None,
            restorable_from: None,
            restorable_until: None,
            tables: None,
            encryption_key: None,
        }
    }
}

/// Every archive (`.zip`) and export (`.json.gz`) where `requested` points: a local
/// directory by the path rules (the backup directory for an empty name), or `NAME:prefix` in
/// a destination. With `verify` (the keys encrypted archives are read with), every entry is
/// read through its checks. Oldest first.
pub fn list(
    rules: &PathRules,
    destinations: &Destinations,
    requested: &str,
    verify: Option<&Keyring>,
) -> Result<Vec<Archive>, BackupError> {
    let mut streams = Vec::new();
    let mut found = match destinations.resolve(requested)? {
        Location::Local(path) => {
            let dir = rules.listing_directory(path)?;
            let mut files = Vec::new();
            collect_files(&dir, 0, &mut files);
            let mut found = Vec::new();
            for (path, bytes) in files {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                match stream_of_file(&path) {
                    Some(stream) => add_to_stream(&mut streams, stream, bytes),
                    None if name.as_deref().is_some_and(is_candidate) => {
                        found.push(describe_file(&path, bytes, verify));
                    }
                    None => {}
                }
            }
            found
        }
        Location::Object { destination, key } => {
            let mut found = Vec::new();
            for object in destination.list(key)? {
                if let Some(stream) = stream_of_key(&destination, &object.key) {
                    add_to_stream(&mut streams, stream, object.size);
                } else if is_candidate(&object.key) {
                    found.push(describe_object(
                        &destination,
                        &object.key,
                        object.size,
                        verify,
                    ));
                }
            }
            found
        }
    };
    for stream in streams {
        let row = describe_stream(stream, &mut found);
        found.push(row);
    }
    found.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.location.cmp(&b.location))
    });
    Ok(found)
}

/// The newest readable backup archive of `database` where `requested` points, created at or
/// before `as_of` when given.
pub fn latest(
    rules: &PathRules,
    destinations: &Destinations,
    requested: &str,
    database: &str,
    as_of: Option<DateTime<Utc>>,
) -> Result<Archive, BackupError> {
    latest_matching(rules, destinations, requested, database, as_of, |_| true)
}

/// The newest archive of `database` directly in the collection `requested` (not in a
/// subdirectory or below a longer prefix): what an increment there builds on, since it finds
/// its parent beside itself.
pub fn latest_member(
    rules: &PathRules,
    destinations: &Destinations,
    requested: &str,
    database: &str,
) -> Result<Archive, BackupError> {
    let collection = match destinations.resolve(requested)? {
        Location::Local(path) => rules.listing_directory(path)?.display().to_string(),
        Location::Object { .. } => requested.to_owned(),
    };
    latest_matching(rules, destinations, requested, database, None, |a| {
        is_direct_member(&collection, &a.location)
            && super::chain::is_plain_archive_name(super::chain::file_name(&a.location))
    })
}

/// Whether `location` is a file directly in `collection` (a directory path, `NAME:` or
/// `NAME:prefix`).
pub fn is_direct_member(collection: &str, location: &str) -> bool {
    let Some(rest) = location.strip_prefix(collection) else {
        return false;
    };
    let rest = if collection.is_empty() || collection.ends_with(['/', ':']) {
        rest
    } else {
        match rest.strip_prefix('/') {
            Some(rest) => rest,
            None => return false,
        }
    };
    !rest.is_empty() && !rest.contains('/')
}

fn latest_matching(
    rules: &PathRules,
    destinations: &Destinations,
    requested: &str,
    database: &str,
    as_of: Option<DateTime<Utc>>,
    keep: impl Fn(&Archive) -> bool,
) -> Result<Archive, BackupError> {
    let candidates: Vec<Archive> = list(rules, destinations, requested, None)?
        .into_iter()
        .filter(|a| keep(a))
        .filter(|a| {
            a.problem.is_none()
                && a.tables.is_none()
                && matches!(a.kind.as_deref(), Some("full" | "incremental"))
                && a.database.as_deref() == Some(database)
        })
        .collect();
    // An instant before every archive is told where the archives begin.
    let oldest = candidates.iter().filter_map(Archive::created).min();
    candidates
        .into_iter()
        .filter(|a| match (as_of, a.created()) {
            (Some(limit), Some(created)) => created <= limit,
            (None, Some(_)) => true,
            (_, None) => false,
        })
        .max_by(|a, b| {
            a.created()
                .cmp(&b.created())
                .then_with(|| a.location.cmp(&b.location))
        })
        .ok_or_else(|| BackupError::NoArchive {
            database: database.to_owned(),
            location: if requested.is_empty() {
                "the backup directory".into()
            } else {
                format!("'{requested}'")
            },
            as_of: as_of.map(|t| match oldest {
                Some(oldest) => format!(
                    " created at or before {} (the oldest there was taken at {})",
                    t.to_rfc3339(),
                    oldest.to_rfc3339()
                ),
                None => format!(" created at or before {}", t.to_rfc3339()),
            }),
        })
}

/// A continuous archive's stream found while listing: `<database>.wal` beside its bases.
struct Stream {
    store: Store,
    database: String,
    /// Where its bases are, as archive locations start: `dir/` or `NAME:prefix/`.
    beside: String,
    bytes: u64,
}

fn add_to_stream(streams: &mut Vec<Stream>, stream: Stream, bytes: u64) {
    match streams
        .iter_mut()
        .find(|s| s.beside == stream.beside && s.database == stream.database)
    {
        Some(known) => known.bytes += bytes,
        None => streams.push(Stream { bytes, ..stream }),
    }
}

/// Whether a file name is one a stream holds: a segment, a base marker, the idle note.
fn is_stream_file(name: &str) -> bool {
    super::continuous::segment::Segment::sequence_of(name).is_some()
        || super::continuous::store::BaseMarker::is_marker_name(name)
        || name == super::continuous::store::IDLE_NOTE
}

/// The stream a file belongs to: one of a stream's files directly in a `<database>.wal`
/// directory (anything else there is listed as any file is).
fn stream_of_file(path: &Path) -> Option<Stream> {
    if !is_stream_file(path.file_name()?.to_str()?) {
        return None;
    }
    let dir = path.parent()?;
    let database = dir.file_name()?.to_str()?.strip_suffix(WAL_SUFFIX)?;
    // As a base's location is displayed: its directory, then its name ("/b/wal/", "/").
    let beside = dir.parent()?.join("").display().to_string();
    Some(Stream {
        store: Store::Dir(dir.to_owned()),
        database: database.to_owned(),
        beside,
        bytes: 0,
    })
}

/// The stream an object belongs to: one directly below a `<database>.wal/` prefix.
fn stream_of_key(destination: &Arc<ObjectDestination>, key: &str) -> Option<Stream> {
    let (dir, name) = key.rsplit_once('/')?;
    if !is_stream_file(name) {
        return None;
    }
    let (parent, name) = match dir.rsplit_once('/') {
        Some((parent, name)) => (format!("{parent}/"), name),
        None => (String::new(), dir),
    };
    let database = name.strip_suffix(WAL_SUFFIX)?;
    Some(Stream {
        store: Store::Object {
            destination: Arc::clone(destination),
            prefix: format!("{dir}/"),
        },
        database: database.to_owned(),
        beside: destination.display(&parent),
        bytes: 0,
    })
}

/// The row of a stream, and each of its bases in `archives` marked with its window.
fn describe_stream(stream: Stream, archives: &mut [Archive]) -> Archive {
    let location = stream.store.display("");
    let mut row = Archive {
        location,
        database: Some(stream.database.clone()),
        kind: Some("continuous".into()),
        created_at: None,
        bytes: stream.bytes,
        compression_level: None,
        server_version: None,
        verified: None,
        problem: None,
        parent: None,
        restorable_from: None,
        restorable_until: None,
        tables: None,
        encryption_key: None,
    };
    let base_at = |base: &str| format!("{}{base}", stream.beside);
    let exists = |base: &str| {
        let at = base_at(base);
        archives
            .iter()
            .any(|a| a.location == at && a.problem.is_none())
    };
    let windows = match replay::windows(&stream.store, &stream.database, exists) {
        Ok(windows) => windows,
        Err(e) => {
            row.problem = Some(e.to_string());
            return row;
        }
    };
    let (mut from, mut until, mut problems) = (None::<i64>, None::<i64>, Vec::new());
    for (marker, window) in windows {
        match window {
            Ok(window) => {
                from = Some(from.map_or(window.start, |f| f.min(window.start)));
                until = Some(until.map_or(window.end, |u| u.max(window.end)));
                let at = base_at(&marker.base);
                if let Some(base) = archives.iter_mut().find(|a| a.location == at) {
                    base.restorable_from = Some(replay::instant_text(window.start));
                    base.restorable_until = Some(replay::instant_text(window.end));
                }
            }
            Err(why) => problems.push(why),
        }
    }
    row.restorable_from = from.map(replay::instant_text);
    row.restorable_until = until.map(replay::instant_text);
    row.created_at = row.restorable_until.clone();
    if from.is_none() {
        problems.insert(0, "nothing is restorable from it".into());
    }
    if !problems.is_empty() {
        row.problem = Some(problems.join("; "));
    }
    row
}

/// Whether `dir` is a stream's (whose segments and markers the listing sums).
fn in_stream(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(WAL_SUFFIX))
}

fn is_candidate(name: &str) -> bool {
    let file = name.rsplit('/').next().unwrap_or(name);
    !file.starts_with(TEMP_PREFIX) && (file.ends_with(".zip") || file.ends_with(".json.gz"))
}

/// Regular files that may be archives under `dir`, with their sizes (symbolic links are not
/// followed: a link cannot lead the listing out of the allowed directories).
fn collect_files(dir: &Path, depth: usize, out: &mut Vec<(PathBuf, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        if kind.is_dir() && depth < MAX_DEPTH {
            collect_files(&entry.path(), depth + 1, out);
        } else if kind.is_file() && (is_candidate(&name) || in_stream(dir)) {
            let bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((entry.path(), bytes));
        }
    }
}

fn describe_file(path: &Path, bytes: u64, verify: Option<&Keyring>) -> Archive {
    let location = path.display().to_string();
    if location.ends_with(".json.gz") {
        let described =
            crate::export::reader::header(path).map(|h| from_export_header(&location, bytes, h));
        return match (described, verify) {
            (Ok(mut archive), Some(_)) => {
                match crate::export::reader::verify(path, &Progress::default()) {
                    Ok(_) => archive.verified = Some(true),
                    Err(e) => {
                        archive.verified = Some(false);
                        archive.problem = Some(e.to_string());
                    }
                }
                archive
            }
            (Ok(archive), None) => archive,
            (Err(e), _) => Archive::unreadable(location, bytes, e.to_string()),
        };
    }
    match ArchiveReader::open(path) {
        Ok(reader) => from_archive(location, bytes, reader, verify),
        Err(e) => Archive::unreadable(location, bytes, e.to_string()),
    }
}

fn describe_object(
    destination: &ObjectDestination,
    key: &str,
    bytes: u64,
    verify: Option<&Keyring>,
) -> Archive {
    let location = destination.display(key);
    let reader = match destination.open(key) {
        Ok(reader) => reader,
        Err(e) => return Archive::unreadable(location, bytes, e.to_string()),
    };
    if key.ends_with(".json.gz") {
        // Verifying an export in a store is not offered yet; its header describes it.
        return match crate::export::reader::header_from(reader, Path::new(&location)) {
            Ok(header) => from_export_header(&location, bytes, header),
            Err(e) => Archive::unreadable(location, bytes, e.to_string()),
        };
    }
    match ArchiveReader::from_reader(reader, Path::new(&location)) {
        Ok(reader) => from_archive(location, bytes, reader, verify),
        Err(e) => Archive::unreadable(location, bytes, e.to_string()),
    }
}

fn from_archive<R: Read + std::io::Seek>(
    location: String,
    bytes: u64,
    reader: ArchiveReader<R>,
    verify: Option<&Keyring>,
) -> Archive {
    let m = reader.manifest.clone();
    let mut archive = Archive {
        location,
        database: Some(m.database),
        kind: Some(m.kind),
        created_at: Some(m.created_at),
        bytes,
        compression_level: Some(m.compression_level),
        server_version: Some(m.server_version),
        verified: None,
        problem: None,
        parent: m.parent.map(|p| p.name),
        restorable_from: None,
        restorable_until: None,
        tables: m.tables,
        encryption_key: m.encryption.map(|e| e.key),
    };
    if let Some(keys) = verify {
        match reader.unlock(keys).check_entries(&Progress::default()) {
            Ok(()) => archive.verified = Some(true),
            Err(e) => {
                archive.verified = Some(false);
                archive.problem = Some(e.to_string());
            }
        }
    }
    archive
}

fn from_export_header(
    location: &str,
    bytes: u64,
    header: crate::export::format::Header,
) -> Archive {
    Archive {
        location: location.to_owned(),
        database: Some(header.database),
        kind: Some("export".into()),
        created_at: Some(header.created_at),
        bytes,
        compression_level: None,
        server_version: Some(header.server_version),
        verified: None,
        problem: None,
        parent: None,
        restorable_from: None,
        restorable_until: None,
        tables: None,
        encryption_key: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_streams_own_files_make_a_stream() {
        let stream = stream_of_file(Path::new("/b/wal/sales.wal/000000000001.seg")).unwrap();
        assert_eq!(
            (stream.database.as_str(), stream.beside.as_str()),
            ("sales", "/b/wal/")
        );
        assert!(stream_of_file(Path::new("/b/wal/sales.wal/base-x.zip.json")).is_some());
        assert!(stream_of_file(Path::new("/b/wal/sales.wal/idle.json")).is_some());
        // An archive someone put in a directory that happens to end with .wal is an archive.
        assert!(stream_of_file(Path::new("/b/old.wal/sales.zip")).is_none());
        assert!(stream_of_file(Path::new("/b/wal/000000000001.seg")).is_none());
        let top = stream_of_file(Path::new("/sales.wal/000000000001.seg")).unwrap();
        assert_eq!(top.beside, "/");
    }

    #[test]
    fn a_direct_member_is_a_file_right_in_the_collection() {
        assert!(is_direct_member("/b/coll", "/b/coll/x.zip"));
        assert!(is_direct_member("/b/coll/", "/b/coll/x.zip"));
        assert!(!is_direct_member("/b/coll", "/b/coll/sub/x.zip"));
        assert!(!is_direct_member("/b/coll", "/b/coll2/x.zip"));
        assert!(is_direct_member("offsite:", "offsite:x.zip"));
        assert!(!is_direct_member("offsite:", "offsite:p/x.zip"));
        assert!(is_direct_member("offsite:p", "offsite:p/x.zip"));
    }

    #[test]
    fn only_archives_and_exports_are_candidates() {
        assert!(is_candidate("daily/d.zip"));
        assert!(is_candidate("d-20261201.json.gz"));
        assert!(!is_candidate("daily/.cairn-tmp-x-d.zip"));
        assert!(!is_candidate("notes.txt"));
    }
}
