//! Retention on disk: which of the archives in the ledger may go, and removing them.
//!
//! An archive is considered only if every check passes: it is in the ledger (this plugin
//! wrote it), it was verified, it is still the file that was written (same size, same kind of
//! contents), its name is one the template (or the server, for the members of a collection)
//! makes for the database, and its manifest names the database. Among those, the rules choose
//! restorable points and keep every chain whole (see [`chains`]). Everything else in the directory (foreign files, temporary files, other
//! databases' archives, files changed since) is never touched. Each kind (ZIP archives,
//! exports) is retained on its own, so files of one kind never push out those of the other.
//! A record whose file is missing is dropped only when its directory is the very directory
//! it was written in: a missing or replaced directory (an unmounted file system) proves
//! nothing, and its records wait for it to come back.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::chains;
use crate::naming::{self, Template};
use crate::retention::Retention;
use crate::state::{ArchiveKind, ArchiveRecord};

/// What retention decided for one archive of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub file: String,
    /// Where the file is (for one in a destination, its location as a path).
    pub path: PathBuf,
    /// Where the archive is when it is in a destination (`offsite:auto/x.zip`).
    pub location: Option<String>,
    pub created_at: DateTime<Utc>,
    /// What the file holds, when it is one of ours.
    pub kind: Option<ArchiveKind>,
    pub remove: bool,
    /// The rules that keep it, why it is out of retention's reach, or "expired".
    pub reason: String,
    /// Of an increment: the file name of its parent.
    pub parent: Option<String>,
}

/// What the destinations of a ledger hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Every object listed, by location.
    pub objects: BTreeMap<String, Listed>,
    /// The prefixes whose listing failed.
    pub unlisted: std::collections::BTreeSet<String>,
    /// When the listing was made.
    pub listed_at: DateTime<Utc>,
}

/// How long an archive must be missing from its destination's listings to be forgotten.
pub const FORGOTTEN_AFTER: chrono::Duration = chrono::Duration::days(1);

impl Listing {
    /// Whether `location` lies under a prefix that was listed and does not show it.
    pub fn lacks(&self, location: &str) -> bool {
        let prefix = location.rsplit_once('/').map_or("", |(prefix, _)| prefix);
        !self.unlisted.contains(prefix) && !self.objects.contains_key(location)
    }
}

/// A file in a destination as the server's catalog describes it (`Host::list_archives`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub database: Option<String>,
    pub kind: Option<ArchiveKind>,
    pub created_at: Option<DateTime<Utc>>,
    pub bytes: u64,
    /// Why the server could not read it as an archive or export.
    pub problem: Option<String>,
    /// Of an increment: the file name of its parent.
    pub parent: Option<String>,
}

/// Decides what retention keeps among `records` (the ledger of `database`); `target` is the
/// directory of records that do not name theirs, and `listing` what the destination holds
/// (by location) for records written to one, when it could be listed. Records whose file is
/// gone from a directory that is still theirs, or from a destination that was listed, are
/// left out, so the caller can drop them from the ledger.
pub fn review(
    target: &Path,
    database: &str,
    template: &Template,
    records: &[ArchiveRecord],
    listing: Option<&Listing>,
    retention: &Retention,
    zone: Tz,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut candidates: BTreeMap<ArchiveKind, Vec<&ArchiveRecord>> = BTreeMap::new();
    // The parents that archives retention cannot touch build on stay too.
    let mut needed = needed_by_others(target, database, records, listing);
    for record in records {
        let judged = match &record.location {
            Some(location) => eligible_listed(location, listing, database, template, record),
            None => eligible(target, database, template, record),
        };
        match judged {
            Eligibility::Gone => {}
            Eligibility::Untouchable(kind, why) => {
                if let Some(parent) = parent_key(target, record) {
                    needed.push((record.file.clone(), parent));
                }
                verdicts.push(Verdict {
                    file: record.file.clone(),
                    path: path_of(target, record),
                    location: record.location.clone(),
                    created_at: record.created_at,
                    kind,
                    remove: false,
                    reason: why,
                    parent: record.parent.clone(),
                });
            }
            Eligibility::Candidate(kind) => candidates.entry(kind).or_default().push(record),
        }
    }
    for (kind, records) in candidates {
        let members = members_of(target, &records);
        let file_of = |key: &str| {
            Path::new(key)
                .file_name()
                .map_or_else(|| key.to_owned(), |f| f.to_string_lossy().into_owned())
        };
        for (record, fate) in records
            .iter()
            .zip(chains::decide(&members, &needed, retention, zone))
        {
            let reason = match &fate {
                chains::Fate::Remove => "expired".into(),
                chains::Fate::Kept(reasons) => format!("kept: {}", reasons.join(", ")),
                chains::Fate::ParentOf(child) => {
                    format!("kept: parent of {}", file_of(child))
                }
                chains::Fate::Broken(missing) => format!(
                    "left alone: its chain lacks {} (missing, unverified or out of reach), so it restores nothing now",
                    file_of(missing)
                ),
            };
            verdicts.push(Verdict {
                file: record.file.clone(),
                path: path_of(target, record),
                location: record.location.clone(),
                created_at: record.created_at,
                kind: Some(kind),
                remove: fate.removes(),
                reason,
                parent: record.parent.clone(),
            });
        }
    }
    verdicts.sort_by_key(|v| std::cmp::Reverse(v.created_at));
    verdicts
}

