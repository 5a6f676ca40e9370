//! A streaming ZIP writer for entries whose bytes are compressed elsewhere.
//!
//! Why not the `zip` crate's writer: it compresses an entry on one thread, and its API for
//! pre-compressed entries (`add_prepared_file`) holds the whole compressed entry in memory. A
//! backup compresses one large entry on every core and must keep memory bounded, so it needs to
//! append compressed bytes as they come. Reading (verify, restore) uses the `zip` crate.
//!
//! What is written (APPNOTE 6.3.10): local header, data, central directory, end record; Zip64
//! extra fields and end records only when a size or offset needs them. In a file, local
//! headers are patched in place once the CRC and sizes are known, so no data descriptors are
//! used; on a stream that cannot seek (an upload to object storage), each entry's CRC and
//! sizes follow its data in a data descriptor (flag bit 3), as `zip -` writes to a pipe.

use std::io::{self, Seek, SeekFrom, Write};

/// How an entry's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Stored,
    Deflated,
}

impl Method {
    fn code(self) -> u16 {
        match self {
            Method::Stored => 0,
            Method::Deflated => 8,
        }
    }
}

/// A timestamp in the MS-DOS form ZIP headers use (no time zone; we write UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DosTime {
    pub date: u16,
    pub time: u16,
}

impl DosTime {
    pub fn from_utc(at: chrono::DateTime<chrono::Utc>) -> DosTime {
        use chrono::{Datelike, Timelike};
        let year = at.year().clamp(1980, 2107) as u16;
        DosTime {
            date: ((year - 1980) << 9) | ((at.month() as u16) << 5) | at.day() as u16,
            time: ((at.hour() as u16) << 11)
                | ((at.minute() as u16) << 5)
                | (at.second() as u16 / 2),
        }
    }
}

const U32_LIMIT: u64 = 0xFFFF_FFFF;
/// An entry at least this large gets Zip64 sizes in its local header. Below it, even stored
/// (incompressible) deflate output cannot reach 4 GiB: deflate adds 5 bytes per 64 KiB block.
const ZIP64_ENTRY_THRESHOLD: u64 = U32_LIMIT - (64 << 20);
const VERSION_ZIP64: u16 = 45;
const VERSION_DEFAULT: u16 = 20;
const VERSION_AES: u16 = 51;
/// "Made by" Unix (3), spec 4.5 (5.1 for an AES entry): readers then honour the permission
/// bits below.
const VERSION_MADE_BY: u16 = (3 << 8) | VERSION_ZIP64;
const VERSION_MADE_BY_AES: u16 = (3 << 8) | VERSION_AES;
/// Regular file, mode 0600: the archive holds a whole database.
const EXTERNAL_ATTRIBUTES: u32 = 0o100600 << 16;

#[derive(Debug)]
struct Entry {
    name: String,
    /// Its CRC and sizes follow the data in a data descriptor (general purpose flag bit 3).
    descriptor: bool,
    method: Method,
    /// A WinZip AES entry: its data is sealed by [`super::encryption::Sealer`], its method
    /// is AES's and its CRC 0 (AE-2), its real method in the 0x9901 extra field.
    sealed: bool,
    /// Its size was announced (else it is known only once written, and the entry is Zip64).
    sized: bool,
    modified: DosTime,
    zip64: bool,
    header_offset: u64,
    crc32: u32,
    compressed: u64,
    size: u64,
}

/// Rewrites a local header in place and returns to the end (a file's way).
type Patch<W> = fn(&mut W, u64, &[u8], u64) -> io::Result<()>;

fn patch_in_place<W: Write + Seek>(
    out: &mut W,
    at: u64,
    header: &[u8],
    end: u64,
) -> io::Result<()> {
    out.seek(SeekFrom::Start(at))?;
    out.write_all(header)?;
    out.seek(SeekFrom::Start(end))?;
    Ok(())
}

