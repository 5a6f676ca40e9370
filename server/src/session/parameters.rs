//! A session's PostgreSQL run-time parameters (`pgcompat::parameters`) in SQL: `SET`,
//! `SHOW`, `RESET`, `SHOW ALL`, `DISCARD`, and the functions that read and write them or
//! tell who and where the session is — `current_setting()`, `set_config()`, `version()`,
//! `current_user`, `session_user`, `current_role`, `current_database()`,
//! `current_schema()`, `current_catalog` — defined on each session's connection.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::Value;

use super::{Column, Executed, Session};
use crate::pgcompat::parameters::{ParameterError, Parameters};
use crate::sql::server_statement::Discard;
use crate::sql::settings::{self, Setting};
use crate::sql::types::SqlType;
use crate::sqlstate::{self, SqlError};

/// The parameters, shared by the session and its connection's functions.
#[derive(Debug, Default)]
pub(super) struct Shared {
    parameters: Mutex<Parameters>,
    /// Something was set until the transaction ends: looked at after each statement
    /// without taking the lock.
    local: AtomicBool,
    /// The session's place among the server's, once it has one: its timeouts, which
    /// `current_setting('statement_timeout')` reads.
    pub(super) activity: std::sync::OnceLock<Arc<super::registry::Activity>>,
}

pub(super) fn lock(shared: &Shared) -> MutexGuard<'_, Parameters> {
    // Each change is one map operation: a panic cannot leave one half done.
    shared
        .parameters
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What `version()` says: PostgreSQL's form first, which drivers and ORMs parse.
pub(super) fn version() -> String {
    format!(
        "PostgreSQL 15.0 (Cairn {}) on SQLite {}",
        env!("CARGO_PKG_VERSION"),
        rusqlite::version()
    )
}

fn parameter_error(e: &ParameterError) -> SqlError {
    SqlError::new(e.sqlstate(), e.to_string())
}

fn text_column(name: &str) -> Column {
    Column {
        name: name.to_owned(),
        ty: SqlType::Text,
    }
}

/// The columns of `SHOW name` and `SHOW ALL`.
pub(super) fn show_columns(name: Option<&str>) -> Vec<Column> {
    match name {
        Some(name) => vec![text_column(&Parameters::display_name(name))],
        None => ["name", "setting", "description"]
            .into_iter()
            .map(text_column)
            .collect(),
    }
}

impl Session {
    /// The parameters its client's startup packet gave: what `RESET` goes back to.
    pub fn start_parameters<'a>(&mut self, given: impl IntoIterator<Item = (&'a str, &'a str)>) {
        *lock(&self.parameters) = Parameters::starting_with(given);
    }

    /// `SET [LOCAL] name = value` / `RESET name` of a run-time parameter; the timeouts
    /// Cairn honours go their own way (`SET LOCAL` of one sets it for the session).
    pub(super) fn set_parameter(
        &mut self,
        name: &str,
        value: Option<&str>,
        local: bool,
    ) -> Result<Executed, SqlError> {
        if let Some(setting) = Setting::named(name) {
            let statement = crate::sql::server_statement::ServerStatement::Set {
                setting,
                value: value.map(str::to_owned),
            };
            return self.run_server(&statement);
        }
        // As PostgreSQL: SET LOCAL outside a transaction block changes nothing.
        if local && self.conn.is_autocommit() {
            return Ok(Executed::command("SET", None));
        }
        let mut parameters = lock(&self.parameters);
        parameters
            .set(name, value, local)
            .map_err(|e| parameter_error(&e))?;
        let reported = parameters.reported_one(name).into_iter().collect();
        drop(parameters);
        if local {
            self.parameters.local.store(true, Ordering::Release);
        }
        Ok(Executed {
            reported,
            ..Executed::command("SET", None)
        })
    }

    /// `SHOW name`.
    pub(super) fn show_parameter(&self, name: &str) -> Result<Executed, SqlError> {
        let value = match Setting::named(name) {
            Some(setting) => Some(settings::show(self.timeouts().get(setting))),
            None => lock(&self.parameters)
                .get(name)
                .map_err(|e| parameter_error(&e))?,
        };
        let value = value.ok_or_else(|| {
            SqlError::new(
                sqlstate::UNDEFINED_OBJECT,
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })?;
        Ok(Executed::rows(
            "SHOW",
            Some(show_columns(Some(name))),
            vec![vec![Value::Text(value)]],
        ))
    }

    /// `SHOW ALL`: every parameter, the timeouts among them.
    pub(super) fn show_all(&self) -> Executed {
        let mut rows = lock(&self.parameters).all();
        let timeouts = self.timeouts();
        for setting in [
            Setting::StatementTimeout,
            Setting::LockTimeout,
            Setting::IdleInTransactionSessionTimeout,
        ] {
            rows.push([
                setting.name().to_owned(),
                settings::show(timeouts.get(setting)),
                "Honoured by Cairn (0 is no limit).".to_owned(),
            ]);
        }
        rows.sort_by_key(|r| r[0].to_ascii_lowercase());
        let rows = rows
            .into_iter()
            .map(|r| r.into_iter().map(Value::Text).collect())
            .collect();
        Executed::rows("SHOW", Some(show_columns(None)), rows)
    }

    /// `RESET ALL`'s part: the parameters back to the startup packet's and the defaults;
    /// the reported ones, to tell the client.
    pub(super) fn reset_parameters(&self) -> Vec<(String, String)> {
        let mut parameters = lock(&self.parameters);
        parameters.reset_all();
        parameters.reported()
    }

    /// After each statement: once no transaction is open, what `SET LOCAL` (or
    /// `set_config(…, true)`) set is gone.
    pub(super) fn parameters_after_statement(&self) {
        if self.parameters.local.load(Ordering::Acquire) && self.conn.is_autocommit() {
            self.parameters.local.store(false, Ordering::Release);
            lock(&self.parameters).transaction_ended();
        }
    }

    /// The timeouts in force.
    fn timeouts(&self) -> settings::Timeouts {
        self.activity().map_or(self.configured, |a| a.timeouts())
    }

    /// `DISCARD`: `ALL` is `RESET ALL`, the advisory locks let go, the temporary tables,
    /// views and triggers dropped (the session's catalogs too: it makes them again when a
    /// statement reads one); prepared statements are the protocol's: they stay until the
    /// client parses one of the same name again, or the connection ends.
    pub(super) fn discard(&mut self, what: Discard) -> Result<Executed, SqlError> {
        if what == Discard::All && !self.conn.is_autocommit() {
            return Err(SqlError::new(
                sqlstate::ACTIVE_SQL_TRANSACTION,
                "DISCARD ALL cannot run inside a transaction block".into(),
            ));
        }
        let mut reported = Vec::new();
        if what == Discard::All {
            reported = self
                .run_server(&crate::sql::server_statement::ServerStatement::ResetAll)?
                .reported;
            self.conn
                .query_row("SELECT pg_advisory_unlock_all()", [], |_| Ok(()))
                .map_err(|e| self.sql_error(e))?;
        }
        if matches!(what, Discard::All | Discard::Temp) {
            // The cursors' rows are temporary tables too.
            self.close_all_cursors();
            self.drop_temporary_tables()?;
        }
        let tag = match what {
            Discard::All => "DISCARD ALL",
            Discard::Plans => "DISCARD PLANS",
            Discard::Sequences => "DISCARD SEQUENCES",
            Discard::Temp => "DISCARD TEMP",
        };
        Ok(Executed {
            reported,
            ..Executed::command(tag, None)
        })
    }

    fn drop_temporary_tables(&mut self) -> Result<(), SqlError> {
        // Views first: a view may read a table; triggers on main's tables are temporary too.
        let objects: Vec<(String, String)> = {
            let mut stmt = self
                .conn
                .prepare(
                    "SELECT type, name FROM temp.sqlite_master WHERE type IN ('view', 'trigger', 'table') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY type = 'table'",
                )
                .map_err(|e| self.sql_error(e))?;
            let rows = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(|e| self.sql_error(e))?;
            rows.collect::<Result<_, _>>()
                .map_err(|e| self.sql_error(e))?
        };
        for (kind, name) in objects {
            let quoted = name.replace('"', "\"\"");
            let kind = match kind.as_str() {
                "view" => "VIEW",
                "trigger" => "TRIGGER",
                _ => "TABLE",
            };
            self.conn
                .execute_batch(&format!("DROP {kind} IF EXISTS temp.\"{quoted}\""))
                .map_err(|e| self.sql_error(e))?;
        }
        Ok(())
    }
}

