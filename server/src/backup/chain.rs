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

/// Whether `name` is what an increment may name as its parent: the plain name of an
/// archive file (`.zip`, no `/`, `\`, `:` or NUL, not hidden or temporary).
pub fn is_plain_archive_name(name: &str) -> bool {
    name.ends_with(".zip") && !name.starts_with('.') && !name.contains(['/', '\\', ':', '\0'])
}

/// The file name at the end of a location (`dir/x.zip`, `NAME:prefix/x.zip`).
pub fn file_name(location: &str) -> &str {
    location.rsplit(['/', ':']).next().unwrap_or(location)
}

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

/// One link of a chain, as its manifest describes it (the archive itself is opened again
/// when it is applied, so that a long chain does not hold a file open per link).
#[derive(Debug, Clone)]
pub struct Link {
    pub location: String,
    pub path: std::path::PathBuf,
    pub manifest: manifest::Manifest,
}

/// The links of the chain ending at `newest` (at `location`), newest first, each checked
/// against the next: same database and page size, an older snapshot, and the image its
/// child names.
pub fn follow<'a>(
    newest: &AnyArchive<'a>,
    location: &str,
    open: Opener<'_, 'a>,
) -> Result<Vec<Link>, BackupError> {
    let mut links = vec![Link {
        location: location.to_owned(),
        path: newest.path().to_owned(),
        manifest: newest.manifest.clone(),
    }];
    loop {
        let child = &links[links.len() - 1];
        if child.manifest.kind != manifest::INCREMENTAL {
            return Ok(links);
        }
        let refuse = |reason: String| BackupError::Damaged {
            path: child.path.clone(),
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
        let parent_at = sibling(&child.location, &named.name);
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
        let link = Link {
            location: parent_at,
            path: parent.path().to_owned(),
            manifest: parent.manifest.clone(),
        };
        drop(parent);
        links.push(link);
    }
}

/// `link`'s archive opened again, refused if it is not what [`follow`] checked.
fn reopen<'a>(link: &Link, open: Opener<'_, 'a>) -> Result<AnyArchive<'a>, BackupError> {
    let archive = open(&link.location)?;
    if archive.manifest != link.manifest {
        return Err(BackupError::Damaged {
            path: link.path.clone(),
            entry: manifest::MANIFEST_ENTRY.into(),
            reason: "it changed while its chain was read".into(),
        });
    }
    Ok(archive)
}

/// How much of a chain's images a rebuild proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// The image rebuilt (a restore). When it is wrong, the chain is applied once more,
    /// each link's own image summed, to name the link that made it wrong.
    Newest,
    /// Every link's own image (a verify of the chain), summed as each is applied: a damaged
    /// link whose pages a later one overwrites is found too, at one more read of the image
    /// per link.
    EveryLink,
}

/// Rebuilds the image of `newest` (at `location`) into `dest`, a new file: the chain's full
/// archive extracted, each increment applied oldest first, every entry checked on the way;
/// then the image's SHA-256 against the newest manifest (and, as `proof` says, each link's
/// against its own) and SQLite's integrity check.
pub fn rebuild<'a>(
    mut newest: AnyArchive<'a>,
    location: &str,
    open: Opener<'_, 'a>,
    dest: &Path,
    progress: &Progress,
    proof: Proof,
) -> Result<Verified, BackupError> {
    let links = follow(&newest, location, open)?;
    // Every link's key proven before the first byte is written (each may name its own).
    newest.check_key()?;
    for link in links.iter().skip(1) {
        reopen(link, open)?.check_key()?;
    }
    // Refused before the first byte when the largest image of the chain cannot fit.
    let largest = links
        .iter()
        .map(|l| l.manifest.page_size.saturating_mul(l.manifest.page_count))
        .max()
        .unwrap_or(0);
    super::archive_reader::ensure_room("rebuilding this chain's database", dest, largest)?;
    let total: u64 = links
        .iter()
        .flat_map(|l| l.manifest.entries.iter().map(|e| e.size))
        .sum();
    progress.set_total(total);
    match links.as_slice() {
        [] | [_] => {
            newest.extract_image(dest, progress)?;
        }
        [_, middle @ .., base] => {
            reopen(base, open)?.extract_image(dest, progress)?;
            if proof == Proof::EveryLink {
                image_is(dest, &base.manifest, &base.path)?;
            }
            for link in middle.iter().rev() {
                reopen(link, open)?.apply_increment(dest, progress)?;
                if proof == Proof::EveryLink {
                    image_is(dest, &link.manifest, &link.path)?;
                }
            }
            newest.apply_increment(dest, progress)?;
        }
    }
    if let Err(wrong) = image_is(dest, &newest.manifest, newest.path()) {
        if proof == Proof::Newest && links.len() > 1 {
            // The newest link may be whole and an older one wrong: applied again, link by
            // link, the first whose image is not its manifest's is the one named.
            let _ = std::fs::remove_file(dest);
            let found = rebuild(newest, location, open, dest, progress, Proof::EveryLink);
            let _ = std::fs::remove_file(dest);
            return Err(found.err().unwrap_or(wrong));
        }
        return Err(wrong);
    }
    newest.check_database(dest)?;
    Ok(Verified {
        manifest: newest.manifest.clone(),
        database_bytes: newest.manifest.page_size * newest.manifest.page_count,
    })
}