/// The archive the next increment builds on: among `records` that `here` accepts (those in
/// the collection being written), the newest ZIP archive retention could consider whose chain
/// is whole; with its chain's length and when its full archive was taken.
pub fn next_parent<'r>(
    target: &Path,
    database: &str,
    template: &Template,
    records: &'r [ArchiveRecord],
    listing: Option<&Listing>,
    here: impl Fn(&ArchiveRecord) -> bool,
) -> Option<(&'r ArchiveRecord, usize, DateTime<Utc>)> {
    let candidates: Vec<&ArchiveRecord> = records
        .iter()
        .filter(|r| here(r))
        .filter(|r| {
            let judged = match &r.location {
                Some(location) => eligible_listed(location, listing, database, template, r),
                None => eligible(target, database, template, r),
            };
            matches!(judged, Eligibility::Candidate(ArchiveKind::Full))
        })
        .collect();
    let members = members_of(target, &candidates);
    let (newest, links, full_at) = chains::newest_restorable(&members)?;
    Some((candidates[newest], links, full_at))
}

/// The records as members of chains, keyed by where they are.
fn members_of(target: &Path, records: &[&ArchiveRecord]) -> Vec<chains::Member> {
    records
        .iter()
        .map(|r| chains::Member {
            key: path_of(target, r).display().to_string(),
            parent: parent_key(target, r),
            created_at: r.created_at,
        })
        .collect()
}

/// The key (as [`chains::Member`] names archives) of the archive `record` builds on: a
/// sibling of its file.
pub fn parent_key(target: &Path, record: &ArchiveRecord) -> Option<String> {
    let parent = record.parent.as_deref()?;
    Some(
        path_of(target, record)
            .with_file_name(parent)
            .display()
            .to_string(),
    )
}

/// The file of `record`: in the directory it was written in, or in `target`; for one in a
/// destination, its location.
pub fn path_of(target: &Path, record: &ArchiveRecord) -> PathBuf {
    if let Some(location) = &record.location {
        return PathBuf::from(location);
    }
    record
        .directory
        .as_ref()
        .map_or(target, |d| d.path.as_path())
        .join(&record.file)
}

enum Eligibility {
    Gone,
    Untouchable(Option<ArchiveKind>, String),
    Candidate(ArchiveKind),
}