/// Writes one archive to `out`, entry by entry.
pub struct ZipWriter<W: Write> {
    out: W,
    /// How to finish a local header: in place, or (`None`) with a data descriptor.
    patch: Option<Patch<W>>,
    position: u64,
    entries: Vec<Entry>,
    open: Option<Entry>,
    /// Entries at least this large get Zip64 sizes (lowered by tests to exercise Zip64).
    zip64_threshold: u64,
}

impl<W: Write> std::fmt::Debug for ZipWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipWriter")
            .field("position", &self.position)
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Seek> ZipWriter<W> {
    /// Starts an archive at the current position of `out` (normally an empty file).
    pub fn new(mut out: W) -> io::Result<ZipWriter<W>> {
        let position = out.stream_position()?;
        Ok(ZipWriter {
            out,
            patch: Some(patch_in_place::<W>),
            position,
            entries: Vec::new(),
            open: None,
            zip64_threshold: ZIP64_ENTRY_THRESHOLD,
        })
    }
}

impl<W: Write> ZipWriter<W> {
    /// Starts an archive on a stream that cannot seek: entries get data descriptors.
    pub fn streaming(out: W) -> ZipWriter<W> {
        ZipWriter {
            out,
            patch: None,
            position: 0,
            entries: Vec::new(),
            open: None,
            zip64_threshold: ZIP64_ENTRY_THRESHOLD,
        }
    }

    #[cfg(test)]
    fn with_zip64_threshold(mut self, threshold: u64) -> Self {
        self.zip64_threshold = threshold;
        self
    }

    /// Starts an entry of `size` uncompressed bytes; its data follows through [`Self::write_data`].
    pub fn start_entry(
        &mut self,
        name: &str,
        method: Method,
        size: u64,
        modified: DosTime,
    ) -> io::Result<()> {
        self.open_entry(name, method, Some(size), modified, false)
    }

    /// As [`Self::start_entry`], for an entry whose data (compressed by `method`) is written
    /// sealed: salt, verifier, ciphertext and authentication code.
    pub fn start_sealed_entry(
        &mut self,
        name: &str,
        method: Method,
        size: u64,
        modified: DosTime,
    ) -> io::Result<()> {
        self.open_entry(name, method, Some(size), modified, true)
    }

    /// As [`Self::start_sealed_entry`], for data whose size is known only once written (an
    /// encrypted export's file): the entry gets Zip64 sizes.
    pub fn start_sealed_stream(
        &mut self,
        name: &str,
        method: Method,
        modified: DosTime,
    ) -> io::Result<()> {
        self.open_entry(name, method, None, modified, true)
    }

