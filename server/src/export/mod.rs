//! EXPORT and IMPORT DATABASE: a database as portable, streamable gzip JSON lines (the
//! format is in docs/FORMATS.md). A backup copies the storage; an export copies the meaning,
//! so it survives a change of storage format and is read by `zcat | jq`.
//!
//! [`format`] is the line and value encoding, [`writer`] exports from one read transaction
//! through [`gzip`] (the parallel deflate of backups), and [`reader`] checks a file as it
//! loads it into a new database file; [`sealed`] is an encrypted export (the file as the
//! sealed entry of a ZIP with a plain manifest). Jobs, history, path rules and crash safety are the
//! backups' own ([`crate::backup`]).

pub mod format;
pub mod gzip;
pub mod reader;
pub mod sealed;
pub mod writer;

use std::path::Path;

pub use reader::Imported;
pub use writer::Exported;

use crate::backup::BackupError;
use crate::backup::jobs::install_prepared;
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
    import_with(catalog, name, replace, progress, |path| {
        reader::load(file, path, progress)
    })
}

/// As [`import_into`], from the export in `opened` (`bytes` long, named `file` in errors):
/// an object in a destination.
pub fn import_from(
    catalog: &Catalog,
    opened: impl std::io::Read,
    bytes: u64,
    file: &Path,
    name: &str,
    replace: bool,
    progress: &Progress,
) -> Result<Imported, BackupError> {
    import_with(catalog, name, replace, progress, |path| {
        reader::load_from(opened, bytes, file, path, progress)
    })
}

fn import_with(
    catalog: &Catalog,
    name: &str,
    replace: bool,
    progress: &Progress,
    load: impl FnOnce(&Path) -> Result<Imported, BackupError>,
) -> Result<Imported, BackupError> {
    install_prepared(catalog, name, replace, ".import", |path| {
        let imported = load(path)?;
        progress.check()?;
        Ok(imported)
    })
}

