//! One client connection, from the first byte to the last: the framing checks of
//! [`limits`](super::limits), refusing SSL and GSS encryption, the startup timeout, and the
//! message loop that hands each message to pgwire's dispatcher. Ours rather than pgwire's
//! `process_socket` so that every way a connection can go wrong ends in an ErrorResponse the
//! client can read (an oversized or malformed message, a startup in another protocol
//! version, a decoder that panics) instead of a silent close.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::ClientInfo;
use pgwire::api::{DefaultClient, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::{GssEncResponse, SslResponse, TransactionStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage};
use pgwire::tokio::server::{PgWireMessageServerCodec, process_error, process_message};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

use super::ConnectionHandlers;
use super::corked::{self, Corked};
use super::limits::{LimitError, LimitedStream, Limits};
use super::startup::fatal;
use super::tls::Transport;
use crate::sqlstate;

/// PostgreSQL's authentication_timeout: a client has this long to log in.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

type Socket<S> = Framed<Corked<LimitedStream<Transport>>, PgWireMessageServerCodec<S>>;

/// Serves one accepted socket until the client leaves or the connection fails.
pub(super) async fn serve(
    tcp: TcpStream,
    handlers: Arc<ConnectionHandlers>,
    limits: Limits,
) -> std::io::Result<()> {
    let logged_in = Arc::clone(&handlers.logged_in);
    let slots = handlers.slots.clone();
    let statements = handlers.statements.clone();
    let tls = handlers.tls.clone();
    let activity = &slots.activity;
    let peer = tcp.peer_addr()?;
    tcp.set_nodelay(true)?;
    // Connections that have not logged in yet are counted too: each holds a socket and
    // may wait up to the startup timeout.
    let waiting = Waiting::enter(&handlers.logging_in);
    let too_many = waiting.count > limits.logging_in;
    let stream = Corked::new(LimitedStream::new(
        Transport::Plain(tcp),
        limits,
        Arc::clone(&logged_in),
    ));
    let mut socket: Socket<_> = Framed::new(
        stream,
        PgWireMessageServerCodec::new(DefaultClient::new(peer, false)),
    );
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);

    // TLS is started when the client asks and [server.tls] is on (else refused, and the
    // client goes on in plain text or leaves); GSS encryption is refused.
    loop {
        let next = tokio::select! {
            () = &mut startup => return Ok(()),
            next = next_message(&mut socket) => next,
        };
        match next {
            Ok(Some(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresSsl(_),
            ))) => match &tls {
                _ if socket.get_ref().get_ref().get_ref().is_tls() => {
                    let twice = fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "SSL request inside TLS: the connection is encrypted already".into(),
                    );
                    return refuse(&mut socket, twice).await;
                }
                Some(tls) => {
                    if !socket.read_buffer().is_empty() {
                        // What came before the handshake was not encrypted (CVE-2021-23214).
                        let injected = fatal(
                            sqlstate::PROTOCOL_VIOLATION,
                            "received unencrypted data after SSL request".into(),
                        );
                        return refuse(&mut socket, injected).await;
                    }
                    socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Accept))
                        .await?;
                    let handshake = tokio::select! {
                        () = &mut startup => return Ok(()),
                        done = socket.get_mut().get_mut().get_mut().start_tls(tls) => done,
                    };
                    if let Err(e) = handshake {
                        tracing::info!(%peer, error = %e, "TLS handshake failed");
                        return Ok(());
                    }
                    socket.codec_mut().client_info.is_secure = true;
                }
                _ => {
                    socket
                        .send(PgWireBackendMessage::SslResponse(SslResponse::Refuse))
                        .await?;
                }
            },
            Ok(Some(PgWireFrontendMessage::SslNegotiation(
                SslNegotiationMetaMessage::PostgresGss(_),
            ))) => {
                socket
                    .send(PgWireBackendMessage::GssEncResponse(GssEncResponse::Refuse))
                    .await?;
            }
            Ok(Some(_)) => break,
            Ok(None) => return Ok(()),
            Err(e) => return refuse(&mut socket, e).await,
        }
    }
    socket.set_state(PgWireConnectionState::AwaitingStartup);
    let mut waiting = Some(waiting);
    // Answers go out when the client has sent everything it wants answered: one write for
    // a pipeline (Bind, Execute, Sync) rather than one per message.
    socket.get_mut().cork();

    let startup_handler = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let error_handler = handlers.error_handler();
    // The last message asked for its answers now (Sync, Flush, a simple Query), as
    // PostgreSQL writes at each ReadyForQuery and Flush even with more input waiting.
    let mut answer_now = false;
    // Held from a message's dispatch until its answers are written: shutdown waits for a
    // running statement's answer to reach its client, not only for the statement.
    let mut answering: Option<tokio_util::task::task_tracker::TaskTrackerToken> = None;
    loop {
        if std::mem::take(&mut answer_now) || !corked::holds_whole_message(socket.read_buffer()) {
            // pg_terminate_backend also ends a connection whose client stopped reading.
            let terminated = activity.get().map(|a| a.terminated.clone());
            socket.get_mut().uncork();
            let flushed = unless_terminated(&terminated, socket.flush()).await;
            socket.get_mut().cork();
            match flushed {
                Some(flushed) => flushed?,
                None => return refuse(&mut socket, terminated_by_admin()).await,
            }
            drop(answering.take());
        }
        let logging_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let next = if logging_in {
            tokio::select! {
                () = &mut startup => {
                    let timeout = fatal(sqlstate::PROTOCOL_VIOLATION, "canceling authentication due to timeout".into());
                    return refuse(&mut socket, timeout).await;
                }
                next = next_message(&mut socket) => next,
            }
        } else if let Some(activity) = activity.get() {
            // The selects below take a message already read before the termination (which
            // they would register for under its lock at each message): a client that keeps
            // a pipeline full is told here.
            if activity.terminated.is_cancelled() {
                return refuse(&mut socket, terminated_by_admin()).await;
            }
            // Between statements: pg_terminate_backend ends the connection, and so does
            // idling too long inside a transaction (which blocks other writers and pins the log).
            // The transaction status the client was last told: it also counts a transaction
            // whose portal is suspended mid-result.
            let in_transaction = !matches!(socket.transaction_status(), TransactionStatus::Idle);
            let idle_limit = activity
                .timeouts()
                .idle_in_transaction
                .filter(|_| in_transaction);
            let idle = async {
                match idle_limit {
                    Some(limit) => tokio::time::sleep(limit).await,
                    None => std::future::pending().await,
                }
            };
            // The message first: one already read (a pipeline's Describe, Execute, Sync) is
            // taken without registering for the termination, which costs a lock each time.
            tokio::select! {
                biased;
                next = next_message(&mut socket) => next,
                () = activity.terminated.cancelled() => {
                    return refuse(&mut socket, terminated_by_admin()).await;
                }
                () = idle => {
                    tracing::info!(session = activity.id, user = %activity.user, "idle in transaction too long: connection ended, transaction rolled back");
                    let ended = fatal(sqlstate::IDLE_IN_TRANSACTION_TIMEOUT, "terminating connection due to idle-in-transaction timeout".into());
                    return refuse(&mut socket, ended).await;
                }
            }
        } else {
            next_message(&mut socket).await
        };
        let message = match next {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(()),
            Err(e) => return refuse(&mut socket, e).await,
        };
        // Too many logging in: refused at their startup packet (a cancel request is always
        // served, as in PostgreSQL).
        if too_many && waiting.is_some() && matches!(message, PgWireFrontendMessage::Startup(_)) {
            let count = waiting.as_ref().map_or(0, |w| w.count);
            let refusal = fatal(
                sqlstate::TOO_MANY_CONNECTIONS,
                format!(
                    "sorry, too many clients already ({} connections are logging in)",
                    count - 1
                ),
            );
            return refuse(&mut socket, refusal).await;
        }
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if matches!(socket.state(), PgWireConnectionState::CopyInProgress(_))
            && !matches!(
                message,
                PgWireFrontendMessage::CopyData(_)
                    | PgWireFrontendMessage::CopyDone(_)
                    | PgWireFrontendMessage::CopyFail(_)
                    | PgWireFrontendMessage::Flush(_)
                    | PgWireFrontendMessage::Sync(_)
            )
        {
            // pgwire refuses anything else during COPY data and leaves COPY: so does the
            // session's thread, which would otherwise wait on for the data, holding the
            // session and its transaction's write lock.
            super::copy::abandon(&slots.copy_in);
        }
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        answer_now = matches!(
            message,
            PgWireFrontendMessage::Sync(_)
                | PgWireFrontendMessage::Flush(_)
                | PgWireFrontendMessage::Query(_)
        );
        let terminated = activity.get().map(|a| a.terminated.clone());
        answering.get_or_insert_with(|| statements.token());
        let _busy = activity.get().map(|a| Busy::new(Arc::clone(a)));
        let dispatch = std::panic::AssertUnwindSafe(process_message(
            message,
            &mut socket,
            startup_handler.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        ))
        .catch_unwind();
        // pg_terminate_backend also ends a connection whose client stopped reading while a
        // result was being written to it.
        let Some(dispatched) = unless_terminated(&terminated, dispatch).await else {
            return refuse(&mut socket, terminated_by_admin()).await;
        };
        // A handler that panicked on what the client sent ends only this connection, with
        // words the client can read.
        let handled = dispatched.unwrap_or_else(|_| {
            Err(fatal(
                sqlstate::PROTOCOL_VIOLATION,
                "invalid message: it could not be handled".into(),
            ))
        });
        if let Err(mut e) = handled {
            pgwire::api::ErrorHandler::on_error(&*error_handler, &socket, &mut e);
            let is_fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended).await?;
            if is_fatal {
                return Ok(());
            }
        }
        if is_cancel {
            return Ok(());
        }
        if logged_in.load(Ordering::Acquire) {
            // Logged in: counted by max_connections from now on.
            drop(waiting.take());
        }
    }
}

