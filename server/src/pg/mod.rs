//! The PostgreSQL wire protocol (pgwire): authentication, the simple and the extended query
//! protocol. Each accepted socket gets its own [`ConnectionHandlers`], which owns that client's
//! [`Session`](crate::session::Session) once it has logged in.

mod array_values;
mod connection;
mod copy;
mod corked;
mod encode;
pub mod limits;
pub mod own_thread;
mod query;
mod startup;
mod stream;
pub mod tls;
mod typed_parameters;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use pgwire::api::PgWireServerHandlers;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{AuthDriver, DefaultServerParameterProvider, StartupHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backup::Backups;
use crate::catalog::Catalog;
use crate::credentials::UserDirectory;
use crate::plugin::Plugins;
use crate::session::registry::{Activity, Interruption, Registry};
use crate::session::{Brief, Session};
use crate::sql::settings::Timeouts;
use crate::sqlstate::{self, SqlError};

/// What every connection shares.
pub struct Shared {
    pub catalog: Arc<Catalog>,
    pub plugins: Arc<Plugins>,
    pub backups: Arc<Backups>,
    pub users: Arc<UserDirectory>,
    /// Every logged-in session.
    pub registry: Arc<Registry>,
    /// Connections accepted that have not logged in yet.
    pub logging_in: Arc<std::sync::atomic::AtomicUsize>,
    /// The timeouts from `[server]`; a user's own override them.
    pub timeouts: Timeouts,
    /// The timeouts of users that have their own, by user.
    pub user_timeouts: std::collections::HashMap<String, Timeouts>,
    /// Statements running on blocking threads; shutdown waits for them.
    pub statements: TaskTracker,
    /// The server's runtime. Statements and the opening of sessions run on it, not on the
    /// runtime of the connection's own thread, which ends with the connection (a statement's
    /// watcher runs there, beside the socket it polls).
    pub runtime: tokio::runtime::Handle,
    /// Cancelled when the server starts shutting down: new statements are refused.
    pub stopping: CancellationToken,
    auth_driver: AuthDriver<Arc<DefaultServerParameterProvider>>,
    scram: ScramAuth,
    /// `[server.tls]`, if on.
    tls: Option<Arc<tls::Tls>>,
    /// SCRAM for logins over TLS: bound to the certificate when a client asks
    /// (SCRAM-SHA-256-PLUS), which a plain connection has none of.
    scram_over_tls: Option<ScramAuth>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("catalog", &self.catalog)
            .finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        catalog: Arc<Catalog>,
        plugins: Arc<Plugins>,
        backups: Arc<Backups>,
        users: Arc<UserDirectory>,
        registry: Arc<Registry>,
        timeouts: Timeouts,
        user_timeouts: std::collections::HashMap<String, Timeouts>,
    ) -> Shared {
        let mut parameters = DefaultServerParameterProvider::default();
        // What the startup answer reports is what SHOW says before a SET.
        let default = |name| {
            crate::pgcompat::parameters::default_of(name)
                .unwrap_or_default()
                .to_owned()
        };
        parameters.server_version = crate::pgcompat::parameters::SERVER_VERSION.to_owned();
        parameters.time_zone = default("TimeZone");
        parameters.date_style = default("DateStyle");
        parameters.interval_style = default("IntervalStyle");
        parameters.search_path = default("search_path");
        parameters.is_superuser = false;
        let mut scram = ScramAuth::new(Arc::new(startup::ScramSource(Arc::clone(&users))));
        scram.set_iterations(crate::scram::DEFAULT_ITERATIONS);
        Shared {
            catalog,
            plugins,
            backups,
            users,
            registry,
            logging_in: Arc::default(),
            timeouts,
            user_timeouts,
            statements: TaskTracker::new(),
            runtime: tokio::runtime::Handle::current(),
            stopping: CancellationToken::new(),
            auth_driver: AuthDriver::new(Arc::new(parameters))
                .with_pid_secret_key_generator(Arc::new(startup::SessionKeys)),
            scram,
            tls: None,
            scram_over_tls: None,
        }
    }

    /// Clients may ask for TLS (and must, if `tls.required`); logins over it may bind SCRAM
    /// to the certificate when its signature allows (see `Tls::binds_scram`).
    pub fn with_tls(mut self, tls: tls::Tls) -> Shared {
        let mut scram = self.scram.clone();
        if tls.binds_scram && scram.configure_certificate(&tls.certificate_pem).is_ok() {
            self.scram_over_tls = Some(scram);
        }
        self.tls = Some(Arc::new(tls));
        self
    }

