//! A gzip file (RFC 1952) around the parallel deflate stream: a ten-byte header, the deflate
//! data, and a trailer with the CRC-32 and the length. `zcat`, `gzip -t` and flate2 read it.

use std::io::{Read, Write};

use crate::backup::deflate::{self, DeflateOptions};

/// Compresses all of `input` into `out` as one gzip member; returns the uncompressed length.
pub fn write<W: Write, R: Read + Send>(
    out: &mut W,
    input: R,
    options: DeflateOptions,
    mtime: u32,
) -> std::io::Result<u64> {
    // ID1 ID2, CM = deflate, no flags, MTIME, XFL, OS = Unix.
    let mut header = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    header[4..8].copy_from_slice(&mtime.to_le_bytes());
    out.write_all(&header)?;
    let digest = deflate::compress(
        input,
        None,
        options,
        |_| Ok(()),
        |bytes| out.write_all(bytes),
    )?;
    out.write_all(&digest.crc32.to_le_bytes())?;
    // ISIZE is the length modulo 2^32.
    out.write_all(&(digest.size as u32).to_le_bytes())?;
    Ok(digest.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flate2_reads_what_we_write() {
        let data: Vec<u8> = (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut out = Vec::new();
        let options = DeflateOptions {
            level: 6,
            chunk_size: 64 * 1024,
            threads: 2,
        };
        let size = write(&mut out, &data[..], options, 1_700_000_000).unwrap();
        assert_eq!(size, data.len() as u64);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&out[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, data);
    }
}
