//! Parallel deflate of one stream, the way pigz does it: the input is cut into chunks, each
//! chunk is compressed on its own thread (primed with the last 32 KiB of the chunk before it,
//! so the ratio matches a serial deflate), and every chunk but the last ends with a sync flush,
//! which byte-aligns it. The chunks, written in order, form one valid deflate stream.
//!
//! Memory is bounded: at most `2 × threads + 1` chunks are in flight, however large the input.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, FlushCompress, Status};

/// Deflate's window: the most a chunk can refer back into the chunk before it.
const WINDOW: usize = 32 * 1024;

/// How to compress.
#[derive(Debug, Clone, Copy)]
pub struct DeflateOptions {
    /// 0 stores the bytes unchanged; 1–9 as zlib.
    pub level: u32,
    /// The unit of reading, compressing and writing.
    pub chunk_size: usize,
    /// Compression threads.
    pub threads: usize,
}

/// What the pipeline read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub crc32: u32,
    pub size: u64,
}

struct Job {
    index: u64,
    data: Vec<u8>,
    dictionary: Vec<u8>,
    last: bool,
}

struct Done {
    index: u64,
    bytes: io::Result<Vec<u8>>,
}

/// Reads exactly `size` bytes of `input` (a file), or with `None` all of it (a generated
/// stream), shows each chunk to `inspect` in order (hashing, progress, cancellation: an
/// error from it stops everything), and hands the compressed stream to `sink` in order.
pub fn compress<R, I, S>(
    mut input: R,
    size: Option<u64>,
    options: DeflateOptions,
    mut inspect: I,
    mut sink: S,
) -> io::Result<Digest>
where
    R: Read + Send,
    I: FnMut(&[u8]) -> io::Result<()> + Send,
    S: FnMut(&[u8]) -> io::Result<()>,
{
    let threads = options.threads.max(1);
    let chunk_size = options.chunk_size.max(WINDOW);
    let in_flight = 2 * threads + 1;
    std::thread::scope(|scope| {
        let (token_tx, token_rx) = sync_channel::<()>(in_flight);
        for _ in 0..in_flight {
            let _ = token_tx.send(());
        }
        let (job_tx, job_rx) = sync_channel::<Job>(threads);
        let (done_tx, done_rx) = sync_channel::<Done>(in_flight);
        let job_rx = Arc::new(Mutex::new(job_rx));

        let reader = scope.spawn(move || -> io::Result<(Digest, u64)> {
            let mut crc = crc32fast::Hasher::new();
            let mut read: u64 = 0;
            let mut index = 0u64;
            let mut dictionary = Vec::new();
            loop {
                // Wait for room; an error means the consumer stopped.
                if token_rx.recv().is_err() {
                    return Err(io::Error::other("compression stopped"));
                }
                let (data, last) = match size {
                    Some(size) => {
                        let want = (size - read).min(chunk_size as u64) as usize;
                        let mut data = vec![0u8; want];
                        input.read_exact(&mut data).map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!(
                                    "reading byte {read} of {size}: {e} (did the file shrink?)"
                                ),
                            )
                        })?;
                        let last = read + want as u64 == size;
                        (data, last)
                    }
                    None => {
                        let mut data = Vec::with_capacity(chunk_size);
                        (&mut input)
                            .take(chunk_size as u64)
                            .read_to_end(&mut data)?;
                        // A short chunk is the end; a full one may be followed by an empty
                        // last chunk, which still ends the stream properly.
                        let last = data.len() < chunk_size;
                        (data, last)
                    }
                };
                inspect(&data)?;
                crc.update(&data);
                read += data.len() as u64;
                let next_dictionary = data[data.len().saturating_sub(WINDOW)..].to_vec();
                let job = Job {
                    index,
                    data,
                    dictionary: std::mem::replace(&mut dictionary, next_dictionary),
                    last,
                };
                if job_tx.send(job).is_err() {
                    return Err(io::Error::other("compression stopped"));
                }
                index += 1;
                if last {
                    let digest = Digest {
                        crc32: crc.finalize(),
                        size: read,
                    };
                    return Ok((digest, index));
                }
            }
        });

        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let level = options.level;
            scope.spawn(move || worker(level, &job_rx, &done_tx));
        }
        drop(done_tx);

        let written = write_in_order(&done_rx, &token_tx, &mut sink);
        // Unblock the reader and the workers whatever happened.
        drop(token_tx);
        drop(done_rx);
        let digest = reader
            .join()
            .map_err(|_| io::Error::other("the backup reader panicked"))?;
        match (written, digest) {
            (Err(e), _) => Err(e),
            (Ok(_), Err(e)) => Err(e),
            (Ok(chunks), Ok((digest, expected))) => {
                if chunks == expected {
                    Ok(digest)
                } else {
                    Err(io::Error::other("a compression worker stopped early"))
                }
            }
        }
    })
}