    /// Runs session work on a blocking thread (SQLite calls block, up to the busy timeout),
    /// tracked so that shutdown can wait for it, and waits for its answer.
    async fn run<T: Send + 'static>(
        &self,
        slots: &Slots,
        work: impl FnOnce(&mut Session) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        let task = self.start(slots, move |session, _| work(session))?;
        task.await.unwrap_or_else(|e| {
            Err(SqlError::new(
                sqlstate::INTERNAL_ERROR,
                format!("statement failed unexpectedly: {e}"),
            ))
        })
    }

    /// Runs a statement briefly on the connection's own thread (see
    /// [`Session::execute_prepared_briefly`]): no statement thread, no watcher, since it ends
    /// within [`BRIEF_RUN`] (or the statement timeout, if shorter) or is given up; a write
    /// that committed then waits on this thread for the sync of its log, as any commit waits. `None` when the
    /// session is busy (a suspended result's thread still holds it) or the server is
    /// shutting down: the caller then starts the statement the usual way.
    fn run_briefly(
        &self,
        slots: &Slots,
        work: impl FnOnce(&mut Session, CancellationToken, Duration) -> Brief,
    ) -> Option<Brief> {
        if self.stopping.is_cancelled() {
            return None;
        }
        if let Some(suspended) = slots.take_open_result() {
            suspended.close();
        }
        let mut guard = slots.session.try_lock().ok()?;
        let session = guard.as_mut()?;
        let stop = CancellationToken::new();
        let mut within = BRIEF_RUN;
        if let Some(activity) = slots.activity.get() {
            activity.set_statement(stop.clone());
            within = activity
                .timeouts()
                .statement
                .map_or(within, |t| t.min(within));
        }
        Some(work(session, stop, within))
    }

    /// Starts session work on a blocking thread and returns at once. Until the work ends,
    /// the statement timeout interrupts it, and so does the client going away. A result
    /// still suspended in a portal is closed first: its thread holds the session.
    ///
    /// `work` gets the token that stops the statement's delivery of rows: cancelled by a
    /// cancel request, the timeout, `pg_terminate_backend`, a Sync outside a transaction, or
    /// the next statement of this connection while the result is suspended in a portal.
    fn start<T: Send + 'static>(
        &self,
        slots: &Slots,
        work: impl FnOnce(&mut Session, CancellationToken) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<Result<T, SqlError>>, SqlError> {
        if self.stopping.is_cancelled() {
            return Err(SqlError::new(
                sqlstate::ADMIN_SHUTDOWN,
                "the server is shutting down; reconnect when it is back".into(),
            ));
        }
        if let Some(suspended) = slots.take_open_result() {
            suspended.close();
        }
        // Not shutdown's child: a running statement gets the shutdown grace to finish.
        let stop = CancellationToken::new();
        let done = CancellationToken::new();
        if let Some(activity) = slots.activity.get() {
            activity.set_statement(stop.clone());
            tokio::spawn(watch_statement(
                Arc::clone(activity),
                Arc::clone(&slots.peer),
                done.clone(),
            ));
        }
        let session = Arc::clone(&slots.session);
        Ok(self.statements.spawn_blocking_on(
            move || {
                let _done = done.drop_guard();
                let mut guard = session.lock().unwrap_or_else(|p| p.into_inner());
                match guard.as_mut() {
                    Some(session) => {
                        tracing::debug!(
                            database = session.database(),
                            user = session.user(),
                            "statement running"
                        );
                        work(session, stop)
                    }
                    None => Err(SqlError::new(
                        sqlstate::PROTOCOL_VIOLATION,
                        "not logged in".into(),
                    )),
                }
            },
            &self.runtime,
        ))
    }
}

/// How long a read-only query may run on the connection's own thread before it is given up
/// and run on a statement thread, whose rows stream: a point select takes a few
/// microseconds, and a query that runs longer than this may well make more rows than a
/// brief run holds.
const BRIEF_RUN: Duration = Duration::from_micros(500);

