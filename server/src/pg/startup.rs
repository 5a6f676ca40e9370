//! Login: SCRAM-SHA-256 against the configured users, then the database check. A client that
//! names a database that does not exist is refused before it is told the login succeeded, as
//! PostgreSQL does.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::ScramSecret;
use pgwire::api::auth::{
    AuthOutcome, AuthSource, LoginInfo, Password, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::{ClientInfo, METADATA_DATABASE, METADATA_USER, PidSecretKeyGenerator};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::ProtocolVersion;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::startup::Authentication;
use pgwire::messages::startup::{PasswordMessageFamily, SecretKey};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{Shared, Slots};
use crate::catalog::{CatalogError, DEFAULT_DATABASE};
use crate::credentials::UserDirectory;
use crate::session::Session;
use crate::session::registry::{Interruption, Registry};
use crate::sql::settings;
use crate::sqlstate;

/// Hands pgwire's SCRAM mechanism the verifier of the user logging in.
#[derive(Debug)]
pub(super) struct ScramSource(pub Arc<UserDirectory>);

#[async_trait]
impl AuthSource for ScramSource {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        // Only SCRAM is offered, and it asks for get_scram_secret.
        Err(PgWireError::InvalidPassword(
            login.user().unwrap_or_default().to_owned(),
        ))
    }

    async fn get_scram_secret(&self, login: &LoginInfo) -> PgWireResult<(ScramSecret, Option<()>)> {
        let user = login.user().unwrap_or_default();
        Ok((self.0.verifier_for(user).to_secret(), None))
    }
}

/// Why a session could not be opened after the password checked out.
enum SessionRefusal {
    Catalog(CatalogError),
    Sql(crate::sqlstate::SqlError),
}

/// Where the startup handler leaves the session id for [`SessionKeys`].
const SESSION_ID: &str = "cairn.session_id";

/// Cancel keys (BackendKeyData): the process id a client sees is its session's id, as
/// `SHOW SESSIONS`, `pg_backend_pid()` and `pg_cancel_backend` name it; the secret is random.
#[derive(Debug)]
pub(super) struct SessionKeys;

impl PidSecretKeyGenerator for SessionKeys {
    fn generate(&self, client: &dyn ClientInfo) -> (i32, SecretKey) {
        let id = client
            .metadata()
            .get(SESSION_ID)
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        let secret = match client.protocol_version() {
            ProtocolVersion::PROTOCOL3_0 => SecretKey::I32(rand::random::<i32>()),
            _ => {
                let bytes: [u8; 32] = rand::random();
                SecretKey::Bytes(bytes.to_vec().into())
            }
        };
        (id, secret)
    }
}

/// A CancelRequest interrupts the statement of the session whose key it carries.
#[derive(Debug)]
pub(super) struct CancelByKey(pub Arc<Registry>);

#[async_trait]
impl CancelHandler for CancelByKey {
    async fn on_cancel_request(&self, request: CancelRequest) {
        match self.0.get(request.pid) {
            Some(activity) if activity.has_secret(&request.secret_key.to_bytes()) => {
                tracing::info!(session = request.pid, "cancel request");
                activity.interrupt(Interruption::Cancel);
            }
            // PostgreSQL says nothing either way, so a key cannot be guessed by probing.
            _ => tracing::info!(
                session = request.pid,
                "cancel request with a wrong key ignored"
            ),
        }
    }
}

#[derive(Debug)]
pub(super) struct Startup {
    shared: Arc<Shared>,
    slots: Slots,
    logged_in: Arc<AtomicBool>,
    /// The client has sent its first password message.
    sasl_started: AtomicBool,
}

impl Startup {
    pub(super) fn new(shared: Arc<Shared>, slots: Slots, logged_in: Arc<AtomicBool>) -> Startup {
        Startup {
            shared,
            slots,
            logged_in,
            sasl_started: AtomicBool::new(false),
        }
    }