    fn open_entry(
        &mut self,
        name: &str,
        method: Method,
        size: Option<u64>,
        modified: DosTime,
        sealed: bool,
    ) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other("the previous ZIP entry is still open"));
        }
        let zip64 = size.is_none_or(|size| size >= self.zip64_threshold);
        let entry = Entry {
            name: name.to_owned(),
            descriptor: self.patch.is_none(),
            method,
            sealed,
            sized: size.is_some(),
            modified,
            zip64,
            header_offset: self.position,
            crc32: 0,
            compressed: 0,
            size: size.unwrap_or(0),
        };
        let header = local_header(&entry);
        self.put(&header)?;
        self.open = Some(entry);
        Ok(())
    }

    /// Appends bytes of the open entry as they are stored (already compressed if deflated).
    pub fn write_data(&mut self, bytes: &[u8]) -> io::Result<()> {
        let Some(entry) = self.open.as_mut() else {
            return Err(io::Error::other("no ZIP entry is open"));
        };
        entry.compressed += bytes.len() as u64;
        self.put(bytes)
    }

    /// Closes the open entry: its CRC-32 and uncompressed size go into the local header.
    pub fn finish_entry(&mut self, crc32: u32, size: u64) -> io::Result<()> {
        let Some(mut entry) = self.open.take() else {
            return Err(io::Error::other("no ZIP entry is open"));
        };
        if !entry.sized {
            entry.size = size;
        }
        if size != entry.size {
            return Err(io::Error::other(format!(
                "ZIP entry {} announced {} bytes but {size} were written",
                entry.name, entry.size
            )));
        }
        if !entry.zip64 && entry.compressed >= U32_LIMIT {
            return Err(io::Error::other(format!(
                "ZIP entry {} grew past 4 GiB when compressed",
                entry.name
            )));
        }
        // AE-2: the CRC of the plaintext would tell about it; the MAC proves the data.
        entry.crc32 = if entry.sealed { 0 } else { crc32 };
        match self.patch {
            Some(patch) => {
                let header = local_header(&entry);
                patch(&mut self.out, entry.header_offset, &header, self.position)?;
            }
            None => {
                let descriptor = data_descriptor(&entry);
                self.put(&descriptor)?;
            }
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Writes the central directory and end records; returns the writer and the archive size.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        if self.open.is_some() {
            return Err(io::Error::other("a ZIP entry is still open"));
        }
        let directory_offset = self.position;
        let mut directory = Vec::new();
        for entry in &self.entries {
            central_header(entry, &mut directory);
        }
        self.put(&directory)?;
        let directory_size = directory.len() as u64;
        let count = self.entries.len() as u64;
        let needs_zip64 = directory_offset >= U32_LIMIT || count >= 0xFFFF;
        let mut end = Vec::new();
        if needs_zip64 {
            let record_offset = self.position;
            // Zip64 end of central directory record.
            end.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
            end.extend_from_slice(&44u64.to_le_bytes());
            end.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            end.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&count.to_le_bytes());
            end.extend_from_slice(&directory_size.to_le_bytes());
            end.extend_from_slice(&directory_offset.to_le_bytes());
            // Zip64 end of central directory locator.
            end.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
            end.extend_from_slice(&0u32.to_le_bytes());
            end.extend_from_slice(&record_offset.to_le_bytes());
            end.extend_from_slice(&1u32.to_le_bytes());
        }
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        let short_count = count.min(0xFFFF) as u16;
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&short_count.to_le_bytes());
        end.extend_from_slice(&(directory_size.min(U32_LIMIT) as u32).to_le_bytes());
        end.extend_from_slice(&(directory_offset.min(U32_LIMIT) as u32).to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes());
        self.put(&end)?;
        self.out.flush()?;
        Ok((self.out, self.position))
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }
}

/// General purpose flags: bit 3 when a data descriptor carries the CRC and sizes, bit 0
/// when the entry is encrypted.
fn flags(entry: &Entry) -> u16 {
    let descriptor = if entry.descriptor { 0x0008 } else { 0 };
    descriptor | u16::from(entry.sealed)
}

/// The method code in the headers: AES's for a sealed entry.
fn method_code(entry: &Entry) -> u16 {
    if entry.sealed {
        super::encryption::AES_METHOD
    } else {
        entry.method.code()
    }
}

/// The version needed to extract: 5.1 for AES (APPNOTE 4.4.3.2), 4.5 for Zip64.
fn version_needed(entry: &Entry, zip64: bool) -> u16 {
    if entry.sealed {
        VERSION_AES
    } else if zip64 {
        VERSION_ZIP64
    } else {
        VERSION_DEFAULT
    }
}

