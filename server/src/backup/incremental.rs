//! Page-level increments: what changed between two database images, and how an image is
//! rebuilt from a full archive and the increments after it.
//!
//! An image is a database file as a snapshot writes it: `page_count` pages of `page_size`
//! bytes. Each archive's pages are summed as SHA-256 digests, one per page; the next
//! increment holds the pages whose digest differs from its parent's (and every page past the
//! parent's end), listed in a page map of ascending 1-based page numbers. Applying an
//! increment writes its pages at their places and sets the image to its page count. The
//! image's own SHA-256 (in every manifest) proves the rebuild.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};

/// The digest of one page.
pub type PageDigest = [u8; 32];

/// The largest page map an increment has (16 Mi pages: 64 GiB of changed 4 KiB pages). It is
/// read whole, so the bound is the memory a crafted one can cost; a change larger than that
/// is written as a full archive instead.
pub const MAX_MAP_BYTES: u64 = 64 << 20;

/// Pages of an image that differ from its parent's, found while summing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Their 1-based numbers, ascending.
    Pages(Vec<u32>),
    /// More than an increment may list ([`MAX_MAP_BYTES`]): the list was not kept.
    TooMany,
}

/// Where an image's pages are read from: a file (a snapshot's copy, a rebuilt image) or the
/// database itself inside a read transaction ([`super::snapshot::Live`]).
pub trait PageSource: Send {
    /// Reads page `number` (from 1) into `buffer`, which is one page long.
    fn read_page(&mut self, number: u32, buffer: &mut [u8]) -> io::Result<()>;
}

/// An image file read page by page: sequentially when the pages asked for follow each
/// other, as summing and most increments read them.
#[derive(Debug)]
pub struct FileImage {
    reader: io::BufReader<File>,
    /// The byte offset the reader is at.
    at: u64,
    page_size: u64,
}

impl FileImage {
    /// Opens the image at `path`, and says how many pages it has.
    pub fn open(path: &Path, page_size: u64) -> io::Result<(FileImage, u64)> {
        if page_size == 0 {
            return Err(io::Error::other("a page size of 0"));
        }
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len % page_size != 0 {
            return Err(io::Error::other(format!(
                "{} ends inside a page ({} of {page_size} bytes)",
                path.display(),
                len % page_size
            )));
        }
        let image = FileImage {
            reader: io::BufReader::with_capacity(1 << 20, file),
            at: 0,
            page_size,
        };
        Ok((image, len / page_size))
    }
}

impl PageSource for FileImage {
    fn read_page(&mut self, number: u32, buffer: &mut [u8]) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        let offset = (u64::from(number).saturating_sub(1)) * self.page_size;
        if offset != self.at {
            self.reader.seek(SeekFrom::Start(offset))?;
        }
        self.reader.read_exact(buffer)?;
        self.at = offset + buffer.len() as u64;
        Ok(())
    }
}