    /// After the password checked out: open the session, then tell the client it is in.
    async fn finish<C>(
        &self,
        client: &mut C,
        final_message: Option<Authentication>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let user = client
            .metadata()
            .get(METADATA_USER)
            .cloned()
            .unwrap_or_default();
        let database = client
            .metadata()
            .get(METADATA_DATABASE)
            .cloned()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
        let Some(role) = self.shared.users.role_of(&user) else {
            return Err(PgWireError::InvalidPassword(user));
        };
        // The user's timeouts (or the server's), then what the startup packet asks for.
        let mut timeouts = self
            .shared
            .user_timeouts
            .get(&user)
            .copied()
            .unwrap_or(self.shared.timeouts);
        let asked = settings::from_startup(
            client
                .metadata()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        for (setting, value) in asked {
            let value = settings::parse_duration(value).map_err(|m| {
                fatal(
                    sqlstate::INVALID_PARAMETER_VALUE,
                    format!("{}: {m}", setting.name()),
                )
            })?;
            timeouts.set(setting, value);
        }
        // The run-time parameters it gives (application_name, DateStyle, TimeZone…), which
        // SHOW and current_setting() tell back.
        let given: Vec<(String, String)> = client
            .metadata()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "user" | "database" | "options" | "replication"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let seat = self
            .shared
            .registry
            .admit(&user, role, &database, client.socket_addr(), timeouts)
            .map_err(|e| fatal(sqlstate::TOO_MANY_CONNECTIONS, e.to_string()))?;
        // A DROP USER between the password check and the seat ends the sessions it finds
        // in the registry, which this one was not in yet: it looks again, now it is.
        if self.shared.users.role_of(&user) != Some(role) {
            return Err(PgWireError::InvalidPassword(user));
        }
        let activity = Arc::clone(&seat.activity);
        let registry = Arc::clone(&self.shared.registry);
        let catalog = Arc::clone(&self.shared.catalog);
        let plugins = Arc::clone(&self.shared.plugins);
        let backups = Arc::clone(&self.shared.backups);
        let users = Arc::clone(&self.shared.users);
        let (user_c, database_c) = (user.clone(), database.clone());
        let opened = self
            .shared
            .runtime
            .spawn_blocking(move || {
                let mut session =
                    Session::open(catalog, plugins, backups, &user_c, role, &database_c)
                        .map_err(SessionRefusal::Catalog)?;
                session
                    .take_seat(registry, seat)
                    .map_err(SessionRefusal::Sql)?;
                session.manage_users(users);
                session.start_parameters(given.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                Ok(session)
            })
            .await
            .map_err(|e| {
                fatal(
                    sqlstate::INTERNAL_ERROR,
                    format!("opening the session failed: {e}"),
                )
            })?;
        let session = opened.map_err(|e| match e {
            SessionRefusal::Sql(e) => fatal(e.code, e.message),
            SessionRefusal::Catalog(CatalogError::NotFound(_) | CatalogError::InvalidName { .. }) => fatal(
                sqlstate::INVALID_CATALOG_NAME,
                format!(
                    "database \"{database}\" does not exist; connect to an existing one (for example dbname={DEFAULT_DATABASE}), SHOW DATABASES lists them"
                ),
            ),
            SessionRefusal::Catalog(other) => fatal(sqlstate::IO_ERROR, other.to_string()),
        })?;
        *self.slots.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        self.logged_in.store(true, Ordering::Release);
        let _ = self.slots.activity.set(Arc::clone(&activity));
        client
            .metadata_mut()
            .insert(SESSION_ID.into(), activity.id.to_string());
        tracing::debug!(%user, %database, role = role.name(), peer = %client.socket_addr(), "logged in");
        self.shared
            .auth_driver
            .complete_authentication(client, final_message)
            .await?;
        activity.set_secret(client.pid_and_secret_key().1.to_bytes().to_vec());
        Ok(())
    }
}

/// The first password message must be a SCRAM-SHA-256 (or, over TLS with binding, -PLUS)
/// SASLInitialResponse: a mechanism name, then the length of the client's first message and
/// that many bytes. pgwire's decoder assumes that shape (and panics on a cleartext
/// password); refuse anything else in words. The mechanism and the first message's channel
/// binding flag must agree (`p=` with -PLUS only), as PostgreSQL checks and pgwire does not.
fn check_initial_response(message: &PasswordMessageFamily, plus: bool) -> PgWireResult<()> {
    let PasswordMessageFamily::Raw(body) = message else {
        return Ok(());
    };
    let refuse = |what: &str| {
        Err(fatal(
            sqlstate::PROTOCOL_VIOLATION,
            format!(
                "{what}: Cairn logs clients in with SCRAM-SHA-256 only, never a cleartext or MD5 password; set the client's password method to scram-sha-256 (libpq and every current driver support it)"
            ),
        ))
    };
    let Some(end) = body.iter().position(|b| *b == 0) else {
        return refuse("invalid authentication message");
    };
    let mechanism = &body[..end];
    if mechanism == b"SCRAM-SHA-256-PLUS" && !plus {
        return Err(fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "SCRAM-SHA-256-PLUS needs TLS, with [server.tls] on: connect with sslmode=require, or without channel_binding=require".into(),
        ));
    }
    let offered = mechanism == b"SCRAM-SHA-256" || mechanism == b"SCRAM-SHA-256-PLUS";
    if !offered {
        return refuse(&format!(
            "authentication mechanism {:?} is not offered",
            String::from_utf8_lossy(&body[..end])
        ));
    }
    let rest = &body[end + 1..];
    let Some(length) = rest
        .get(..4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    else {
        return refuse("invalid authentication message");
    };
    if length < 0 || rest.len() - 4 < length as usize {
        return refuse("invalid authentication message");
    }
    let binds = rest[4..].starts_with(b"p=");
    if binds != (mechanism == b"SCRAM-SHA-256-PLUS") {
        return Err(fatal(
            sqlstate::PROTOCOL_VIOLATION,
            "invalid SCRAM message: the channel binding flag does not match the mechanism chosen (p= goes with SCRAM-SHA-256-PLUS only)".into(),
        ));
    }
    Ok(())
}

/// What a refused login is told, as the log says it: the message and its SQLSTATE, not
/// pgwire's debug rendering of the error.
fn refusal(e: &PgWireError) -> String {
    match e {
        PgWireError::UserError(info) => format!("{} ({})", info.message, info.code),
        other => other.to_string(),
    }
}

pub(super) fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".into(),
        code.into(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let outcome = match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.shared.stopping.is_cancelled() {
                    return Err(fatal(
                        sqlstate::ADMIN_SHUTDOWN,
                        "the server is shutting down".into(),
                    ));
                }
                let tls = self.shared.tls.as_ref();
                if tls.is_some_and(|t| t.required) && !client.is_secure() {
                    let user = client
                        .metadata()
                        .get(METADATA_USER)
                        .cloned()
                        .unwrap_or_default();
                    return Err(fatal(
                        sqlstate::INVALID_AUTHORIZATION_SPECIFICATION,
                        format!(
                            "connection of user \"{user}\" without encryption refused: this server takes TLS connections only ([server.tls] required = true); connect with sslmode=require or verify-full"
                        ),
                    ));
                }
                let mechanism = match &self.shared.scram_over_tls {
                    Some(scram) if client.is_secure() => scram.create(),
                    _ => self.shared.scram.create(),
                };
                self.shared
                    .auth_driver
                    .begin_authentication(client, mechanism)
                    .await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                let first = !self.sasl_started.swap(true, Ordering::AcqRel);
                let plus = client.is_secure() && self.shared.scram_over_tls.is_some();
                match first.then(|| check_initial_response(&message, plus)) {
                    Some(Err(refused)) => Err(refused),
                    _ => {
                        self.shared
                            .auth_driver
                            .advance_authentication(client, message)
                            .await
                    }
                }
            }
            // PostgreSQL's answer to anything else while a client logs in.
            _ => {
                return Err(fatal(
                    sqlstate::PROTOCOL_VIOLATION,
                    "expected a password message while logging in, got another kind of message"
                        .into(),
                ));
            }
        };
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(()),
            Ok(AuthOutcome::Authenticated { final_message, .. }) => {
                let (user, database, peer) = (
                    client
                        .metadata()
                        .get(METADATA_USER)
                        .cloned()
                        .unwrap_or_default(),
                    client
                        .metadata()
                        .get(METADATA_DATABASE)
                        .cloned()
                        .unwrap_or_default(),
                    client.socket_addr(),
                );
                let finished = self.finish(client, final_message).await;
                // The password was right, the session still refused (no such database, too
                // many connections, a bad startup option): said in the log as a failed login.
                if let Err(e) = &finished {
                    tracing::info!(%user, %database, %peer, error = %refusal(e), "login refused");
                }
                finished
            }
            Err(e) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                // pgwire's SCRAM failure does not carry the name; the log and the client do.
                let e = match e {
                    PgWireError::InvalidPassword(name) if name.is_empty() => {
                        PgWireError::InvalidPassword(user.clone())
                    }
                    other => other,
                };
                tracing::info!(%user, peer = %client.socket_addr(), error = %refusal(&e), "login refused");
                Err(e)
            }
        }
    }
}