fn worker(level: u32, jobs: &Mutex<Receiver<Job>>, done: &SyncSender<Done>) {
    let mut compressor = (level > 0).then(|| Compress::new(Compression::new(level), false));
    loop {
        let job = {
            let guard = jobs.lock().unwrap_or_else(|p| p.into_inner());
            guard.recv()
        };
        let Ok(job) = job else { return };
        let bytes = match compressor.as_mut() {
            None => Ok(job.data),
            Some(c) => deflate_chunk(c, &job),
        };
        if done
            .send(Done {
                index: job.index,
                bytes,
            })
            .is_err()
        {
            return;
        }
    }
}

fn deflate_chunk(compressor: &mut Compress, job: &Job) -> io::Result<Vec<u8>> {
    compressor.reset();
    if !job.dictionary.is_empty() {
        compressor
            .set_dictionary(&job.dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if job.last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    let start = compressor.total_in();
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = (compressor.total_in() - start) as usize;
        let status = compressor
            .compress_vec(&job.data[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let consumed = (compressor.total_in() - start) as usize;
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            _ if !job.last && consumed == job.data.len() && room_left => return Ok(out),
            _ => {}
        }
    }
}

/// Writes finished chunks in index order; returns how many were written.
fn write_in_order<S: FnMut(&[u8]) -> io::Result<()>>(
    done: &Receiver<Done>,
    tokens: &SyncSender<()>,
    sink: &mut S,
) -> io::Result<u64> {
    let mut waiting = BTreeMap::new();
    let mut next = 0u64;
    while let Ok(chunk) = done.recv() {
        waiting.insert(chunk.index, chunk.bytes);
        while let Some(bytes) = waiting.remove(&next) {
            sink(&bytes?)?;
            next += 1;
            let _ = tokens.send(());
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| {
                b"the quick brown fox jumps over the lazy dog 0123456789"[i % 53] ^ (i / 4096) as u8
            })
            .collect()
    }

    fn roundtrip(data: &[u8], level: u32, chunk_size: usize, threads: usize) -> usize {
        let mut out = Vec::new();
        let digest = compress(
            data,
            Some(data.len() as u64),
            DeflateOptions {
                level,
                chunk_size,
                threads,
            },
            |_| Ok(()),
            |bytes| {
                out.extend_from_slice(bytes);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(digest.crc32, crc32fast::hash(data));
        assert_eq!(digest.size, data.len() as u64);
        let plain = if level == 0 {
            out.clone()
        } else {
            let mut plain = Vec::new();
            flate2::read::DeflateDecoder::new(&out[..])
                .read_to_end(&mut plain)
                .unwrap();
            plain
        };
        assert_eq!(plain, data);
        out.len()
    }

    #[test]
    fn chunks_join_into_one_valid_stream() {
        let data = sample(1_000_000);
        for level in [0, 1, 6, 9] {
            for threads in [1, 3] {
                roundtrip(&data, level, 64 * 1024, threads);
            }
        }
        roundtrip(&[], 6, 64 * 1024, 2);
        roundtrip(b"x", 6, 64 * 1024, 2);
    }

    #[test]
    fn a_stream_of_unknown_length_is_read_to_its_end() {
        for len in [0, 1, 64 * 1024, 64 * 1024 * 3, 1_000_000] {
            let data = sample(len);
            let mut out = Vec::new();
            let options = DeflateOptions {
                level: 6,
                chunk_size: 64 * 1024,
                threads: 2,
            };
            let digest = compress(
                &data[..],
                None,
                options,
                |_| Ok(()),
                |bytes| {
                    out.extend_from_slice(bytes);
                    Ok(())
                },
            )
            .unwrap();
            assert_eq!(digest.size, len as u64);
            assert_eq!(digest.crc32, crc32fast::hash(&data));
            let mut plain = Vec::new();
            flate2::read::DeflateDecoder::new(&out[..])
                .read_to_end(&mut plain)
                .unwrap();
            assert_eq!(plain, data, "length {len}");
        }
    }

    #[test]
    fn the_dictionary_keeps_the_ratio_of_a_serial_deflate() {
        let data = sample(2_000_000);
        let parallel = roundtrip(&data, 6, 64 * 1024, 2);
        let mut serial = flate2::write::DeflateEncoder::new(Vec::new(), Compression::new(6));
        std::io::Write::write_all(&mut serial, &data).unwrap();
        let serial = serial.finish().unwrap().len();
        assert!(
            parallel as f64 <= serial as f64 * 1.01,
            "parallel {parallel} vs serial {serial}"
        );
    }

    #[test]
    fn an_error_from_inspect_stops_the_pipeline() {
        let data = sample(1_000_000);
        let mut seen = 0;
        let result = compress(
            &data[..],
            Some(data.len() as u64),
            DeflateOptions {
                level: 6,
                chunk_size: 64 * 1024,
                threads: 2,
            },
            |_| {
                seen += 1;
                if seen == 3 {
                    Err(io::Error::other("aborted"))
                } else {
                    Ok(())
                }
            },
            |_| Ok(()),
        );
        assert_eq!(result.unwrap_err().to_string(), "aborted");
    }

    #[test]
    fn a_short_input_is_an_error() {
        let result = compress(
            &b"abc"[..],
            Some(10),
            DeflateOptions {
                level: 6,
                chunk_size: 64 * 1024,
                threads: 2,
            },
            |_| Ok(()),
            |_| Ok(()),
        );
        assert!(result.is_err());
    }
}