/// Whether the image in `dest` is the one `manifest` (of the archive at `path`) describes.
fn image_is(dest: &Path, manifest: &manifest::Manifest, path: &Path) -> Result<(), BackupError> {
    let summed = super::incremental::image_digest(dest).map_err(|source| BackupError::Io {
        action: "reading",
        path: dest.to_owned(),
        source,
    })?;
    let summed = manifest::hex(&summed);
    if Some(summed.as_str()) == manifest.image_sha256() {
        return Ok(());
    }
    let entry = match manifest.kind.as_str() {
        manifest::INCREMENTAL => manifest::PAGES_ENTRY,
        _ => manifest::DATABASE_ENTRY,
    };
    Err(BackupError::Damaged {
        path: path.to_owned(),
        entry: entry.into(),
        reason: format!(
            "the rebuilt image's SHA-256 {summed} is not the manifest's {}",
            manifest.image_sha256().unwrap_or("(none)")
        ),
    })
}

/// The file name of a new member of a collection: `<database>-<UTC time>-full.zip`, or
/// `…-incr.zip` for an increment.
pub fn member_name(database: &str, incremental: bool, at: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{database}-{}-{}.zip",
        at.format("%Y%m%dT%H%M%S%.3fZ"),
        if incremental { "incr" } else { "full" }
    )
}

/// `name` in the collection at `location` (a directory, `NAME:` or `NAME:prefix`).
pub fn in_collection(location: &str, name: &str) -> String {
    if location.is_empty() || location.ends_with(['/', ':']) {
        format!("{location}{name}")
    } else {
        format!("{location}/{name}")
    }
}

/// The parent of an increment to be taken, opened and proven before the snapshot is: its
/// chain's manifests checked and its page digests at hand (rebuilt from the chain if this
/// server did not sum them), so that a live snapshot's read transaction, which holds back
/// every checkpoint of the database, is not open while archives are fetched or rebuilt.
#[derive(Debug, Clone)]
pub struct ReadyParent {
    /// Where it is, as SQL names it.
    pub location: String,
    named: manifest::Parent,
    page_size: u64,
}

/// Opens the parent at `parent_at`, follows its chain and makes sure its page digests are
/// kept, rebuilding its image in `scratch` if they are not (see [`ReadyParent`]).
pub fn prepare_parent(
    digests: &super::incremental::DigestCache,
    parent_at: &str,
    open: Opener<'_, '_>,
    scratch: &Path,
    progress: &Progress,
) -> Result<ReadyParent, BackupError> {
    let parent = open(parent_at)?;
    let named = manifest::Parent {
        name: file_name(parent_at).to_owned(),
        created_at: parent.manifest.created_at.clone(),
        image_sha256: parent
            .manifest
            .image_sha256()
            .ok_or_else(|| BackupError::NotAnArchive {
                path: parent.path().to_owned(),
                reason: "its manifest has no image SHA-256".into(),
            })?
            .to_owned(),
    };
    let page_size = parent.manifest.page_size;
    // An increment on a broken chain could never be restored: its manifests are checked
    // first (the pages are, when it is rebuilt below or restored).
    follow(&parent, parent_at, open)?;
    if !digests.has(&named.image_sha256) {
        // Not summed here (another server wrote it, or the cache was trimmed): its image is
        // rebuilt from the chain, which also proves the chain, and summed.
        let dir = tempfile::Builder::new()
            .prefix(super::files::TEMP_PREFIX)
            .tempdir_in(scratch)
            .map_err(|source| BackupError::Io {
                action: "creating a scratch directory in",
                path: scratch.to_owned(),
                source,
            })?;
        let rebuilt = dir.path().join("parent.sqlite");
        rebuild(parent, parent_at, open, &rebuilt, progress, Proof::Newest)?;
        digests
            .sum_file(&rebuilt, page_size, None)
            .map_err(|source| BackupError::Io {
                action: "reading",
                path: rebuilt.clone(),
                source,
            })?;
        if !digests.has(&named.image_sha256) {
            return Err(BackupError::Io {
                action: "keeping page digests (an increment compares against them) in",
                path: digests.dir().to_owned(),
                source: std::io::Error::other(
                    "the directory could not be written; make it writable, or take a full backup",
                ),
            });
        }
    }
    Ok(ReadyParent {
        location: parent_at.to_owned(),
        named,
        page_size,
    })
}

