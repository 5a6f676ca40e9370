//! Chains of archives: a full archive and the increments after it, each naming its parent (a
//! sibling in the same directory or prefix) by file name and image SHA-256. A chain is
//! followed, every link checked, and the image rebuilt into a scratch file before anything
//! is installed.

use std::io::{Read, Seek};
use std::path::Path;

use super::archive_reader::{ArchiveReader, Verified};
use super::error::BackupError;
use super::manifest;
use super::progress::Progress;

/// What an archive can be read from: a local file or an object in a destination.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An archive, wherever it is (an object's reader borrows its destination's client).
pub type AnyArchive<'a> = ArchiveReader<Box<dyn ReadSeek + 'a>>;

/// Opens the archive at a location (as SQL names it).
pub type Opener<'o, 'a> = &'o dyn Fn(&str) -> Result<AnyArchive<'a>, BackupError>;

/// How many links a chain may have: a bound against a crafted loop of parents.
pub const MAX_LINKS: usize = 10_000;

/// The location of `name` beside `location` (the same directory, or the same prefix).
pub fn sibling(location: &str, name: &str) -> String {
    if let Some((dir, _)) = location.rsplit_once('/') {
        return format!("{dir}/{name}");
    }
    match location.split_once(':') {
        Some((destination, _)) => format!("{destination}:{name}"),
        None => name.to_owned(),
    }
}

/// The links of the chain ending at `newest` (at `location`), newest first, each checked
/// against the next: same database and page size, an older snapshot, and the image its
/// child names.
pub fn follow<'a>(
    newest: AnyArchive<'a>,
    location: &str,
    open: Opener<'_, 'a>,
) -> Result<Vec<AnyArchive<'a>>, BackupError> {
    let mut links = vec![newest];
    let mut at = location.to_owned();
    loop {
        let child = &links[links.len() - 1];
        if child.manifest.kind != manifest::INCREMENTAL {
            return Ok(links);
        }
        let refuse = |reason: String| BackupError::Damaged {
            path: child.path().to_owned(),
            entry: manifest::MANIFEST_ENTRY.into(),
            reason,
        };
        if links.len() >= MAX_LINKS {
            return Err(refuse(format!(
                "its chain is longer than {MAX_LINKS} links"
            )));
        }
        let Some(named) = child.manifest.parent.clone() else {
            return Err(refuse("an increment without a parent".into()));
        };
        let parent_at = sibling(&at, &named.name);
        let parent = open(&parent_at).map_err(|e| {
            refuse(format!(
                "its parent {parent_at} cannot be read ({e}); the chain is broken there"
            ))
        })?;
        let (p, c) = (&parent.manifest, &child.manifest);
        if p.database != c.database || p.page_size != c.page_size {
            return Err(refuse(format!(
                "its parent {parent_at} holds database {:?} in pages of {} bytes, not {:?} in pages of {}",
                p.database, p.page_size, c.database, c.page_size
            )));
        }
        if p.image_sha256() != Some(named.image_sha256.as_str()) {
            return Err(refuse(format!(
                "its parent {parent_at} holds another image (SHA-256 {}, not {}): it was replaced since",
                p.image_sha256().unwrap_or("unknown"),
                named.image_sha256
            )));
        }
        if p.created_at >= c.created_at {
            return Err(refuse(format!(
                "its parent {parent_at} is not older ({} against {})",
                p.created_at, c.created_at
            )));
        }
        links.push(parent);
        at = parent_at;
    }
}

/// Rebuilds the image of `newest` (at `location`) into `dest`, a new file: the chain's full
/// archive extracted, each increment applied oldest first, every entry checked on the way;
/// then the image's SHA-256 against the newest manifest and SQLite's integrity check.
pub fn rebuild<'a>(
    newest: AnyArchive<'a>,
    location: &str,
    open: Opener<'_, 'a>,
    dest: &Path,
    progress: &Progress,
) -> Result<Verified, BackupError> {
    let mut links = follow(newest, location, open)?;
    // Refused before the first byte when the largest image of the chain cannot fit.
    let largest = links
        .iter()
        .map(|l| l.manifest.page_size.saturating_mul(l.manifest.page_count))
        .max()
        .unwrap_or(0);
    let dir = dest.parent().unwrap_or(Path::new("."));
    let available = crate::disk_space::available(dir).map_err(|source| BackupError::Io {
        action: "reading the free space of",
        path: dir.to_owned(),
        source,
    })?;
    if available < largest {
        return Err(BackupError::NoSpace {
            what: "rebuilding this chain's database",
            path: dir.to_owned(),
            needed: largest,
            available,
        });
    }
    let mut base = links
        .pop()
        .ok_or_else(|| BackupError::PathRefused("an empty chain".into()))?;
    base.extract_image(dest, progress)?;
    for link in links.iter_mut().rev() {
        link.apply_increment(dest, progress)?;
    }
    let newest = links.first().unwrap_or(&base);
    let rebuilt = super::incremental::image_digest(dest).map_err(|source| BackupError::Io {
        action: "reading",
        path: dest.to_owned(),
        source,
    })?;
    let rebuilt = manifest::hex(&rebuilt);
    if Some(rebuilt.as_str()) != newest.manifest.image_sha256() {
        return Err(BackupError::Damaged {
            path: newest.path().to_owned(),
            entry: manifest::PAGES_ENTRY.into(),
            reason: format!(
                "the rebuilt image's SHA-256 {rebuilt} is not the manifest's {}",
                newest.manifest.image_sha256().unwrap_or("(none)")
            ),
        });
    }
    newest.check_database(dest)?;
    Ok(Verified {
        manifest: newest.manifest.clone(),
        database_bytes: newest.manifest.page_size * newest.manifest.page_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parent_is_a_sibling_in_its_directory_or_prefix() {
        assert_eq!(sibling("/b/c/x.zip", "p.zip"), "/b/c/p.zip");
        assert_eq!(
            sibling("offsite:daily/x.zip", "p.zip"),
            "offsite:daily/p.zip"
        );
        assert_eq!(sibling("offsite:x.zip", "p.zip"), "offsite:p.zip");
        assert_eq!(sibling("x.zip", "p.zip"), "p.zip");
    }
}