/// The AES extra field (0x9901) of a sealed entry: vendor version 2 (AE-2), vendor "AE",
/// strength 3 (256 bits), the real compression method.
fn aes_extra(entry: &Entry, out: &mut Vec<u8>) {
    if entry.sealed {
        out.extend_from_slice(&0x9901u16.to_le_bytes());
        out.extend_from_slice(&7u16.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(b"AE");
        out.push(3);
        out.extend_from_slice(&entry.method.code().to_le_bytes());
    }
}

const AES_EXTRA_LEN: u16 = 11;

/// The record after an entry's data on a stream (APPNOTE 4.3.9): signature, CRC, compressed
/// and uncompressed sizes, 8 bytes each for a Zip64 entry.
fn data_descriptor(entry: &Entry) -> Vec<u8> {
    let mut d = Vec::with_capacity(24);
    d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
    d.extend_from_slice(&entry.crc32.to_le_bytes());
    if entry.zip64 {
        d.extend_from_slice(&entry.compressed.to_le_bytes());
        d.extend_from_slice(&entry.size.to_le_bytes());
    } else {
        d.extend_from_slice(&(entry.compressed as u32).to_le_bytes());
        d.extend_from_slice(&(entry.size as u32).to_le_bytes());
    }
    d
}

fn local_header(entry: &Entry) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + entry.name.len() + 20);
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&version_needed(entry, entry.zip64).to_le_bytes());
    h.extend_from_slice(&flags(entry).to_le_bytes());
    h.extend_from_slice(&method_code(entry).to_le_bytes());
    h.extend_from_slice(&entry.modified.time.to_le_bytes());
    h.extend_from_slice(&entry.modified.date.to_le_bytes());
    h.extend_from_slice(&entry.crc32.to_le_bytes());
    // With a data descriptor the sizes follow the data; the local header says 0 (APPNOTE
    // 4.4.4 and 4.4.8).
    let (size, compressed) = if entry.descriptor {
        (0, 0)
    } else {
        (entry.size, entry.compressed)
    };
    if entry.zip64 {
        h.extend_from_slice(&(U32_LIMIT as u32).to_le_bytes());
        h.extend_from_slice(&(U32_LIMIT as u32).to_le_bytes());
    } else {
        h.extend_from_slice(&(compressed as u32).to_le_bytes());
        h.extend_from_slice(&(size as u32).to_le_bytes());
    }
    h.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
    let zip64_len: u16 = if entry.zip64 { 20 } else { 0 };
    let aes_len = if entry.sealed { AES_EXTRA_LEN } else { 0 };
    h.extend_from_slice(&(zip64_len + aes_len).to_le_bytes());
    h.extend_from_slice(entry.name.as_bytes());
    if entry.zip64 {
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&16u16.to_le_bytes());
        h.extend_from_slice(&size.to_le_bytes());
        h.extend_from_slice(&compressed.to_le_bytes());
    }
    aes_extra(entry, &mut h);
    h
}