/// What the archive of `snapshot` holds: with a `parent` ([`prepare_parent`]), the pages
/// that differ from it, or the whole image when too many do; without, the whole image,
/// whose page digests are kept for the next increment.
pub fn plan(
    digests: &super::incremental::DigestCache,
    parent: Option<&ReadyParent>,
    image: &mut super::snapshot::Image,
    snapshot: &super::snapshot::Snapshot,
    progress: &Progress,
) -> Result<super::archive_writer::Body, BackupError> {
    use super::archive_writer::Body;
    use super::incremental;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| BackupError::Io {
            action: "reading",
            path,
            source,
        }
    };
    let Some(parent) = parent else {
        // Summed only to be kept: the next increment's parent is this archive.
        let shown = image.shown();
        image
            .with_pages(snapshot.page_size, |pages, count| {
                let mut pages = Stoppable::new(pages, progress);
                digests.sum(&mut pages, count, snapshot.page_size, None)
            })
            .map_err(|e| progress.stopped().err().unwrap_or_else(|| io(&shown)(e)))?;
        return Ok(Body::Full);
    };
    let parent_at = &parent.location;
    if parent.page_size != snapshot.page_size {
        return Err(BackupError::PathRefused(format!(
            "the database's page size changed since {parent_at} ({} to {} bytes): take a full backup",
            parent.page_size, snapshot.page_size
        )));
    }
    let parent_time = chrono::DateTime::parse_from_rfc3339(&parent.named.created_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .ok();
    if parent_time.is_none_or(|t| t >= snapshot.taken_at) {
        return Err(BackupError::PathRefused(format!(
            "{parent_at} was taken at {}, not before this snapshot ({}): is the clock right? take a full backup",
            parent.named.created_at,
            snapshot.taken_at.to_rfc3339()
        )));
    }
    let shown = image.shown();
    let (image_sha256, changed) = image
        .with_pages(snapshot.page_size, |pages, count| {
            let mut pages = Stoppable::new(pages, progress);
            digests.sum(
                &mut pages,
                count,
                snapshot.page_size,
                Some(&parent.named.image_sha256),
            )
        })
        .map_err(|e| progress.stopped().err().unwrap_or_else(|| io(&shown)(e)))?;
    let pages = match changed {
        Some(incremental::Changed::Pages(pages)) => pages,
        _ => {
            tracing::info!(
                parent = %parent_at,
                "too many pages changed for an increment; writing a full archive"
            );
            return Ok(Body::Full);
        }
    };
    Ok(Body::Increment {
        parent: parent.named.clone(),
        pages,
        image_sha256,
    })
}

/// Pages read through `inner` until the job is asked to stop (an abort, its timeout): then
/// an error, which the caller reports as the stop itself. Checked every [`CHECK_EVERY`] pages.
struct Stoppable<'a> {
    inner: &'a mut dyn super::incremental::PageSource,
    progress: &'a Progress,
    read: u32,
}

const CHECK_EVERY: u32 = 1024;

impl<'a> Stoppable<'a> {
    fn new(inner: &'a mut dyn super::incremental::PageSource, progress: &'a Progress) -> Self {
        Stoppable {
            inner,
            progress,
            read: 0,
        }
    }
}

impl super::incremental::PageSource for Stoppable<'_> {
    fn read_page(&mut self, number: u32, buffer: &mut [u8]) -> std::io::Result<()> {
        self.read = self.read.wrapping_add(1);
        if self.read.is_multiple_of(CHECK_EVERY) && self.progress.check().is_err() {
            return Err(std::io::Error::other("stopped"));
        }
        self.inner.read_page(number, buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Summing a large image stops at an abort or timeout instead of reading to its end.
    #[test]
    fn summing_stops_when_the_job_is_asked_to() {
        struct Zeros;
        impl super::super::incremental::PageSource for Zeros {
            fn read_page(&mut self, _: u32, buffer: &mut [u8]) -> std::io::Result<()> {
                buffer.fill(0);
                Ok(())
            }
        }
        let progress = Progress::default();
        let mut zeros = Zeros;
        let mut pages = Stoppable::new(&mut zeros, &progress);
        progress.cancel();
        let err =
            super::super::incremental::sum(&mut pages, 1 << 20, 512, &mut std::io::sink(), None)
                .unwrap_err();
        assert_eq!(err.to_string(), "stopped");
        assert!(pages.read <= CHECK_EVERY, "read {} pages", pages.read);
    }

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
