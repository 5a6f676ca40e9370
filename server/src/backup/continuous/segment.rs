//! The segment format of a continuous archive (docs/FORMATS.md): a gzip stream holding the
//! frames of the write-ahead log shipped in one step, each transaction's commit time, and a
//! SHA-256 of it all. Reading checks every bound before it allocates.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use super::wal::Frame;

const MAGIC: &[u8; 8] = b"CAIRNSEG";
pub const FORMAT_VERSION: u32 = 1;
/// The most page bytes a segment holds (a larger transaction spans segments).
pub const MAX_PAGE_BYTES: u64 = 8 << 20;
/// What reading one may decompress at most: its pages, their headers and the times.
const MAX_BYTES: u64 = 2 * MAX_PAGE_BYTES + (1 << 20);
/// Bytes before the commit times.
const HEADER_BYTES: usize = 56;

/// One step of shipping: consecutive frames of one generation of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Its place in the database's stream (the first is 1; no gaps).
    pub sequence: u64,
    pub page_size: u32,
    /// The log's generation (its salts) the frames are from.
    pub generation: u64,
    /// The frame number (from 1) of the first frame in its generation.
    pub first_frame: u32,
    /// When the archiver read the log (Unix microseconds): with `complete`, everything
    /// committed before then is in this segment or an earlier one.
    pub shipped_at: i64,
    /// Whether this is the last segment of its step (the log was read to its end).
    pub complete: bool,
    pub frames: Vec<Frame>,
    /// The commit time (Unix microseconds) of each commit frame, in order.
    pub commit_times: Vec<i64>,
}

impl Segment {
    /// The segment's name in its stream's directory or prefix.
    pub fn name(sequence: u64) -> String {
        format!("{sequence:012}.seg")
    }