/// Reads the `page_count` pages of an image in one pass and bounded memory: returns its
/// SHA-256, writes each page's digest to `out`, and with `parent` (an earlier image's page
/// digests, read in step) also returns the pages whose digest differs or that lie past the
/// parent's end.
pub fn sum(
    image: &mut dyn PageSource,
    page_count: u64,
    page_size: u64,
    out: &mut dyn Write,
    mut parent: Option<&mut dyn Read>,
) -> io::Result<(PageDigest, Option<Changed>)> {
    let page = usize::try_from(page_size).map_err(io::Error::other)?;
    if page == 0 {
        return Err(io::Error::other("a page size of 0"));
    }
    let last = u32::try_from(page_count)
        .map_err(|_| io::Error::other("more pages than SQLite numbers"))?;
    let most = usize::try_from(MAX_MAP_BYTES / 4).unwrap_or(usize::MAX);
    let mut changed = parent.is_some().then(|| Changed::Pages(Vec::new()));
    // The image's digest is summed on a second thread while this one sums the pages: two
    // passes of SHA-256 over every byte, side by side.
    std::thread::scope(|scope| {
        let (to_whole, batches) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(2);
        let (give_back, returned) = std::sync::mpsc::channel::<Arc<Vec<u8>>>();
        let whole = scope.spawn(move || {
            let mut whole = Sha256::new();
            for batch in batches {
                whole.update(&batch[..]);
                let _ = give_back.send(batch);
            }
            whole.finalize()
        });
        let mut number: u32 = 1;
        while number <= last {
            let n = (last - number + 1).min(BATCH_PAGES);
            let mut batch = returned
                .try_recv()
                .ok()
                .and_then(|b| Arc::try_unwrap(b).ok())
                .unwrap_or_default();
            batch.resize(n as usize * page, 0);
            for (i, buffer) in (number..).zip(batch.chunks_mut(page)) {
                image.read_page(i, buffer)?;
            }
            let batch = Arc::new(batch);
            to_whole
                .send(Arc::clone(&batch))
                .map_err(|_| io::Error::other("the image digest's thread ended"))?;
            for (i, buffer) in (number..).zip(batch.chunks(page)) {
                let digest: PageDigest = Sha256::digest(buffer).into();
                out.write_all(&digest)?;
                if let Some(parent) = parent.as_mut() {
                    let mut before = [0u8; 32];
                    let same = read_full(parent, &mut before)? == before.len() && before == digest;
                    if !same && let Some(Changed::Pages(pages)) = &mut changed {
                        if pages.len() < most {
                            pages.push(i);
                        } else {
                            changed = Some(Changed::TooMany);
                        }
                    }
                }
            }
            number += n;
        }
        drop(to_whole);
        let whole = whole
            .join()
            .map_err(|_| io::Error::other("the image digest's thread panicked"))?;
        Ok((whole.into(), changed))
    })
}

/// How many pages are read at a time while summing.
const BATCH_PAGES: u32 = 256;

/// Reads until `buffer` is full or the input ends; returns the bytes read.
fn read_full(input: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match input.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The page map as stored: each number as 4 bytes, little-endian.
pub fn encode_map(pages: &[u32]) -> Vec<u8> {
    pages.iter().flat_map(|p| p.to_le_bytes()).collect()
}

/// The page map read back, checked: ascending, each within `page_count`.
pub fn decode_map(bytes: &[u8], page_count: u64) -> Result<Vec<u32>, String> {
    if !bytes.len().is_multiple_of(4) {
        return Err(format!(
            "{} bytes is not a whole number of 4-byte page numbers",
            bytes.len()
        ));
    }
    let pages: Vec<u32> = bytes
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let mut previous = 0u32;
    for &page in &pages {
        if page <= previous {
            return Err(format!(
                "page {page} follows page {previous}; the map must ascend"
            ));
        }
        if u64::from(page) > page_count {
            return Err(format!(
                "page {page} is past the image's {page_count} pages"
            ));
        }
        previous = page;
    }
    Ok(pages)
}

/// Which pages [`PageReader`] reads.
#[derive(Debug)]
pub enum Pages {
    /// These (an increment's map).
    Listed(std::vec::IntoIter<u32>),
    /// Every page from 1 to the end (a full archive read from a live image).
    All(std::ops::RangeInclusive<u32>),
}

impl Iterator for Pages {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        match self {
            Pages::Listed(pages) => pages.next(),
            Pages::All(pages) => pages.next(),
        }
    }
}

/// Reads pages of an image in order as one stream of bytes: an archive's database or page
/// entry.
pub struct PageReader {
    image: Box<dyn PageSource>,
    pages: Pages,
    page: Vec<u8>,
    /// How much of `page` has been handed out.
    given: usize,
}

impl std::fmt::Debug for PageReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageReader")
            .field("pages", &self.pages)
            .finish_non_exhaustive()
    }
}

impl PageReader {
    pub fn new(image: Box<dyn PageSource>, pages: Pages, page_size: u64) -> PageReader {
        let page = vec![0u8; usize::try_from(page_size).unwrap_or(0)];
        PageReader {
            image,
            given: page.len(),
            pages,
            page,
        }
    }
}

impl Read for PageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.given == self.page.len() {
            let Some(number) = self.pages.next() else {
                return Ok(0);
            };
            self.image.read_page(number, &mut self.page)?;
            self.given = 0;
        }
        let n = buf.len().min(self.page.len() - self.given);
        buf[..n].copy_from_slice(&self.page[self.given..self.given + n]);
        self.given += n;
        Ok(n)
    }
}

