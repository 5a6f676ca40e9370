//! The PostgreSQL wire protocol (pgwire): authentication, the simple and the extended query
//! protocol. Each accepted socket gets its own [`ConnectionHandlers`], which owns that client's
//! [`Session`](crate::session::Session) once it has logged in.

mod connection;
mod encode;
pub mod limits;
mod query;
mod startup;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::{AuthDriver, DefaultServerParameterProvider, StartupHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ClientInfo, ErrorHandler, METADATA_USER, PgWireServerHandlers};
use pgwire::error::PgWireError;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backup::Backups;
use crate::catalog::Catalog;
use crate::credentials::UserDirectory;
use crate::plugin::Plugins;
use crate::session::Session;
use crate::session::registry::{Activity, Interruption, Registry};
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
    /// The timeouts from `[server]`; a user's own override them.
    pub timeouts: Timeouts,
    /// Statements running on blocking threads; shutdown waits for them.
    pub statements: TaskTracker,
    /// Cancelled when the server starts shutting down: new statements are refused.
    pub stopping: CancellationToken,
    auth_driver: AuthDriver<Arc<DefaultServerParameterProvider>>,
    scram: ScramAuth,
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
    ) -> Shared {
        let mut parameters = DefaultServerParameterProvider::default();
        // Clients read the leading number as PostgreSQL's major version to pick features.
        parameters.server_version = format!("15.0 (Cairn {})", env!("CARGO_PKG_VERSION"));
        parameters.is_superuser = false;
        let mut scram = ScramAuth::new(Arc::new(startup::ScramSource(Arc::clone(&users))));
        scram.set_iterations(crate::scram::DEFAULT_ITERATIONS);
        Shared {
            catalog,
            plugins,
            backups,
            users,
            registry,
            timeouts,
            statements: TaskTracker::new(),
            stopping: CancellationToken::new(),
            auth_driver: AuthDriver::new(Arc::new(parameters))
                .with_pid_secret_key_generator(Arc::new(startup::SessionKeys)),
            scram,
        }
    }

    /// Runs session work on a blocking thread (SQLite calls block, up to the busy timeout),
    /// tracked so that shutdown can wait for it.
    ///
    /// The statement timeout interrupts it; so does the client going away.
    async fn run<T: Send + 'static>(
        &self,
        session: &SessionSlot,
        activity: &ActivitySlot,
        work: impl FnOnce(&mut Session) -> Result<T, SqlError> + Send + 'static,
    ) -> Result<T, SqlError> {
        if self.stopping.is_cancelled() {
            return Err(SqlError::new(
                sqlstate::ADMIN_SHUTDOWN,
                "the server is shutting down; reconnect when it is back".into(),
            ));
        }
        let session = Arc::clone(session);
        let task = self.statements.spawn_blocking(move || {
            let mut guard = session.lock().unwrap_or_else(|p| p.into_inner());
            match guard.as_mut() {
                Some(session) => {
                    tracing::debug!(
                        database = session.database(),
                        user = session.user(),
                        "statement running"
                    );
                    work(session)
                }
                None => Err(SqlError::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "not logged in".into(),
                )),
            }
        });
        tokio::pin!(task);
        let activity = activity.get();
        let timeout = activity.and_then(|a| a.timeouts().statement);
        let finished = match (activity, timeout) {
            (Some(activity), Some(timeout)) => tokio::select! {
                finished = &mut task => finished,
                () = tokio::time::sleep(timeout) => {
                    activity.interrupt(Interruption::Timeout);
                    task.await
                }
            },
            _ => task.await,
        };
        finished.unwrap_or_else(|e| {
            Err(SqlError::new(
                sqlstate::INTERNAL_ERROR,
                format!("statement failed unexpectedly: {e}"),
            ))
        })
    }
}

/// The session of one connection, filled in when it has logged in.
pub type SessionSlot = Arc<Mutex<Option<Session>>>;

/// The same session as the registry sees it, reachable while a statement holds the session.
pub type ActivitySlot = Arc<OnceLock<Arc<Activity>>>;

/// The handlers of one client connection.
#[derive(Debug)]
pub struct ConnectionHandlers {
    startup: Arc<startup::Startup>,
    query: Arc<query::QueryHandler>,
    cancel: Arc<startup::CancelByKey>,
    /// Set once the client has logged in: its messages may then be larger.
    logged_in: Arc<AtomicBool>,
    activity: ActivitySlot,
}

impl ConnectionHandlers {
    pub fn new(shared: Arc<Shared>) -> ConnectionHandlers {
        let session: SessionSlot = Arc::default();
        let activity: ActivitySlot = Arc::default();
        let logged_in = Arc::new(AtomicBool::new(false));
        ConnectionHandlers {
            startup: Arc::new(startup::Startup::new(
                Arc::clone(&shared),
                Arc::clone(&session),
                Arc::clone(&logged_in),
                Arc::clone(&activity),
            )),
            cancel: Arc::new(startup::CancelByKey(Arc::clone(&shared.registry))),
            query: Arc::new(query::QueryHandler::new(
                shared,
                session,
                Arc::clone(&activity),
            )),
            logged_in,
            activity,
        }
    }

    /// Serves `socket` until the client leaves.
    pub async fn serve(
        self: Arc<Self>,
        socket: tokio::net::TcpStream,
        limits: limits::Limits,
    ) -> std::io::Result<()> {
        let logged_in = Arc::clone(&self.logged_in);
        let activity = Arc::clone(&self.activity);
        connection::serve(socket, self, limits, logged_in, activity).await
    }
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

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(NameTheUser)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// pgwire's SCRAM failure does not carry the user name; PostgreSQL's message does.
#[derive(Debug)]
struct NameTheUser;

impl ErrorHandler for NameTheUser {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(user) = error
            && user.is_empty()
        {
            user.clone_from(
                client
                    .metadata()
                    .get(METADATA_USER)
                    .unwrap_or(&String::new()),
            );
        }
    }
}
