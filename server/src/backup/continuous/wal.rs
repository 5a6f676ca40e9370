//! Reading a live SQLite write-ahead log (the `-wal` file beside a database): its header,
//! and the committed frames after a position, checked by the log's own cumulative
//! checksums exactly as SQLite's recovery checks them. Frames after the last valid commit
//! frame (a transaction still being written, or torn by a crash) are never returned.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// The header's first bytes: the checksums' byte order is in the low bit.
const MAGIC: u32 = 0x377f_0682;
pub const HEADER_BYTES: u64 = 32;
pub const FRAME_HEADER_BYTES: u64 = 24;

/// One generation of the log: it starts again at frame 1, with new salts, after a checkpoint
/// has copied every frame back (a "restart").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub page_size: u32,
    pub salts: (u32, u32),
    big_endian_sums: bool,
    /// The checksum the first frame's chain starts from.
    sums: (u32, u32),
}

impl Header {
    /// The salts as one number (how commit times and segments name a generation).
    pub fn generation(&self) -> u64 {
        (u64::from(self.salts.0) << 32) | u64::from(self.salts.1)
    }
}

/// Reads the log's header; `None` when the log is missing, empty or not (yet) valid.
pub fn header(wal: &File) -> io::Result<Option<Header>> {
    let mut bytes = [0u8; HEADER_BYTES as usize];
    match wal.read_exact_at(&mut bytes, 0) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let magic = word(0);
    if magic & !1 != MAGIC {
        return Ok(None);
    }
    let big_endian_sums = magic & 1 == 1;
    let page_size = word(8);
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Ok(None);
    }
    let sums = checksum((0, 0), &bytes[..24], big_endian_sums);
    if sums != (word(24), word(28)) {
        return Ok(None);
    }
    Ok(Some(Header {
        page_size,
        salts: (word(16), word(20)),
        big_endian_sums,
        sums,
    }))
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `sums`.
fn checksum(sums: (u32, u32), data: &[u8], big_endian: bool) -> (u32, u32) {
    let (mut s0, mut s1) = sums;
    for pair in data.chunks_exact(8) {
        let read = |b: &[u8]| {
            let b = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// Where reading stopped: after frame `frame` (0: before the first) of the generation
/// `header` describes, with the checksum chain there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub header: Header,
    pub frame: u32,
    sums: (u32, u32),
}

impl Position {
    /// Before the first frame of a generation.
    pub fn start(header: Header) -> Position {
        Position {
            header,
            frame: 0,
            sums: header.sums,
        }
    }
}

/// One frame: a page as of a transaction, and for a transaction's last frame the database's
/// size in pages after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub page: u32,
    /// Nonzero on a commit frame.
    pub commit_pages: u32,
    pub data: Vec<u8>,
}

/// The committed frames after `from`, up to at most `max_bytes` of pages (whole
/// transactions, unless one transaction alone is larger: then it is returned in parts, and
/// the position is inside it). Returns them with the position after the last one returned.
pub fn committed_after(
    wal: &File,
    from: Position,
    max_bytes: u64,
) -> io::Result<(Vec<Frame>, Position)> {
    let page_size = u64::from(from.header.page_size);
    let frame_bytes = FRAME_HEADER_BYTES + page_size;
    let mut buffer = vec![0u8; frame_bytes as usize];
    let mut frames = Vec::new();
    let mut at = from;
    // Frames read since the last commit frame: returned only once their commit is seen.
    let mut pending: Vec<Frame> = Vec::new();
    let mut committed_at = from;
    loop {
        let offset = HEADER_BYTES + u64::from(at.frame) * frame_bytes;
        match wal.read_exact_at(&mut buffer, offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let word =
            |i: usize| u32::from_be_bytes([buffer[i], buffer[i + 1], buffer[i + 2], buffer[i + 3]]);
        let Some(sums) = valid_after(&buffer, at) else {
            break;
        };
        at = Position {
            header: at.header,
            frame: at.frame + 1,
            sums,
        };
        let frame = Frame {
            page: word(0),
            commit_pages: word(4),
            data: buffer[FRAME_HEADER_BYTES as usize..].to_vec(),
        };
        let commit = frame.commit_pages != 0;
        pending.push(frame);
        if commit {
            frames.append(&mut pending);
            committed_at = at;
            if frames.len() as u64 * page_size >= max_bytes {
                break;
            }
        } else if (frames.len() + pending.len()) as u64 * page_size >= max_bytes {
            // One transaction larger than a segment goes in parts, but only once its commit
            // frame is known to be there; after others, it waits for the next call.
            if frames.is_empty() && commit_follows(wal, at)? {
                frames.append(&mut pending);
                committed_at = at;
            }
            break;
        }
    }
    Ok((frames, committed_at))
}

/// Whether a valid frame follows `at` in the same generation.
pub fn frame_follows(wal: &File, at: Position) -> io::Result<bool> {
    let page_size = u64::from(at.header.page_size);
    let mut buffer = vec![0u8; (FRAME_HEADER_BYTES + page_size) as usize];
    let offset = HEADER_BYTES + u64::from(at.frame) * (FRAME_HEADER_BYTES + page_size);
    match wal.read_exact_at(&mut buffer, offset) {
        Ok(()) => Ok(valid_after(&buffer, at).is_some()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The checksums after `frame` (its header and page, read at the place after `at`), if it
/// is a valid frame there.
fn valid_after(frame: &[u8], at: Position) -> Option<(u32, u32)> {
    let word = |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
    if (word(8), word(12)) != at.header.salts || word(0) == 0 {
        return None;
    }
    let sums = checksum(at.sums, &frame[..8], at.header.big_endian_sums);
    let sums = checksum(
        sums,
        &frame[FRAME_HEADER_BYTES as usize..],
        at.header.big_endian_sums,
    );
    (sums == (word(16), word(20))).then_some(sums)
}

/// Whether a valid commit frame follows `at` in the same generation.
fn commit_follows(wal: &File, from: Position) -> io::Result<bool> {
    let page_size = u64::from(from.header.page_size);
    let frame_bytes = FRAME_HEADER_BYTES + page_size;
    let mut buffer = vec![0u8; frame_bytes as usize];
    let mut at = from;
    loop {
        let offset = HEADER_BYTES + u64::from(at.frame) * frame_bytes;
        match wal.read_exact_at(&mut buffer, offset) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        let Some(sums) = valid_after(&buffer, at) else {
            return Ok(false);
        };
        if u32::from_be_bytes([buffer[4], buffer[5], buffer[6], buffer[7]]) != 0 {
            return Ok(true);
        }
        at = Position {
            header: at.header,
            frame: at.frame + 1,
            sums,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// A database in WAL mode whose log is never checkpointed (so the test reads it).
    fn database(dir: &std::path::Path) -> Connection {
        let conn = Connection::open(dir.join("d.sqlite")).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        conn.execute_batch("CREATE TABLE t(x)").unwrap();
        conn
    }

    #[test]
    fn committed_frames_are_read_in_order_and_a_torn_tail_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path());
        for i in 0..5 {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let wal = File::open(dir.path().join("d.sqlite-wal")).unwrap();
        let header = header(&wal).unwrap().unwrap();
        assert_eq!(header.page_size, 4096);
        let (frames, end) = committed_after(&wal, Position::start(header), u64::MAX).unwrap();
        let commits = frames.iter().filter(|f| f.commit_pages != 0).count();
        assert_eq!(commits, 6, "CREATE TABLE and five inserts");
        assert!(frames.last().unwrap().commit_pages != 0);
        // Nothing new after the end; then one more commit is exactly what follows.
        let (none, same) = committed_after(&wal, end, u64::MAX).unwrap();
        assert!(none.is_empty());
        assert_eq!(same, end);
        conn.execute("INSERT INTO t VALUES (99)", []).unwrap();
        let (more, after) = committed_after(&wal, end, u64::MAX).unwrap();
        assert_eq!(more.iter().filter(|f| f.commit_pages != 0).count(), 1);
        assert_eq!(after.frame, end.frame + more.len() as u32);
        // A frame damaged on disk ends the log there, as SQLite's recovery would.
        drop(wal);
        let path = dir.path().join("d.sqlite-wal");
        let copy = dir.path().join("copy-wal");
        std::fs::copy(&path, &copy).unwrap();
        let damaged = std::fs::OpenOptions::new().write(true).open(&copy).unwrap();
        let frame_bytes = FRAME_HEADER_BYTES + 4096;
        damaged
            .write_all_at(
                b"x",
                HEADER_BYTES + u64::from(end.frame) * frame_bytes + 100,
            )
            .unwrap();
        let damaged = File::open(&copy).unwrap();
        let (read, stop) = committed_after(&damaged, Position::start(header), u64::MAX).unwrap();
        assert_eq!(stop, end);
        assert_eq!(read.len(), frames.len());
    }
}