/// Writes an increment's page entry into an image, each page at its place in the map.
#[derive(Debug)]
pub struct PagePlacer<'a> {
    image: &'a File,
    pages: std::slice::Iter<'a, u32>,
    page_size: u64,
    /// Where the next byte goes, and how many bytes of the current page are still due.
    at: u64,
    left: u64,
}

impl<'a> PagePlacer<'a> {
    pub fn new(image: &'a File, pages: &'a [u32], page_size: u64) -> PagePlacer<'a> {
        PagePlacer {
            image,
            pages: pages.iter(),
            page_size,
            at: 0,
            left: 0,
        }
    }
}

impl Write for PagePlacer<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            let Some(page) = self.pages.next() else {
                return Err(io::Error::other("more page bytes than the page map lists"));
            };
            self.at = (u64::from(*page) - 1) * self.page_size;
            self.left = self.page_size;
        }
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.image.write_all_at(&buf[..n], self.at)?;
        self.at += n as u64;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The SHA-256 of the whole image at `path`.
pub fn image_digest(path: &Path) -> io::Result<PageDigest> {
    let mut file = File::open(path)?;
    let mut sha = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = read_full(&mut file, &mut buffer)?;
        if n == 0 {
            break;
        }
        sha.update(&buffer[..n]);
    }
    Ok(sha.finalize().into())
}

/// The page digests of images recently archived, one file per image named by its SHA-256,
/// so that the next increment need not rebuild its parent to know its pages. Only a cache: a
/// missing or unreadable file means rebuilding.
#[derive(Debug, Clone)]
pub struct DigestCache {
    dir: std::path::PathBuf,
}

/// How many images' digests are kept (the newest by modification time).
const CACHED_IMAGES: usize = 64;

impl DigestCache {
    pub fn new(dir: std::path::PathBuf) -> DigestCache {
        DigestCache { dir }
    }

    fn file(&self, image_sha256: &str) -> Option<std::path::PathBuf> {
        let named = image_sha256.len() == 64 && image_sha256.bytes().all(|b| b.is_ascii_hexdigit());
        named.then(|| self.dir.join(format!("{image_sha256}.digests")))
    }

    /// Where the digests are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the digests of the image with SHA-256 `image_sha256` are kept.
    pub fn has(&self, image_sha256: &str) -> bool {
        self.file(image_sha256).is_some_and(|f| f.is_file())
    }

    /// [`sum`]s the image at `path` against the kept digests of `parent` (an image SHA-256,
    /// which must be kept: see [`Self::has`]), and keeps the image's own digests for the next
    /// increment. Returns the image's SHA-256 (hex). Keeping is best effort: when the
    /// directory cannot be written, the digests are not kept (and logged).
    pub fn sum_file(
        &self,
        path: &Path,
        page_size: u64,
        parent: Option<&str>,
    ) -> io::Result<(String, Option<Changed>)> {
        let (mut image, page_count) = FileImage::open(path, page_size)?;
        self.sum(&mut image, page_count, page_size, parent)
    }

