//! Every client connection is served on a thread of its own, by a single-threaded runtime
//! that owns only that connection's socket, as PostgreSQL serves each one from a process of
//! its own. Measured on two cores (BENCHMARKS.md): with every connection's task on a shared
//! pool of workers, a worker that answered one client went on to another's task instead of
//! sleeping, so the kernel's wake-up of the client (placed on the answering core, expecting
//! it to sleep) preempted it or crossed cores, and point selects at 4 clients ran at half
//! the rate. A connection's thread sleeps in its own poll between messages, as a backend does.
//!
//! Statements that run on threads of their own, and the opening of sessions, still go to the
//! server's runtime ([`super::Shared::runtime`]); the connection's runtime ends with it.
//! A thread costs its stack and the runtime's poller and waker descriptors. Connections
//! that have not logged in are bounded as before (`pg::limits`): one over the limit is
//! refused as soon as its thread starts, so at most `max_connections` plus the logging-in
//! limit hold a thread for long.

use std::future::Future;
use std::net::SocketAddr;

/// The name of every connection's thread, as `top -H` and `ps -L` show it.
const THREAD_NAME: &str = "cairn-client";

/// Serves `socket` on a new thread: `serve` is given the socket registered with that
/// thread's runtime, and the thread ends when the future it returns does. Fails, closing the
/// socket, when the thread cannot be started (a limit on threads) or the socket cannot be
/// handed over.
pub fn spawn<Serve, Served>(
    socket: tokio::net::TcpStream,
    peer: SocketAddr,
    serve: Serve,
) -> std::io::Result<()>
where
    Serve: FnOnce(tokio::net::TcpStream) -> Served + Send + 'static,
    Served: Future<Output = ()>,
{
    // Taken off the accepting runtime's poller here, registered with the thread's there.
    let socket = socket.into_std()?;
    std::thread::Builder::new()
        .name(THREAD_NAME.into())
        .spawn(move || {
            // Its socket and its timers; no signal handling (one descriptor fewer).
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "the connection's runtime could not be started (out of file descriptors?); it is closed");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpStream::from_std(socket) {
                    Ok(socket) => serve(socket).await,
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "the connection could not be registered with its thread's poller; it is closed");
                    }
                }
            });
        })?;
    Ok(())
}