fn eligible(
    target: &Path,
    database: &str,
    template: &Template,
    record: &ArchiveRecord,
) -> Eligibility {
    let untouchable =
        |kind, why: &str| Eligibility::Untouchable(kind, format!("left alone: {why}"));
    let directory_present = match &record.directory {
        Some(directory) => directory.is_present(),
        None => target.is_dir(),
    };
    if !directory_present {
        let directory = record
            .directory
            .as_ref()
            .map_or(target, |d| d.path.as_path());
        return untouchable(
            record.kind,
            &format!(
                "its directory {} is missing or is not the one it was written in (unmounted? re-created?); kept in the ledger until it is back",
                directory.display()
            ),
        );
    }
    let path = path_of(target, record);
    let metadata = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        // Only the directory it was written in can say it is gone.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && record.directory.is_some() => {
            return Eligibility::Gone;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return untouchable(
                record.kind,
                "not found, and recorded before directories were, so nothing says where it went; kept in the ledger",
            );
        }
        Err(e) => return untouchable(record.kind, &format!("cannot read it ({e})")),
    };
    if !metadata.file_type().is_file() {
        return untouchable(record.kind, "not a regular file");
    }
    if !record.verified {
        return untouchable(record.kind, "never verified");
    }
    if metadata.len() != record.bytes {
        return untouchable(record.kind, "changed since it was written");
    }
    if !fits(template, database, &record.file) {
        return untouchable(record.kind, "its name does not fit target_file_name");
    }
    let actual = match kind_of(&path) {
        Ok(kind) => kind,
        Err(why) => return untouchable(record.kind, &why),
    };
    if let Some(why) = kind_changed(record, actual) {
        return untouchable(Some(actual), &why);
    }
    match manifest_database(&path) {
        Ok(named) if named == database => Eligibility::Candidate(actual),
        Ok(named) => untouchable(
            Some(actual),
            &format!("its manifest names database {named:?}"),
        ),
        Err(why) => untouchable(
            Some(actual),
            &format!("its manifest cannot be read ({why})"),
        ),
    }
}

/// As [`eligible`], for an archive in a destination: judged by what the server's catalog
/// says of the object at its location (size, kind, database, snapshot instant).
fn eligible_listed(
    location: &str,
    listing: Option<&Listing>,
    database: &str,
    template: &Template,
    record: &ArchiveRecord,
) -> Eligibility {
    let untouchable =
        |kind, why: &str| Eligibility::Untouchable(kind, format!("left alone: {why}"));
    let prefix = location.rsplit_once('/').map_or("", |(prefix, _)| prefix);
    let Some(listing) = listing.filter(|l| !l.unlisted.contains(prefix)) else {
        return untouchable(
            record.kind,
            "its destination could not be listed; kept in the ledger until it can",
        );
    };
    let Some(listed) = listing.objects.get(location) else {
        // A listing that succeeded is the store's word, but a destination's config may have
        // been pointed elsewhere by mistake: forgotten only after a day of absence.
        return match record.missing_since {
            Some(since) if listing.listed_at - since >= FORGOTTEN_AFTER => Eligibility::Gone,
            since => untouchable(
                record.kind,
                &format!(
                    "not in its destination's listing (since {}); forgotten once it has been missing for a day",
                    since.unwrap_or(listing.listed_at).to_rfc3339()
                ),
            ),
        };
    };
    if !record.verified {
        return untouchable(record.kind, "never verified");
    }
    if let Some(problem) = &listed.problem {
        return untouchable(
            record.kind,
            &format!("it does not read as an archive ({problem})"),
        );
    }
    if listed.bytes != record.bytes || listed.created_at != Some(record.created_at) {
        return untouchable(record.kind, "changed since it was written");
    }
    if !fits(template, database, &record.file) {
        return untouchable(record.kind, "its name does not fit target_file_name");
    }
    let Some(actual) = listed.kind else {
        return untouchable(record.kind, "the server does not say what it holds");
    };
    if let Some(why) = kind_changed(record, actual) {
        return untouchable(Some(actual), &why);
    }
    match &listed.database {
        Some(named) if named == database => Eligibility::Candidate(actual),
        named => untouchable(
            Some(actual),
            &format!("its manifest names database {named:?}"),
        ),
    }
}

/// Whether `file` is a name this plugin writes for `database`: by the template, or as the
/// server names the members of a collection (`mode = "incremental"`).
fn fits(template: &Template, database: &str, file: &str) -> bool {
    template.matches(database, file) || naming::is_collection_member(database, file)
}

/// Why `record` cannot be the file, if it holds another kind than was recorded.
fn kind_changed(record: &ArchiveRecord, actual: ArchiveKind) -> Option<String> {
    let recorded = record.kind?;
    (recorded != actual).then(|| {
        format!(
            "it holds {}, but it was recorded as {}",
            describe(actual),
            describe(recorded)
        )
    })
}

fn describe(kind: ArchiveKind) -> &'static str {
    match kind {
        ArchiveKind::Full => "a ZIP backup archive",
        ArchiveKind::Export => "a gzip export",
    }
}