    /// As [`Self::sum_file`], for the `page_count` pages of any image.
    pub fn sum(
        &self,
        image: &mut dyn PageSource,
        page_count: u64,
        page_size: u64,
        parent: Option<&str>,
    ) -> io::Result<(String, Option<Changed>)> {
        let mut before = match parent {
            Some(sha) => {
                let file = self
                    .file(sha)
                    .ok_or_else(|| io::Error::other(format!("{sha:?} is not an image SHA-256")))?;
                Some(io::BufReader::new(File::open(file)?))
            }
            None => None,
        };
        // Owner-only (tempfile's mode), and removed on any failure when dropped.
        let temp = std::fs::DirBuilder::new()
            .recursive(true)
            .create(&self.dir)
            .and_then(|()| {
                tempfile::Builder::new()
                    .prefix(crate::new_file::TEMP_PREFIX)
                    .tempfile_in(&self.dir)
            });
        let temp = match temp {
            Ok(temp) => Some(temp),
            Err(e) => {
                tracing::debug!(error = %e, dir = %self.dir.display(), "keeping page digests");
                None
            }
        };
        let mut kept = temp.map(io::BufWriter::new);
        let mut sink = io::sink();
        let out: &mut dyn Write = match kept.as_mut() {
            Some(w) => w,
            None => &mut sink,
        };
        let (image, changed) = sum(
            image,
            page_count,
            page_size,
            out,
            before.as_mut().map(|r| r as &mut dyn Read),
        )?;
        let image = super::manifest::hex(&image);
        if let (Some(writer), Some(target)) = (kept, self.file(&image)) {
            let stored = writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|temp| temp.persist(&target).map(drop).map_err(|e| e.error));
            if let Err(e) = stored {
                tracing::debug!(error = %e, dir = %self.dir.display(), "keeping page digests");
            }
            self.trim();
        }
        Ok((image, changed))
    }

    fn trim(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> = entries
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= CACHED_IMAGES {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - CACHED_IMAGES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A real database with `rows` rows, in rollback mode as snapshots are.
    fn database(path: &Path, rows: i64) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = DELETE; CREATE TABLE t (id INTEGER PRIMARY KEY, pad TEXT);",
        )
        .unwrap();
        let mut insert = conn.prepare("INSERT INTO t VALUES (?1, ?2)").unwrap();
        for id in 0..rows {
            insert
                .execute(rusqlite::params![id, format!("{id:0>200}")])
                .unwrap();
        }
    }

    #[test]
    fn an_increment_rebuilds_the_changed_image_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (before, after) = (dir.path().join("before.db"), dir.path().join("after.db"));
        database(&before, 5000);
        std::fs::copy(&before, &after).unwrap();
        {
            let conn = Connection::open(&after).unwrap();
            conn.execute_batch(
                "UPDATE t SET pad = 'changed' WHERE id % 100 = 0; INSERT INTO t SELECT id + 5000, pad FROM t WHERE id < 500;",
            )
            .unwrap();
        }
        // Through the cache, as a backup into a collection does.
        let cache = DigestCache::new(dir.path().join("digests"));
        let (parent, none) = cache.sum_file(&before, 4096, None).unwrap();
        assert_eq!(none, None);
        assert!(cache.has(&parent));
        let (image, changed) = cache.sum_file(&after, 4096, Some(&parent)).unwrap();
        let Some(Changed::Pages(changed)) = changed else {
            panic!("{changed:?}");
        };
        let pages = std::fs::metadata(&after).unwrap().len() as usize / 4096;
        assert!(
            !changed.is_empty() && changed.len() < pages / 2,
            "{changed:?}"
        );

        // The increment's bytes, then applied to a copy of the parent.
        let mut entry = Vec::new();
        let (source, _) = FileImage::open(&after, 4096).unwrap();
        PageReader::new(
            Box::new(source),
            Pages::Listed(changed.clone().into_iter()),
            4096,
        )
        .read_to_end(&mut entry)
        .unwrap();
        assert_eq!(entry.len(), changed.len() * 4096);
        let map = decode_map(&encode_map(&changed), pages as u64).unwrap();
        let rebuilt = dir.path().join("rebuilt.db");
        std::fs::copy(&before, &rebuilt).unwrap();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&rebuilt)
            .unwrap();
        PagePlacer::new(&file, &map, 4096)
            .write_all(&entry)
            .unwrap();
        file.set_len(pages as u64 * 4096).unwrap();
        drop(file);
        assert_eq!(
            super::super::manifest::hex(&image_digest(&rebuilt).unwrap()),
            image
        );
        let conn = Connection::open(&rebuilt).unwrap();
        let count: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 5500);
    }

    #[test]
    fn a_page_map_that_does_not_ascend_or_overruns_is_refused() {
        assert!(decode_map(&encode_map(&[1, 3, 2]), 10).is_err());
        assert!(decode_map(&encode_map(&[1, 11]), 10).is_err());
        assert!(decode_map(&[0, 1, 2], 10).is_err());
        assert_eq!(decode_map(&encode_map(&[2, 5]), 10).unwrap(), [2, 5]);
    }
}