/// `work`'s outcome, or `None` if the session was terminated (pg_terminate_backend) first.
async fn unless_terminated<T>(
    terminated: &Option<tokio_util::sync::CancellationToken>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    // The work first: most of it finishes at its first poll, without the termination's
    // waiter being registered (and taken out again) under its lock.
    tokio::select! {
        biased;
        done = work => Some(done),
        () = async {
            match terminated {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        } => None,
    }
}

fn terminated_by_admin() -> PgWireError {
    fatal(
        sqlstate::ADMIN_SHUTDOWN,
        "terminating connection due to administrator command".into(),
    )
}

/// The next message, with decoding failures (including a decoder's panic) as errors.
async fn next_message<S>(
    socket: &mut Socket<S>,
) -> Result<Option<PgWireFrontendMessage>, PgWireError> {
    match std::panic::AssertUnwindSafe(socket.next()).catch_unwind().await {
        Ok(Some(Ok(message))) => {
            let unread = socket.read_buffer().len();
            match socket.get_mut().get_mut().check_consumed(unread) {
                Ok(()) => Ok(Some(message)),
                Err(e) => Err(fatal(e.sqlstate(), e.to_string())),
            }
        }
        Ok(None) => Ok(None),
        Ok(Some(Err(PgWireError::IoError(e)))) => match LimitError::of(&e) {
            Some(limit) => Err(fatal(limit.sqlstate(), limit.to_string())),
            // The client went away or the socket failed: nobody to tell.
            None => Err(PgWireError::IoError(e)),
        },
        Ok(Some(Err(PgWireError::InvalidStartupMessage))) => Err(fatal(
            sqlstate::FEATURE_NOT_SUPPORTED,
            "unsupported frontend protocol: Cairn speaks protocol 3.0 (PostgreSQL 7.4 and later); upgrade the client or its driver".into(),
        )),
        Ok(Some(Err(e))) => Err(fatal(sqlstate::PROTOCOL_VIOLATION, format!("invalid message: {e}"))),
        Err(_) => Err(fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "invalid message: it could not be decoded".into(),
        )),
    }
}

