//! Answers held back until the client waits for them. pgwire's handlers flush after each
//! message (ParseComplete, BindComplete, a command's completion, ReadyForQuery), which would
//! make one write, and wake the client once, per message; PostgreSQL writes a pipeline's
//! answers together when it is about to wait for input. [`Corked`] keeps what is written
//! while corked and writes it in one go when uncorked and flushed; the connection's loop
//! uncorks after a Sync, a Flush or a simple Query, and whenever no whole message of the
//! client is waiting to be read. A large result is still written as it is produced, in
//! pieces of [`HOLD_LIMIT`] bytes, so that a client that stops reading still stops the
//! statement.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held at most before they are written even while corked.
pub const HOLD_LIMIT: usize = 64 * 1024;

/// A writer that holds its output while corked.
#[derive(Debug)]
pub struct Corked<S> {
    inner: S,
    held: Vec<u8>,
    /// How much of `held` is already written.
    written: usize,
    corked: bool,
}

impl<S> Corked<S> {
    /// Starts uncorked: every write goes through.
    pub fn new(inner: S) -> Corked<S> {
        Corked {
            inner,
            held: Vec::new(),
            written: 0,
            corked: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// From now on writes are held (up to [`HOLD_LIMIT`]) and flushes keep them.
    pub fn cork(&mut self) {
        self.corked = true;
    }

    /// The next flush writes what is held.
    pub fn uncork(&mut self) {
        self.corked = false;
    }
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    /// Writes out everything held.
    fn poll_write_held(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.held.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.held[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.held.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // What would take the held bytes past the limit goes out first, and a large write
        // goes through as it is, not copied: what is held stays within the limit whatever
        // the size of one answer.
        let fits = this.held.len() + buf.len() <= HOLD_LIMIT;
        if !this.held.is_empty() && (!this.corked || !fits) {
            ready!(this.poll_write_held(cx))?;
        }
        if this.corked && buf.len() < HOLD_LIMIT {
            this.held.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        } else {
            Pin::new(&mut this.inner).poll_write(cx, buf)
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.corked {
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_write_held(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

/// Whether `unread` (the bytes read from the client and not yet decoded) begins with a whole
/// message of the logged-in protocol (a type byte, then a length that counts itself).
pub fn holds_whole_message(unread: &[u8]) -> bool {
    let Some(length) = unread.get(1..5) else {
        return false;
    };
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    unread.len() > length
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn corked_writes_wait_for_an_uncorked_flush() {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let mut corked = Corked::new(server);
        corked.cork();
        corked.write_all(b"one").await.unwrap();
        corked.flush().await.unwrap();
        corked.write_all(b"two").await.unwrap();
        let mut byte = [0u8; 1];
        let nothing = tokio::time::timeout(
            std::time::Duration::ZERO,
            tokio::io::AsyncReadExt::read(&mut client, &mut byte),
        )
        .await;
        assert!(nothing.is_err(), "a corked flush wrote its bytes");
        corked.uncork();
        corked.flush().await.unwrap();
        let mut got = [0u8; 6];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got, b"onetwo");
    }

    #[tokio::test]
    async fn a_corked_writer_writes_through_past_its_limit() {
        let (mut client, server) = tokio::io::duplex(4 * HOLD_LIMIT);
        let mut corked = Corked::new(server);
        corked.cork();
        let chunk = vec![7u8; 1024];
        for _ in 0..(2 * HOLD_LIMIT / chunk.len()) {
            corked.write_all(&chunk).await.unwrap();
        }
        // More than the limit was written: at least the limit reached the client, corked.
        let mut got = vec![0u8; HOLD_LIMIT];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert!(corked.held.len() <= HOLD_LIMIT);
    }

    /// A corked writer copied every write into what it held, so that one answer of a large
    /// value kept that much memory held by its connection for as long as it lived.
    #[tokio::test]
    async fn a_write_larger_than_the_limit_goes_through_without_being_held() {
        let (mut client, server) = tokio::io::duplex(8 * HOLD_LIMIT);
        let mut corked = Corked::new(server);
        corked.cork();
        corked.write_all(b"small").await.unwrap();
        let large = vec![7u8; 3 * HOLD_LIMIT];
        corked.write_all(&large).await.unwrap();
        assert!(corked.held.is_empty());
        assert!(
            corked.held.capacity() < 2 * HOLD_LIMIT,
            "{}",
            corked.held.capacity()
        );
        let mut got = vec![0u8; 5 + large.len()];
        tokio::io::AsyncReadExt::read_exact(&mut client, &mut got)
            .await
            .unwrap();
        assert_eq!(&got[..5], b"small", "the held bytes went first");
    }

    #[test]
    fn whole_messages_are_told_from_partial_ones() {
        let sync = [b'S', 0, 0, 0, 4];
        assert!(holds_whole_message(&sync));
        assert!(!holds_whole_message(&sync[..4]));
        assert!(!holds_whole_message(&[b'Q', 0, 0, 0, 9, b'S']));
        assert!(!holds_whole_message(&[]));
    }
}