    /// The sequence number a name gives, if it is a segment's.
    pub fn sequence_of(name: &str) -> Option<u64> {
        let digits = name.strip_suffix(".seg")?;
        (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
            .then(|| digits.parse().ok())
            .flatten()
    }

    /// The encoded segment: gzip of the content and its digest.
    pub fn encode(&self) -> std::io::Result<Vec<u8>> {
        let mut raw = Vec::with_capacity(
            64 + self.frames.len() * (8 + self.page_size as usize) + self.commit_times.len() * 8,
        );
        raw.extend_from_slice(MAGIC);
        raw.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        raw.extend_from_slice(&self.page_size.to_le_bytes());
        raw.extend_from_slice(&self.sequence.to_le_bytes());
        raw.extend_from_slice(&self.generation.to_le_bytes());
        raw.extend_from_slice(&self.first_frame.to_le_bytes());
        raw.extend_from_slice(&self.shipped_at.to_le_bytes());
        raw.extend_from_slice(&u32::from(self.complete).to_le_bytes());
        raw.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        raw.extend_from_slice(&(self.commit_times.len() as u32).to_le_bytes());
        for t in &self.commit_times {
            raw.extend_from_slice(&t.to_le_bytes());
        }
        for frame in &self.frames {
            raw.extend_from_slice(&frame.page.to_le_bytes());
            raw.extend_from_slice(&frame.commit_pages.to_le_bytes());
            raw.extend_from_slice(&frame.data);
        }
        let digest = Sha256::digest(&raw);
        raw.extend_from_slice(&digest);
        // Fast: pages of a log compress well at level 1, and shipping must keep up.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw)?;
        gz.finish()
    }

    /// Reads an encoded segment, checking its digest and every count against its length.
    pub fn decode(bytes: &[u8]) -> Result<Segment, String> {
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(|e| format!("not a gzip stream ({e})"))?;
        if raw.len() as u64 > MAX_BYTES {
            return Err(format!(
                "larger than the {MAX_BYTES} bytes a segment may hold"
            ));
        }
        let (content, digest) = raw
            .split_at_checked(raw.len().saturating_sub(32))
            .ok_or("too short")?;
        if digest.len() != 32 || Sha256::digest(content).as_slice() != digest {
            return Err("its SHA-256 does not match its content (damaged or truncated)".into());
        }
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], String> {
            let part = content
                .get(at..at + n)
                .ok_or("shorter than its counts say")?;
            at += n;
            Ok(part)
        };
        if take(8)? != MAGIC {
            return Err("it does not start with CAIRNSEG".into());
        }
        let u32_of = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let u64_of =
            |b: &[u8]| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let version = u32_of(take(4)?);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}; this server reads version {FORMAT_VERSION}"
            ));
        }
        let page_size = u32_of(take(4)?);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(format!("page size {page_size} is not one SQLite uses"));
        }
        let sequence = u64_of(take(8)?);
        let generation = u64_of(take(8)?);
        let first_frame = u32_of(take(4)?);
        let shipped_at = u64_of(take(8)?) as i64;
        let flags = u32_of(take(4)?);
        if flags & !1 != 0 {
            return Err(format!("unknown flags {flags:#x}"));
        }
        let frame_count = u32_of(take(4)?) as usize;
        let commit_count = u32_of(take(4)?) as usize;
        let frame_bytes = 8 + page_size as usize;
        let expected = commit_count
            .checked_mul(8)
            .and_then(|t| frame_count.checked_mul(frame_bytes).map(|f| (t, f)))
            .and_then(|(t, f)| t.checked_add(f))
            .ok_or("its counts overflow")?;
        if content.len() - HEADER_BYTES != expected {
            return Err("its length does not match its frame and commit counts".into());
        }
        let mut commit_times = Vec::with_capacity(commit_count);
        for _ in 0..commit_count {
            commit_times.push(u64_of(take(8)?) as i64);
        }
        let mut frames = Vec::with_capacity(frame_count);
        for _ in 0..frame_count {
            let page = u32_of(take(4)?);
            let commit_pages = u32_of(take(4)?);
            // SQLite's own limit on a database's pages is 2^32 - 2; a segment of ours never
            // names more than 2^31, so a crafted one cannot make a restore write terabytes.
            if page == 0 || page > 1 << 31 || commit_pages > 1 << 31 {
                return Err(format!("a frame names page {page} of {commit_pages}"));
            }
            frames.push(Frame {
                page,
                commit_pages,
                data: take(page_size as usize)?.to_vec(),
            });
        }
        if frames.iter().filter(|f| f.commit_pages != 0).count() != commit_count {
            return Err("its commit times do not match its commit frames".into());
        }
        Ok(Segment {
            sequence,
            page_size,
            generation,
            first_frame,
            shipped_at,
            complete: flags & 1 == 1,
            frames,
            commit_times,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment() -> Segment {
        Segment {
            sequence: 7,
            page_size: 512,
            generation: 0xdead_beef_0000_0001,
            first_frame: 3,
            shipped_at: 1_790_000_000_000_000,
            complete: true,
            frames: vec![
                Frame {
                    page: 2,
                    commit_pages: 0,
                    data: vec![1; 512],
                },
                Frame {
                    page: 1,
                    commit_pages: 4,
                    data: vec![2; 512],
                },
            ],
            commit_times: vec![1_789_999_999_999_000],
        }
    }

    #[test]
    fn a_segment_reads_back_as_written_and_damage_is_refused() {
        let written = segment();
        let bytes = written.encode().unwrap();
        assert_eq!(Segment::decode(&bytes).unwrap(), written);
        assert_eq!(Segment::name(7), "000000000007.seg");
        assert_eq!(Segment::sequence_of("000000000007.seg"), Some(7));
        assert_eq!(Segment::sequence_of("7.seg"), None);
        // Every byte of the content is covered by its digest.
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut raw)
            .unwrap();
        raw[60] ^= 1;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&raw).unwrap();
        let damaged = gz.finish().unwrap();
        assert!(Segment::decode(&damaged).unwrap_err().contains("SHA-256"));
        assert!(Segment::decode(&bytes[..bytes.len() / 2]).is_err());
        assert!(Segment::decode(b"not gzip").is_err());
    }
}