/// What a file holds, by its first bytes.
pub fn kind_of(path: &Path) -> Result<ArchiveKind, String> {
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|e| format!("cannot read its first bytes ({e})"))?;
    match magic {
        [0x1f, 0x8b, _, _] => Ok(ArchiveKind::Export),
        [b'P', b'K', 3, 4] => Ok(ArchiveKind::Full),
        _ => Err("it is neither a ZIP archive nor a gzip export".into()),
    }
}

/// The database an archive's `manifest.json` (or an export's header line) names.
pub fn manifest_database(path: &Path) -> Result<String, String> {
    if kind_of(path)? == ArchiveKind::Export {
        return export_database(path);
    }
    manifest(path)?["database"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no database in the manifest".into())
}

/// A ZIP archive's `manifest.json`, when it is a Cairn backup's.
fn manifest(path: &Path) -> Result<serde_json::Value, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| e.to_string())?;
    let mut entry = archive
        .by_name("manifest.json")
        .map_err(|_| "no manifest.json".to_string())?;
    let mut text = String::new();
    // A manifest is a few hundred bytes; a huge one is not ours.
    (&mut entry)
        .take(1 << 20)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let manifest: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if manifest["format"] != "cairn-backup" {
        return Err("not a Cairn backup manifest".into());
    }
    Ok(manifest)
}

/// The parents that increments of `database` this plugin did not write (`BACKUP … INTO`
/// by someone, into the same directory or prefix) build on, as `needed` by
/// [`chains::decide`]: an archive of the ledger that one of them needs is never removed.
fn needed_by_others(
    target: &Path,
    database: &str,
    records: &[ArchiveRecord],
    listing: Option<&Listing>,
) -> Vec<(String, String)> {
    let ours: std::collections::BTreeSet<PathBuf> =
        records.iter().map(|r| path_of(target, r)).collect();
    let mut needed = Vec::new();
    // In the directories of the ledger: increments by the server's names, read for their
    // parent.
    let directories: std::collections::BTreeSet<PathBuf> = records
        .iter()
        .filter(|r| r.location.is_none())
        .filter_map(|r| path_of(target, r).parent().map(Path::to_owned))
        .collect();
    for directory in directories {
        let Ok(entries) = std::fs::read_dir(&directory) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = directory.join(&name);
            if !name.ends_with("-incr.zip")
                || !naming::is_collection_member(database, &name)
                || ours.contains(&path)
            {
                continue;
            }
            if let Some(parent) = manifest(&path)
                .ok()
                .and_then(|m| m["parent"]["name"].as_str().map(str::to_owned))
            {
                needed.push((name, path.with_file_name(parent).display().to_string()));
            }
        }
    }
    // In destinations: the listing says what each object builds on.
    for (location, listed) in listing.map(|l| &l.objects).into_iter().flatten() {
        if let Some(parent) = &listed.parent
            && !ours.contains(Path::new(location))
        {
            let key = Path::new(location).with_file_name(parent);
            needed.push((location.clone(), key.display().to_string()));
        }
    }
    needed
}