/// Marks the session busy while one of its client's messages is handled.
struct Busy(Arc<crate::session::registry::Activity>);

impl Busy {
    fn new(activity: Arc<crate::session::registry::Activity>) -> Busy {
        activity.set_busy(true);
        Busy(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.set_busy(false);
    }
}

/// A connection counted among those logging in, until dropped.
struct Waiting {
    counter: Arc<AtomicUsize>,
    /// How many were logging in, this one included, when it arrived.
    count: usize,
}

impl Waiting {
    fn enter(counter: &Arc<AtomicUsize>) -> Waiting {
        let count = counter.fetch_add(1, Ordering::AcqRel) + 1;
        Waiting {
            counter: Arc::clone(counter),
            count,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Tells the client why its connection ends, then ends it.
async fn refuse<S>(socket: &mut Socket<S>, error: PgWireError) -> std::io::Result<()> {
    if let PgWireError::IoError(e) = error {
        tracing::debug!(peer = %socket.socket_addr(), error = %e, "connection failed");
        return Ok(());
    }
    tracing::info!(peer = %socket.socket_addr(), error = %error, "connection refused");
    socket.get_mut().uncork();
    let info: ErrorInfo = error.into();
    // A client that does not read cannot keep the connection: the goodbye is bounded.
    let _ = tokio::time::timeout(GOODBYE_PATIENCE, async {
        let _ = socket
            .send(PgWireBackendMessage::ErrorResponse(info.into()))
            .await;
        let _ = socket.close().await;
    })
    .await;
    Ok(())
}

/// How long a refusal waits for the client to take its ErrorResponse.
const GOODBYE_PATIENCE: Duration = Duration::from_secs(1);
