//! Message size limits, enforced on the bytes as they arrive: pgwire buffers a message whole
//! before decoding it, so without this a client that has not even logged in could announce a
//! 1 GB message and have the server allocate it.
//!
//! [`LimitedStream`] wraps the socket and follows the protocol's framing (the untyped startup
//! packets, then type byte + length), refusing a length over the limit of the connection's
//! phase before any of its body is buffered.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// PostgreSQL's limit for a startup packet (MAX_STARTUP_PACKET_LENGTH).
pub const STARTUP_PACKET_LIMIT: usize = 10_000;
/// Before login a client sends only its password exchange: a few hundred bytes.
pub const BEFORE_LOGIN_LIMIT: usize = 8 * 1024;
/// The default `[server] max_message_size`.
pub const DEFAULT_MESSAGE_LIMIT: usize = 64 << 20;

const SSL_REQUEST_CODE: u32 = 80_877_103;
const GSSENC_REQUEST_CODE: u32 = 80_877_104;

/// Why a message was refused before it was read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("message of {length} bytes refused: the limit is {limit} bytes {phase}{hint}")]
    TooLarge {
        length: usize,
        limit: usize,
        phase: &'static str,
        hint: &'static str,
    },
    #[error(
        "invalid message length {0}: a message length counts itself, so it is at least 4 (8 for a startup packet)"
    )]
    Malformed(i64),
    #[error("invalid message: its contents do not fill the length it announced")]
    LengthMismatch,
}

impl LimitError {
    /// The SQLSTATE the refusal is sent with.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            LimitError::TooLarge { .. } => crate::sqlstate::PROGRAM_LIMIT_EXCEEDED,
            LimitError::Malformed(_) | LimitError::LengthMismatch => {
                crate::sqlstate::PROTOCOL_VIOLATION
            }
        }
    }

    /// The refusal carried by an I/O error from [`LimitedStream`], if it is one.
    pub fn of(error: &io::Error) -> Option<&LimitError> {
        error.get_ref()?.downcast_ref::<LimitError>()
    }
}

/// The limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For messages after login (`[server] max_message_size`).
    pub after_login: usize,
    /// Connections that may be logging in at once (`max_connections` and the admins'
    /// reserve); more are refused with 53300 after their startup packet.
    pub logging_in: usize,
}

/// Where in the framing the next bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Startup packets: length (4) and code (4), no type byte.
    Startup,
    /// Type byte and length.
    Typed,
}

/// A socket whose incoming messages are checked against the limits as they arrive.
#[derive(Debug)]
pub struct LimitedStream<S> {
    inner: S,
    limits: Limits,
    logged_in: Arc<AtomicBool>,
    phase: Phase,
    header: [u8; 8],
    have: usize,
    /// Bytes of the current message's body still to pass through.
    remaining: usize,
    /// Bytes passed through so far.
    delivered: u64,
    /// Where each message whose header was read ends, as an offset in the stream.
    ends: std::collections::VecDeque<u64>,
    /// The end of the last message the decoder consumed.
    consumed_to: u64,
}