/// The database an export's first line (its header) names.
fn export_database(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut line = String::new();
    // A header is a few hundred bytes; a huge first line is not ours.
    std::io::BufReader::new(flate2::read::GzDecoder::new(file))
        .take(1 << 20)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let header: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
    if header["format"] != "cairn-export" {
        return Err("not a Cairn export header".into());
    }
    header["database"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no database in the export header".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::DirectoryId;
    use chrono::TimeZone;
    use chrono_tz::UTC;
    use std::io::Write;

    /// An export whose header names `database`.
    fn write_export(path: &Path, database: &str) -> u64 {
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(path).unwrap(),
            flate2::Compression::fast(),
        );
        let header =
            serde_json::json!({"format": "cairn-export", "version": 1, "database": database});
        writeln!(gz, "{header}").unwrap();
        gz.finish().unwrap();
        std::fs::metadata(path).unwrap().len()
    }

    /// A ledger record of `file` in `dir`, written on 1 May 2026 at `hour`.
    fn record(
        dir: &Path,
        file: &str,
        bytes: u64,
        hour: u32,
        kind: Option<ArchiveKind>,
    ) -> ArchiveRecord {
        ArchiveRecord {
            missing_since: None,
            parent: None,
            location: None,
            file: file.into(),
            created_at: Utc.with_ymd_and_hms(2026, 5, 1, hour, 0, 0).unwrap(),
            bytes,
            verified: true,
            kind,
            directory: Some(DirectoryId::of(dir).unwrap()),
        }
    }

    fn summary(verdicts: &[Verdict]) -> Vec<(String, bool)> {
        verdicts
            .iter()
            .map(|v| (v.file.clone(), v.remove))
            .collect()
    }

    #[test]
    fn retention_never_counts_a_file_of_another_kind() {
        // Three nights of ZIP backups, then `mode = "export"` with a `.zip` name (as an older
        // version allowed) wrote four exports: keep_last = 3 must not delete the backups.
        let dir = tempfile::tempdir().unwrap();
        let template = Template::parse("${DBNAME}-${DATE:yyyyMMddHHmmss}.zip").unwrap();
        let mut ledger = Vec::new();
        for hour in 1..=3 {
            let file = format!("sales-202605010{hour}0000.zip");
            let bytes = write_archive(&dir.path().join(&file), "sales");
            ledger.push(record(
                dir.path(),
                &file,
                bytes,
                hour,
                Some(ArchiveKind::Full),
            ));
        }
        for hour in 4..=7 {
            let file = format!("sales-202605010{hour}0000.zip");
            let bytes = write_export(&dir.path().join(&file), "sales");
            // Older ledgers did not say what they wrote.
            ledger.push(record(dir.path(), &file, bytes, hour, None));
        }
        let keep_last_3 = Retention {
            keep_last: 3,
            min_keep: 1,
            ..Retention::default()
        };
        let verdicts = review(
            dir.path(),
            "sales",
            &template,
            &ledger,
            None,
            &keep_last_3,
            UTC,
        );
        let removed: Vec<&str> = verdicts
            .iter()
            .filter(|v| v.remove)
            .map(|v| v.file.as_str())
            .collect();
        assert_eq!(removed, ["sales-20260501040000.zip"], "{verdicts:#?}");
        assert!(
            verdicts
                .iter()
                .filter(|v| v.kind == Some(ArchiveKind::Full))
                .all(|v| !v.remove)
        );
        // A file recorded as a backup that now holds an export is left alone.
        let swapped = &ledger[0];
        let bytes = write_export(&dir.path().join(&swapped.file), "sales");
        let mut changed = swapped.clone();
        changed.bytes = bytes;
        let verdicts = review(
            dir.path(),
            "sales",
            &template,
            &[changed],
            None,
            &keep_last_3,
            UTC,
        );
        assert!(
            !verdicts[0].remove && verdicts[0].reason.contains("recorded as a ZIP"),
            "{verdicts:?}"
        );
    }

    #[test]
    fn orphaned_archives_a_missing_directory_is_not_a_reason_to_forget() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("auto");
        std::fs::create_dir(&dir).unwrap();
        let template = Template::parse("${DBNAME}-${DATE:yyyyMMddHHmmss}.zip").unwrap();
        let ledger: Vec<ArchiveRecord> = (1..=3)
            .map(|hour| {
                let file = format!("sales-202605010{hour}0000.zip");
                let bytes = write_archive(&dir.join(&file), "sales");
                record(&dir, &file, bytes, hour, Some(ArchiveKind::Full))
            })
            .collect();
        let keep_last_1 = Retention {
            keep_last: 1,
            min_keep: 1,
            ..Retention::default()
        };
        // The directory is briefly gone: nothing is forgotten, nothing removed.
        std::fs::rename(&dir, root.path().join("away")).unwrap();
        let verdicts = review(&dir, "sales", &template, &ledger, None, &keep_last_1, UTC);
        assert_eq!(verdicts.len(), 3, "records were dropped: {verdicts:?}");
        assert!(
            verdicts
                .iter()
                .all(|v| !v.remove && v.reason.contains("missing"))
        );
        // An empty directory in its place (an unmounted mount point) is not it either.
        std::fs::create_dir(&dir).unwrap();
        let verdicts = review(&dir, "sales", &template, &ledger, None, &keep_last_1, UTC);
        assert_eq!(verdicts.len(), 3, "records were dropped: {verdicts:?}");
        assert!(verdicts.iter().all(|v| !v.remove));
        // Back again: retention applies as before.
        std::fs::remove_dir(&dir).unwrap();
        std::fs::rename(root.path().join("away"), &dir).unwrap();
        let verdicts = review(&dir, "sales", &template, &ledger, None, &keep_last_1, UTC);
        assert_eq!(
            summary(&verdicts),
            [
                ("sales-20260501030000.zip".into(), false),
                ("sales-20260501020000.zip".into(), true),
                ("sales-20260501010000.zip".into(), true),
            ]
        );
        // A file deleted by hand from its own directory is forgotten.
        std::fs::remove_file(dir.join("sales-20260501010000.zip")).unwrap();
        let verdicts = review(&dir, "sales", &template, &ledger, None, &keep_last_1, UTC);
        assert_eq!(verdicts.len(), 2);
        // A record from before directories were recorded is never forgotten on a missing
        // file: nothing says its directory is the one it was written in.
        let mut legacy = ledger[0].clone();
        legacy.directory = None;
        let verdicts = review(&dir, "sales", &template, &[legacy], None, &keep_last_1, UTC);
        assert_eq!(verdicts.len(), 1);
        assert!(!verdicts[0].remove && verdicts[0].reason.contains("kept in the ledger"));
    }

    /// A ZIP holding a manifest naming `database` (and a stand-in database entry).
    fn write_archive(path: &Path, database: &str) -> u64 {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("manifest.json", options).unwrap();
        let manifest = serde_json::json!({"format": "cairn-backup", "format_version": 1, "database": database});
        zip.write_all(manifest.to_string().as_bytes()).unwrap();
        zip.start_file("database.sqlite", options).unwrap();
        zip.write_all(b"SQLite format 3\0").unwrap();
        zip.finish().unwrap();
        std::fs::metadata(path).unwrap().len()
    }

    #[test]
    fn only_verified_archives_of_the_ledger_that_are_still_ours_may_go() {
        let dir = tempfile::tempdir().unwrap();
        let template = Template::parse("${DBNAME}-${DATE:yyyyMMddHHmmss}.zip").unwrap();
        let mut ledger = Vec::new();
        for day in 1..=6 {
            let created_at = Utc.with_ymd_and_hms(2026, 5, day, 2, 0, 0).unwrap();
            let file = template.render("sales", created_at.with_timezone(&UTC));
            let bytes = write_archive(&dir.path().join(&file), "sales");
            ledger.push(ArchiveRecord {
                missing_since: None,
                parent: None,
                location: None,
                file,
                created_at,
                bytes,
                verified: true,
                kind: Some(ArchiveKind::Full),
                directory: Some(DirectoryId::of(dir.path()).unwrap()),
            });
        }
        // Day 2 was replaced by another database's archive (of the same size, so only the
        // manifest tells); day 3 was never verified; day 4 was deleted by hand.
        ledger[1].bytes = write_archive(&dir.path().join(&ledger[1].file), "hr");
        ledger[2].verified = false;
        std::fs::remove_file(dir.path().join(&ledger[3].file)).unwrap();
        // Files that are not in the ledger: foreign, partial, another database's, and an
        // archive by the template's name that someone copied in.
        for foreign in [
            "notes.txt",
            ".cairn-tmp-sales-1.zip",
            "hr-20260501020000.zip",
        ] {
            std::fs::write(dir.path().join(foreign), b"keep me").unwrap();
        }
        write_archive(&dir.path().join("sales-20260401020000.zip"), "sales");

        let keep_last_1 = Retention {
            keep_last: 1,
            min_keep: 1,
            ..Retention::default()
        };
        let verdicts = review(
            dir.path(),
            "sales",
            &template,
            &ledger,
            None,
            &keep_last_1,
            UTC,
        );
        let summary: Vec<(String, bool, String)> = verdicts
            .iter()
            .map(|v| (v.file.clone(), v.remove, v.reason.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "sales-20260506020000.zip".into(),
                    false,
                    "kept: last".into()
                ),
                ("sales-20260505020000.zip".into(), true, "expired".into()),
                (
                    "sales-20260503020000.zip".into(),
                    false,
                    "left alone: never verified".into()
                ),
                (
                    "sales-20260502020000.zip".into(),
                    false,
                    "left alone: its manifest names database \"hr\"".into()
                ),
                ("sales-20260501020000.zip".into(), true, "expired".into()),
            ]
        );
        assert_eq!(manifest_database(&dir.path().join("notes.txt")).ok(), None);
    }

    #[test]
    fn in_a_destination_only_verified_unchanged_archives_of_the_ledger_may_go() {
        let template = Template::parse("${DBNAME}-${DATE:yyyyMMddHHmmss}.zip").unwrap();
        let mut ledger = Vec::new();
        let mut listing = Listing::default();
        for day in 1..=6 {
            let created_at = Utc.with_ymd_and_hms(2026, 5, day, 2, 0, 0).unwrap();
            let file = template.render("sales", created_at.with_timezone(&UTC));
            let location = format!("offsite:auto/{file}");
            ledger.push(ArchiveRecord {
                missing_since: None,
                parent: None,
                location: Some(location.clone()),
                file,
                created_at,
                bytes: 100,
                verified: day != 3,
                kind: Some(ArchiveKind::Full),
                directory: None,
            });
            listing.objects.insert(
                location,
                Listed {
                    database: Some(if day == 2 { "other" } else { "sales" }.into()),
                    kind: Some(ArchiveKind::Full),
                    created_at: Some(created_at),
                    bytes: if day == 4 { 99 } else { 100 },
                    problem: None,
                    parent: None,
                },
            );
        }
        // Day 5's object was deleted by someone, and has been missing for two days: gone,
        // dropped from the ledger.
        listing.listed_at = Utc.with_ymd_and_hms(2026, 5, 10, 0, 0, 0).unwrap();
        listing.objects.remove(&ledger[4].location.clone().unwrap());
        ledger[4].missing_since = Some(listing.listed_at - chrono::Duration::days(2));
        let keep_last_1 = Retention {
            keep_last: 1,
            ..Retention::default()
        };
        let reviewed = |ledger: &[ArchiveRecord], listing: &Listing| {
            review(
                Path::new("/nowhere"),
                "sales",
                &template,
                ledger,
                Some(listing),
                &keep_last_1,
                UTC,
            )
        };
        let verdicts = reviewed(&ledger, &listing);
        let by_day: Vec<(u32, bool)> = verdicts
            .iter()
            .map(|v| (chrono::Datelike::day(&v.created_at), v.remove))
            .collect();
        // Day 6 is kept and day 1 may go; 2 (another database), 3 (unverified) and 4
        // (changed) are left alone; 5 is gone.
        assert_eq!(
            by_day,
            [(6, false), (4, false), (3, false), (2, false), (1, true)],
            "{verdicts:?}"
        );
        assert_eq!(
            verdicts.last().unwrap().location.as_deref(),
            ledger[0].location.as_deref()
        );
        // Missing for an hour only: kept in the ledger (and out of retention's count).
        ledger[4].missing_since = Some(listing.listed_at - chrono::Duration::hours(1));
        let recent = reviewed(&ledger, &listing);
        assert!(
            recent
                .iter()
                .any(|v| chrono::Datelike::day(&v.created_at) == 5
                    && !v.remove
                    && v.reason.contains("forgotten once")),
            "{recent:?}"
        );
        // An unreachable destination keeps everything, gone or not.
        listing.unlisted.insert("offsite:auto".into());
        let unlisted = review(
            Path::new("/nowhere"),
            "sales",
            &template,
            &ledger,
            Some(&listing),
            &keep_last_1,
            UTC,
        );
        assert_eq!(unlisted.len(), 6);
        assert!(unlisted.iter().all(|v| !v.remove));
    }

    #[test]
    fn an_export_names_its_database_in_its_header_line() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, first_line: &str| {
            let path = dir.path().join(name);
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&path).unwrap(),
                flate2::Compression::fast(),
            );
            writeln!(gz, "{first_line}\n[1,\"row\"]").unwrap();
            gz.finish().unwrap();
            path
        };
        let export = write(
            "sales.json.gz",
            r#"{"format":"cairn-export","version":1,"database":"sales"}"#,
        );
        assert_eq!(manifest_database(&export).unwrap(), "sales");
        let other = write("other.json.gz", r#"{"format":"something-else"}"#);
        assert!(manifest_database(&other).is_err());
    }
}