/// Whether `file` starts like a gzip file (an export) rather than a ZIP (a backup archive).
pub fn looks_like_export(file: &Path) -> bool {
    let mut magic = [0u8; 2];
    std::fs::File::open(file)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok_and(|()| magic == [0x1f, 0x8b])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::BackupOptions;
    use rusqlite::Connection;

    fn export(db: &Connection, dir: &Path) -> std::path::PathBuf {
        let file = dir.join("export.json.gz");
        writer::write(
            db,
            "src",
            &file,
            &BackupOptions::default(),
            &Progress::default(),
        )
        .unwrap();
        file
    }

    #[test]
    fn a_virtual_table_comes_back_with_its_shadow_tables() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("src.sqlite")).unwrap();
        db.execute_batch(
            "CREATE VIRTUAL TABLE docs USING fts5(title, body);
             INSERT INTO docs VALUES ('one', 'hello world'), ('two', 'goodbye moon');",
        )
        .unwrap();
        let file = export(&db, dir.path());
        let into = dir.path().join("copy.sqlite");
        let imported = reader::load(&file, &into, &Progress::default()).unwrap();
        assert_eq!(imported.tables[0], ("docs".to_owned(), 0));
        let copy = Connection::open(&into).unwrap();
        let title: String = copy
            .query_row("SELECT title FROM docs WHERE docs MATCH 'moon'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(title, "two");
        copy.execute_batch("INSERT INTO docs(docs) VALUES ('integrity-check')")
            .unwrap();
    }

    #[test]
    fn crafted_export_one_huge_row_is_refused_in_bounded_memory() {
        // A small file whose one row inflates past the line bound: refused at the bound,
        // not read whole (it compresses to well under a megabyte).
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("src.sqlite")).unwrap();
        db.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES ('small');")
            .unwrap();
        let good = export(&db, dir.path());
        let mut lines: Vec<String> = {
            use std::io::BufRead;
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(&good).unwrap());
            std::io::BufReader::new(gz)
                .lines()
                .map(Result::unwrap)
                .collect()
        };
        let row = lines.iter().position(|l| l.starts_with('[')).unwrap();
        lines.truncate(row);
        let crafted = dir.path().join("crafted.json.gz");
        {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&crafted).unwrap(),
                flate2::Compression::fast(),
            );
            for line in &lines {
                writeln!(gz, "{line}").unwrap();
            }
            gz.write_all(b"[\"").unwrap();
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..=(format::MAX_LINE_BYTES >> 20) {
                gz.write_all(&chunk).unwrap();
            }
            gz.write_all(b"\"]\n").unwrap();
            gz.finish().unwrap();
        }
        assert!(std::fs::metadata(&crafted).unwrap().len() < 4 << 20);
        let err = reader::verify(&crafted, &Progress::default()).unwrap_err();
        assert!(
            err.to_string().contains("longer than")
                && err.to_string().contains(&format!("line {}", row + 1)),
            "{err}"
        );
    }

    #[test]
    fn crafted_export_a_huge_header_or_entry_line_is_refused_unparsed() {
        let dir = tempfile::tempdir().unwrap();
        let crafted = dir.path().join("header.json.gz");
        {
            use std::io::Write;
            let mut gz = flate2::write::GzEncoder::new(
                std::fs::File::create(&crafted).unwrap(),
                flate2::Compression::fast(),
            );
            // A header is a few hundred bytes; this one would parse (JSON allows the spaces)
            // into five megabytes of nothing.
            gz.write_all(br#"{"format":"cairn-export","version":1"#)
                .unwrap();
            gz.write_all(&vec![b' '; format::MAX_ENTRY_BYTES + 1])
                .unwrap();
            gz.write_all(b"}\n").unwrap();
            gz.finish().unwrap();
        }
        let err = reader::verify(&crafted, &Progress::default()).unwrap_err();
        assert!(
            err.to_string().contains("line 1") && err.to_string().contains("longer than 4194304"),
            "{err}"
        );
    }

    #[test]
    fn a_row_too_long_for_an_import_is_refused_by_the_export() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("src.sqlite")).unwrap();
        // Base64 makes 210 MB of blob a line of 280 MB, over the 256 MiB bound.
        db.execute_batch("CREATE TABLE big(b); INSERT INTO big VALUES (zeroblob(210000000));")
            .unwrap();
        let target = dir.path().join("big.json.gz");
        let result = writer::write(
            &db,
            "src",
            &target,
            &BackupOptions::default(),
            &Progress::default(),
        );
        assert!(
            matches!(&result, Err(BackupError::LineTooLong { what, .. }) if what == "row 1 of table \"big\""),
            "{result:?}"
        );
        assert!(!target.exists());
    }

    #[test]
    fn a_cancelled_export_or_import_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = Connection::open(dir.path().join("src.sqlite")).unwrap();
        db.execute_batch(
            "CREATE TABLE t(x);
             WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
             INSERT INTO t SELECT i FROM c;",
        )
        .unwrap();
        let cancelled = Progress::default();
        cancelled.cancel();
        let target = dir.path().join("never.json.gz");
        let result = writer::write(&db, "src", &target, &BackupOptions::default(), &cancelled);
        assert!(matches!(result, Err(BackupError::Aborted)), "{result:?}");
        let file = export(&db, dir.path());
        let into = dir.path().join("never.sqlite");
        let data = dir.path().join("data");
        let disk = std::sync::Arc::new(crate::disk_space::DataDisk::observing(&data));
        let catalog = Catalog::open(&data, std::time::Duration::from_secs(1), disk).unwrap();
        let result = import_into(&catalog, &file, "never", false, &cancelled);
        assert!(matches!(result, Err(BackupError::Aborted)), "{result:?}");
        assert!(!catalog.exists("never") && !into.exists());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(catalog.dir()).unwrap())
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["data", "default.sqlite", "export.json.gz", "src.sqlite"]
        );
    }
}