/// While a statement runs: interrupts it at its timeout, or when its client has gone.
async fn watch_statement(
    activity: Arc<Activity>,
    peer: Arc<OnceLock<tokio::net::TcpStream>>,
    done: CancellationToken,
) {
    let timeout = async {
        match activity.timeouts().statement {
            Some(limit) => tokio::time::sleep(limit).await,
            None => std::future::pending().await,
        }
    };
    let gone = async {
        match peer.get() {
            Some(peer) => client_gone(peer).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = done.cancelled() => {}
        () = timeout => activity.interrupt(Interruption::Timeout),
        () = gone => {
            tracing::info!(session = activity.id, "client went away; its statement is interrupted");
            activity.interrupt(Interruption::Cancel);
        }
    }
}

/// Returns once the client has closed its side of the connection. Data it already sent (a
/// pipelined next message) is left for the connection to read; it is looked at again a
/// second later.
async fn client_gone(peer: &tokio::net::TcpStream) {
    let mut byte = [0u8; 1];
    loop {
        match peer.peek(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_secs(1)).await,
        }
    }
}

/// The session of one connection, filled in when it has logged in.
pub type SessionSlot = Arc<Mutex<Option<Session>>>;

/// The same session as the registry sees it, reachable while a statement holds the session.
pub type ActivitySlot = Arc<OnceLock<Arc<Activity>>>;

/// What one connection's handlers share.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub session: SessionSlot,
    pub activity: ActivitySlot,
    /// A second handle on the client's socket, to notice that the client has gone.
    pub peer: Arc<OnceLock<tokio::net::TcpStream>>,
    /// The result suspended in a portal, whose thread holds the session until it is read
    /// to its end or closed.
    open_result: Arc<Mutex<Option<stream::OpenResult>>>,
    /// A simple query's answer paused at its `COPY … FROM STDIN` for the client's data.
    copy_in: copy::PausedSlot,
}

impl Slots {
    fn take_open_result(&self) -> Option<stream::OpenResult> {
        self.open_result
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    fn set_open_result(&self, open: stream::OpenResult) {
        *self.open_result.lock().unwrap_or_else(|p| p.into_inner()) = Some(open);
    }
}

/// The handlers of one client connection.
#[derive(Debug)]
pub struct ConnectionHandlers {
    startup: Arc<startup::Startup>,
    query: Arc<query::QueryHandler>,
    cancel: Arc<startup::CancelByKey>,
    /// Set once the client has logged in: its messages may then be larger.
    logged_in: Arc<AtomicBool>,
    slots: Slots,
    /// Connections of the server still logging in.
    logging_in: Arc<std::sync::atomic::AtomicUsize>,
    /// What shutdown waits for: each message's answer holds a token until it is written.
    statements: TaskTracker,
    /// `[server.tls]`, if on.
    tls: Option<Arc<tls::Tls>>,
}

impl ConnectionHandlers {
    pub fn new(shared: Arc<Shared>) -> ConnectionHandlers {
        let shared_logging_in = Arc::clone(&shared.logging_in);
        let slots = Slots::default();
        let logged_in = Arc::new(AtomicBool::new(false));
        ConnectionHandlers {
            startup: Arc::new(startup::Startup::new(
                Arc::clone(&shared),
                slots.clone(),
                Arc::clone(&logged_in),
            )),
            cancel: Arc::new(startup::CancelByKey(Arc::clone(&shared.registry))),
            statements: shared.statements.clone(),
            tls: shared.tls.clone(),
            query: Arc::new(query::QueryHandler::new(shared, slots.clone())),
            logged_in,
            slots,
            logging_in: Arc::clone(&shared_logging_in),
        }
    }

    /// Serves `socket` until the client leaves.
    pub async fn serve(
        self: Arc<Self>,
        socket: tokio::net::TcpStream,
        limits: limits::Limits,
    ) -> std::io::Result<()> {
        if let Ok(peer) = watch_handle(&socket) {
            let _ = self.slots.peer.set(peer);
        }
        connection::serve(socket, self, limits).await
    }
}

/// A second handle on the same socket (a duplicated descriptor), for [`client_gone`].
fn watch_handle(socket: &tokio::net::TcpStream) -> std::io::Result<tokio::net::TcpStream> {
    use std::os::fd::AsFd;
    let fd = socket.as_fd().try_clone_to_owned()?;
    let std_socket = std::net::TcpStream::from(fd);
    std_socket.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_socket)
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.query)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.query)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }

    fn copy_handler(&self) -> Arc<impl pgwire::api::copy::CopyHandler> {
        Arc::clone(&self.query)
    }
}
