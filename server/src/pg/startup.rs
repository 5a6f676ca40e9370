//! Login: SCRAM-SHA-256 against the configured users, then the database check. A client that
//! names a database that does not exist is refused before it is told the login succeeded, as
//! PostgreSQL does.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::sasl::scram::ScramSecret;
use pgwire::api::auth::{
    AuthOutcome, AuthSource, LoginInfo, Password, StartupHandler, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{ClientInfo, METADATA_DATABASE, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::{SessionSlot, Shared};
use crate::catalog::{CatalogError, DEFAULT_DATABASE};
use crate::credentials::UserDirectory;
use crate::session::Session;
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

#[derive(Debug)]
pub(super) struct Startup {
    shared: Arc<Shared>,
    session: SessionSlot,
}

impl Startup {
    pub(super) fn new(shared: Arc<Shared>, session: SessionSlot) -> Startup {
        Startup { shared, session }
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
        let Some(role) = self.shared.users.get(&user).map(|u| u.role) else {
            return Err(PgWireError::InvalidPassword(user));
        };
        let catalog = Arc::clone(&self.shared.catalog);
        let plugins = Arc::clone(&self.shared.plugins);
        let backups = Arc::clone(&self.shared.backups);
        let (user_c, database_c) = (user.clone(), database.clone());
        let opened = tokio::task::spawn_blocking(move || {
            Session::open(catalog, plugins, backups, &user_c, role, &database_c)
        })
        .await
        .map_err(|e| {
            fatal(
                sqlstate::INTERNAL_ERROR,
                format!("opening the session failed: {e}"),
            )
        })?;
        let session = opened.map_err(|e| match e {
            CatalogError::NotFound(_) | CatalogError::InvalidName { .. } => fatal(
                sqlstate::INVALID_CATALOG_NAME,
                format!(
                    "database \"{database}\" does not exist; connect to an existing one (for example dbname={DEFAULT_DATABASE}), SHOW DATABASES lists them"
                ),
            ),
            other => fatal(sqlstate::IO_ERROR, other.to_string()),
        })?;
        *self.session.lock().unwrap_or_else(|p| p.into_inner()) = Some(session);
        tracing::debug!(%user, %database, role = role.name(), peer = %client.socket_addr(), "logged in");
        self.shared
            .auth_driver
            .complete_authentication(client, final_message)
            .await
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
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
                let mechanism = self.shared.scram.create();
                self.shared
                    .auth_driver
                    .begin_authentication(client, mechanism)
                    .await
            }
            PgWireFrontendMessage::PasswordMessageFamily(message) => {
                self.shared
                    .auth_driver
                    .advance_authentication(client, message)
                    .await
            }
            _ => return Ok(()),
        };
        match outcome {
            Ok(AuthOutcome::InProgress) => Ok(()),
            Ok(AuthOutcome::Authenticated { final_message, .. }) => {
                self.finish(client, final_message).await
            }
            Err(e) => {
                let user = client
                    .metadata()
                    .get(METADATA_USER)
                    .cloned()
                    .unwrap_or_default();
                tracing::info!(%user, peer = %client.socket_addr(), error = %e, "login refused");
                Err(e)
            }
        }
    }
}