impl<S> LimitedStream<S> {
    /// `logged_in` is set once the client has authenticated; the larger limit applies then.
    pub fn new(inner: S, limits: Limits, logged_in: Arc<AtomicBool>) -> LimitedStream<S> {
        LimitedStream {
            inner,
            limits,
            logged_in,
            phase: Phase::Startup,
            header: [0; 8],
            have: 0,
            remaining: 0,
            delivered: 0,
            ends: std::collections::VecDeque::new(),
            consumed_to: 0,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// After the decoder took a message, with `unread` bytes left in its buffer: it must
    /// have consumed whole messages as their lengths announced them. pgwire's decoders read
    /// some bodies by their contents (up to a NUL, the first empty parameter name) rather
    /// than by their length; bytes they leave would otherwise be read as a next message
    /// whose length nobody checked.
    pub fn check_consumed(&mut self, unread: usize) -> Result<(), LimitError> {
        let consumed = self.delivered.saturating_sub(unread as u64);
        while let Some(&end) = self.ends.front() {
            if end > consumed {
                break;
            }
            self.consumed_to = end;
            self.ends.pop_front();
        }
        if consumed == self.consumed_to {
            Ok(())
        } else {
            Err(LimitError::LengthMismatch)
        }
    }

    /// Follows the framing over `data`; the first refusal ends the connection.
    fn scan(&mut self, mut data: &[u8]) -> Result<(), LimitError> {
        let start = self.delivered;
        let total = data.len() as u64;
        let mut offset = 0u64;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data = &data[n..];
                offset += n as u64;
                continue;
            }
            let need = match self.phase {
                Phase::Startup => 8,
                Phase::Typed => 5,
            };
            let n = (need - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data = &data[n..];
            offset += n as u64;
            if self.have < need {
                break;
            }
            self.have = 0;
            self.header_complete()?;
            self.ends.push_back(start + offset + self.remaining as u64);
        }
        self.delivered = start + total;
        Ok(())
    }

    fn header_complete(&mut self) -> Result<(), LimitError> {
        let word = |at: usize| {
            u32::from_be_bytes([
                self.header[at],
                self.header[at + 1],
                self.header[at + 2],
                self.header[at + 3],
            ])
        };
        match self.phase {
            Phase::Startup => {
                let length = word(0) as usize;
                if length < 8 {
                    return Err(LimitError::Malformed(i64::from(word(0) as i32)));
                }
                if length > STARTUP_PACKET_LIMIT {
                    return Err(LimitError::TooLarge {
                        length,
                        limit: STARTUP_PACKET_LIMIT,
                        phase: "for a startup packet",
                        hint: "",
                    });
                }
                self.remaining = length - 8;
                // After an SSL or GSS request the client sends another startup packet.
                if matches!(word(4), SSL_REQUEST_CODE | GSSENC_REQUEST_CODE) {
                    if length != 8 {
                        return Err(LimitError::Malformed(length as i64));
                    }
                } else {
                    self.phase = Phase::Typed;
                }
            }
            Phase::Typed => {
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as usize;
                if length < 4 {
                    return Err(LimitError::Malformed(length as i64));
                }
                let (limit, phase, hint) = if self.logged_in.load(Ordering::Acquire) {
                    (
                        self.limits.after_login,
                        "per message",
                        "; raise [server] max_message_size in the config for larger statements or values",
                    )
                } else {
                    (BEFORE_LOGIN_LIMIT, "before login", "")
                };
                if length > limit {
                    return Err(LimitError::TooLarge {
                        length,
                        limit,
                        phase,
                        hint,
                    });
                }
                self.remaining = length - 4;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for LimitedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let fresh = buf.filled()[before..].to_vec();
                match this.scan(&fresh) {
                    Ok(()) => Poll::Ready(Ok(())),
                    Err(e) => Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                }
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for LimitedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(logged_in: bool) -> LimitedStream<()> {
        LimitedStream::new(
            (),
            Limits {
                after_login: 1000,
                logging_in: 1,
            },
            Arc::new(AtomicBool::new(logged_in)),
        )
    }

    fn startup() -> Vec<u8> {
        let mut packet = 9u32.to_be_bytes().to_vec();
        packet.extend_from_slice(&196_608u32.to_be_bytes());
        packet.push(0);
        packet
    }

    fn typed(kind: u8, length: u32) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend_from_slice(&length.to_be_bytes());
        message
    }

    #[test]
    fn a_huge_message_before_login_is_refused_from_its_header() {
        let mut s = stream(false);
        let mut bytes = startup();
        bytes.extend(typed(b'p', 1 << 30));
        let err = s.scan(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                LimitError::TooLarge {
                    limit: BEFORE_LOGIN_LIMIT,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn headers_split_across_reads_and_ssl_requests_are_followed() {
        let mut s = stream(true);
        let mut bytes = 8u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&SSL_REQUEST_CODE.to_be_bytes());
        bytes.extend(startup());
        bytes.extend(typed(b'Q', 13));
        bytes.extend_from_slice(b"SELECT 1\0");
        bytes.extend(typed(b'Q', 1001));
        for (i, chunk) in bytes.chunks(3).enumerate() {
            let result = s.scan(chunk);
            if (i + 1) * 3 >= bytes.len() {
                assert!(matches!(
                    result,
                    Err(LimitError::TooLarge { limit: 1000, .. })
                ));
            } else {
                result.unwrap();
            }
        }
    }

    /// pgwire reads a Query up to its NUL: bytes after it, inside the announced length,
    /// would be decoded as a next message whose length was never checked.
    #[test]
    fn a_decoder_that_leaves_part_of_a_message_is_caught() {
        let mut s = stream(false);
        let mut bytes = startup();
        bytes.extend(typed(b'Q', 10));
        bytes.extend_from_slice(&[0, b'Q', 0x3f, 0xff, 0xff, 0xf0]);
        s.scan(&bytes).unwrap();
        // The decoder took the startup packet: fine.
        s.check_consumed(bytes.len() - 9).unwrap();
        // It then took the Query's type, length and one byte, leaving five.
        assert_eq!(s.check_consumed(5), Err(LimitError::LengthMismatch));
    }

    #[test]
    fn lengths_below_their_own_size_are_malformed() {
        let mut s = stream(false);
        assert_eq!(
            s.scan(&[0, 0, 0, 2, 0, 0, 0, 0]),
            Err(LimitError::Malformed(2))
        );
        let mut s = stream(true);
        let mut bytes = startup();
        bytes.extend(typed(b'Q', 3));
        assert_eq!(s.scan(&bytes), Err(LimitError::Malformed(3)));
    }
}
