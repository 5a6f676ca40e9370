//! Retention on disk: which of the archives in the ledger may go, and removing them.
//!
//! An archive is considered only if every check passes: it is in the ledger (this plugin
//! wrote it), it was verified, it is still the file that was written (same size), its name is
//! one the template makes for the database, and its manifest names the database. Everything
//! else in the directory (foreign files, temporary files, other databases' archives, files
//! changed since) is never touched.

use std::io::{BufRead, Read};
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::naming::Template;
use crate::retention::Retention;
use crate::state::ArchiveRecord;

/// What retention decided for one archive of the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub file: String,
    pub created_at: DateTime<Utc>,
    pub remove: bool,
    /// The rules that keep it, why it is out of retention's reach, or "expired".
    pub reason: String,
}

/// Decides what retention keeps among `records` (the ledger of `database`). Records whose
/// file is gone are left out, so the caller can drop them from the ledger.
pub fn review(
    directory: &Path,
    database: &str,
    template: &Template,
    records: &[ArchiveRecord],
    retention: &Retention,
    zone: Tz,
) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut candidates = Vec::new();
    for record in records {
        match eligible(directory, database, template, record) {
            Eligibility::Gone => {}
            Eligibility::Untouchable(why) => verdicts.push(Verdict {
                file: record.file.clone(),
                created_at: record.created_at,
                remove: false,
                reason: why,
            }),
            Eligibility::Candidate => candidates.push(record),
        }
    }
    let created: Vec<DateTime<Utc>> = candidates.iter().map(|r| r.created_at).collect();
    for (record, reasons) in candidates.iter().zip(retention.plan(&created, zone)) {
        verdicts.push(Verdict {
            file: record.file.clone(),
            created_at: record.created_at,
            remove: reasons.is_empty(),
            reason: if reasons.is_empty() {
                "expired".into()
            } else {
                format!("kept: {}", reasons.join(", "))
            },
        });
    }
    verdicts.sort_by_key(|v| std::cmp::Reverse(v.created_at));
    verdicts
}

enum Eligibility {
    Gone,
    Untouchable(String),
    Candidate,
}

fn eligible(
    directory: &Path,
    database: &str,
    template: &Template,
    record: &ArchiveRecord,
) -> Eligibility {
    let path = directory.join(&record.file);
    let metadata = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Eligibility::Gone,
        Err(e) => return Eligibility::Untouchable(format!("left alone: cannot read it ({e})")),
    };
    let untouchable = |why: &str| Eligibility::Untouchable(format!("left alone: {why}"));
    if !metadata.file_type().is_file() {
        return untouchable("not a regular file");
    }
    if !record.verified {
        return untouchable("never verified");
    }
    if metadata.len() != record.bytes {
        return untouchable("changed since it was written");
    }
    if !template.matches(database, &record.file) {
        return untouchable("its name does not fit target_file_name");
    }
    match manifest_database(&path) {
        Ok(named) if named == database => Eligibility::Candidate,
        Ok(named) => untouchable(&format!("its manifest names database {named:?}")),
        Err(why) => untouchable(&format!("its manifest cannot be read ({why})")),
    }
}

/// The database an archive's `manifest.json` (or an export's header line) names.
pub fn manifest_database(path: &Path) -> Result<String, String> {
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut magic = [0u8; 2];
    if file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b] {
        return export_database(path);
    }
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
    manifest["database"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "no database in the manifest".into())
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
    use chrono::TimeZone;
    use chrono_tz::UTC;
    use std::io::Write;

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
                file,
                created_at,
                bytes,
                verified: true,
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
        let verdicts = review(dir.path(), "sales", &template, &ledger, &keep_last_1, UTC);
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