/// Defines the parameter and identity functions on a session's connection.
pub(super) fn register(
    conn: &Connection,
    parameters: &Arc<Shared>,
    user: &str,
    database: &str,
) -> rusqlite::Result<()> {
    let constant = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    let fixed = [
        ("version", version()),
        ("current_user", user.to_owned()),
        ("session_user", user.to_owned()),
        ("current_role", user.to_owned()),
        ("current_database", database.to_owned()),
        ("current_catalog", database.to_owned()),
        ("current_schema", "public".to_owned()),
    ];
    for (name, value) in fixed {
        conn.create_scalar_function(name, 0, constant, move |_| Ok(value.clone()))?;
    }
    // Read at each call: another statement may have set the parameter meanwhile.
    let reading = FunctionFlags::SQLITE_UTF8;
    for arity in [1, 2] {
        let shared = Arc::clone(parameters);
        conn.create_scalar_function("current_setting", arity, reading, move |ctx| {
            let name: String = ctx.get(0)?;
            let missing_ok = arity == 2 && ctx.get::<Option<bool>>(1)?.unwrap_or(false);
            if let Some(setting) = Setting::named(&name) {
                let timeouts = shared
                    .activity
                    .get()
                    .map(|a| a.timeouts())
                    .unwrap_or_default();
                return Ok(Some(settings::show(timeouts.get(setting))));
            }
            match lock(&shared).get(&name) {
                Ok(Some(value)) => Ok(Some(value)),
                Ok(None) | Err(_) if missing_ok => Ok(None),
                Ok(None) => Err(user_error(format!(
                    "unrecognized configuration parameter \"{name}\""
                ))),
                Err(e) => Err(user_error(e.to_string())),
            }
        })?;
    }
    // Direct only: a view or trigger must not change the session's parameters.
    let shared = Arc::clone(parameters);
    conn.create_scalar_function(
        "set_config",
        3,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY,
        move |ctx| set_config(ctx, &shared),
    )?;
    Ok(())
}

fn set_config(ctx: &Context<'_>, shared: &Shared) -> rusqlite::Result<Option<String>> {
    let name: String = ctx.get(0)?;
    let value: Option<String> = ctx.get(1)?;
    let local: bool = ctx.get::<Option<bool>>(2)?.unwrap_or(false);
    if Setting::named(&name).is_some() {
        return Err(user_error(format!(
            "set_config cannot change {name}: use SET {name} = '…'"
        )));
    }
    let mut parameters = lock(shared);
    // A NULL value resets it, as in PostgreSQL.
    parameters
        .set(&name, value.as_deref(), local)
        .map_err(|e| user_error(e.to_string()))?;
    if local {
        shared.local.store(true, Ordering::Release);
    }
    parameters.get(&name).map_err(|e| user_error(e.to_string()))
}

fn user_error(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into())
}