fn central_header(entry: &Entry, out: &mut Vec<u8>) {
    let mut extra = Vec::new();
    let mut field = |value: u64, forced: bool| -> u32 {
        if forced || value >= U32_LIMIT {
            extra.extend_from_slice(&value.to_le_bytes());
            U32_LIMIT as u32
        } else {
            value as u32
        }
    };
    let size = field(entry.size, entry.zip64);
    let compressed = field(entry.compressed, entry.zip64);
    let offset = field(entry.header_offset, false);
    let version = version_needed(entry, !extra.is_empty());
    out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
    let made_by = if entry.sealed {
        VERSION_MADE_BY_AES
    } else {
        VERSION_MADE_BY
    };
    out.extend_from_slice(&made_by.to_le_bytes());
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&flags(entry).to_le_bytes());
    out.extend_from_slice(&method_code(entry).to_le_bytes());
    out.extend_from_slice(&entry.modified.time.to_le_bytes());
    out.extend_from_slice(&entry.modified.date.to_le_bytes());
    out.extend_from_slice(&entry.crc32.to_le_bytes());
    out.extend_from_slice(&compressed.to_le_bytes());
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&(entry.name.len() as u16).to_le_bytes());
    let zip64_len = if extra.is_empty() { 0 } else { 4 + extra.len() };
    let aes_len = if entry.sealed {
        AES_EXTRA_LEN as usize
    } else {
        0
    };
    out.extend_from_slice(&((zip64_len + aes_len) as u16).to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out.extend_from_slice(&0u16.to_le_bytes()); // disk number
    out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
    out.extend_from_slice(&EXTERNAL_ATTRIBUTES.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(entry.name.as_bytes());
    if !extra.is_empty() {
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&(extra.len() as u16).to_le_bytes());
        out.extend_from_slice(&extra);
    }
    aes_extra(entry, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn the_zip_crate_reads_what_we_write() {
        let data = b"hello hello hello hello".repeat(1000);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new())).unwrap();
        let when = DosTime::from_utc(chrono::Utc::now());
        zip.start_entry("a.txt", Method::Deflated, data.len() as u64, when)
            .unwrap();
        for part in deflate(&data).chunks(100) {
            zip.write_data(part).unwrap();
        }
        zip.finish_entry(crc32fast::hash(&data), data.len() as u64)
            .unwrap();
        zip.start_entry("b.txt", Method::Stored, 3, when).unwrap();
        zip.write_data(b"abc").unwrap();
        zip.finish_entry(crc32fast::hash(b"abc"), 3).unwrap();
        let (cursor, size) = zip.finish().unwrap();
        assert_eq!(size as usize, cursor.get_ref().len());

        let mut archive = zip::ZipArchive::new(cursor).unwrap();
        let mut out = Vec::new();
        archive
            .by_name("a.txt")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        let mut out = String::new();
        archive
            .by_name("b.txt")
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "abc");
    }

    #[test]
    fn zip64_entries_read_back() {
        let data = b"zip64 ".repeat(10_000);
        let mut zip = ZipWriter::new(Cursor::new(Vec::new()))
            .unwrap()
            .with_zip64_threshold(0);
        let when = DosTime::from_utc(chrono::Utc::now());
        zip.start_entry("big", Method::Deflated, data.len() as u64, when)
            .unwrap();
        zip.write_data(&deflate(&data)).unwrap();
        zip.finish_entry(crc32fast::hash(&data), data.len() as u64)
            .unwrap();
        let (cursor, _) = zip.finish().unwrap();
        let bytes = cursor.into_inner();
        // The local header carries the Zip64 extra field (header id 1).
        assert_eq!(&bytes[30 + 3..30 + 3 + 2], &1u16.to_le_bytes());
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        let mut out = Vec::new();
        archive
            .by_name("big")
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
    }

    /// A writer that cannot seek, as an upload is.
    struct Stream(Vec<u8>);

    impl Write for Stream {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stream_gets_data_descriptors_and_reads_back() {
        let data = b"streamed ".repeat(5_000);
        for threshold in [ZIP64_ENTRY_THRESHOLD, 0] {
            let mut zip = ZipWriter::streaming(Stream(Vec::new()));
            zip.zip64_threshold = threshold;
            let when = DosTime::from_utc(chrono::Utc::now());
            zip.start_entry("a", Method::Deflated, data.len() as u64, when)
                .unwrap();
            for part in deflate(&data).chunks(1000) {
                zip.write_data(part).unwrap();
            }
            zip.finish_entry(crc32fast::hash(&data), data.len() as u64)
                .unwrap();
            zip.start_entry("b", Method::Stored, 3, when).unwrap();
            zip.write_data(b"abc").unwrap();
            zip.finish_entry(crc32fast::hash(b"abc"), 3).unwrap();
            let (Stream(bytes), size) = zip.finish().unwrap();
            assert_eq!(size as usize, bytes.len());
            // Flag bit 3 in the first local header.
            assert_eq!(u16::from_le_bytes([bytes[6], bytes[7]]) & 0x0008, 0x0008);
            let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
            let mut out = Vec::new();
            archive.by_name("a").unwrap().read_to_end(&mut out).unwrap();
            assert_eq!(out, data, "zip64 threshold {threshold}");
            let mut out = String::new();
            archive
                .by_name("b")
                .unwrap()
                .read_to_string(&mut out)
                .unwrap();
            assert_eq!(out, "abc");
        }
    }

    #[test]
    fn a_wrong_size_is_refused() {
        let mut zip = ZipWriter::new(Cursor::new(Vec::new())).unwrap();
        let when = DosTime::from_utc(chrono::Utc::now());
        zip.start_entry("a", Method::Stored, 3, when).unwrap();
        zip.write_data(b"ab").unwrap();
        assert!(zip.finish_entry(0, 2).is_err());
    }
}
