//! What the server offers one plugin instance through its host table.

use super::functions::Kind as FunctionKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_plugin_api::abi;
use cairn_plugin_api::ffi::host::{
    BoxOutcome, ForeignAggregate, ForeignFunction, ForeignJob, ForeignProcedure,
    ForeignTableFunction, GaugeSample, HostServices,
};
use cairn_plugin_api::{Args, Column, ColumnType, PluginError, Reply, Value};
use tokio::runtime::Handle;

use super::registry::Plugins;
use crate::backup::jobs::{Checked, Kind};
use crate::backup::{BackupError, BackupOptions};
use crate::catalog::Catalog;
use crate::roles::Role;
use crate::session::{Executed, Session};
use crate::sql::server_statement::Literal;
use crate::sql::types::SqlType;

/// The host side of one plugin instance.
pub(super) struct PluginServices {
    pub(super) plugin: String,
    pub(super) generation: u64,
    pub(super) plugins: Weak<Plugins>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) backups: Arc<crate::backup::Backups>,
    pub(super) runtime: Handle,
    /// The server's own log, captured at start-up. A builtin plugin shares the server's copy
    /// of `tracing`, and its calls run under the SDK's forwarding dispatcher: logging under
    /// that one again would loop.
    pub(super) log_dispatch: tracing::Dispatch,
    /// Cleared when the instance is unloaded or fails: later calls are refused.
    pub(super) attached: AtomicBool,
    /// Bit `1 << kind` per subscribed event kind.
    pub(super) subscriptions: AtomicU64,
    /// `<data_dir>/plugin-state/<plugin>`, made on first request.
    pub(super) state_directory: PathBuf,
    /// `[plugins.NAME] role`: what its SQL and host calls may do.
    pub(super) role: Role,
}

impl std::fmt::Debug for PluginServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginServices")
            .field("plugin", &self.plugin)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl PluginServices {
    /// Refuses a backup, restore-drill or archive call to a plugin whose role may not back up.
    fn check_may_back_up(&self, what: &str) -> Result<(), PluginError> {
        self.check_attached()?;
        if self.role.may_back_up() {
            Ok(())
        } else {
            Err(PluginError::Refused(format!(
                "plugin {} has role {}, which may not {what}; give it role = \"backup\" (or \"admin\") in its [plugins.{}] table",
                self.plugin,
                self.role.name(),
                self.plugin
            )))
        }
    }

    fn check_attached(&self) -> Result<(), PluginError> {
        if self.attached.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(PluginError::Refused(format!(
                "plugin {} was unloaded or failed; its host services are gone",
                self.plugin
            )))
        }
    }

    fn registry(&self) -> Result<Arc<Plugins>, PluginError> {
        self.check_attached()?;
        self.plugins
            .upgrade()
            .ok_or_else(|| PluginError::Refused("the server is shutting down".into()))
    }

    /// Runs blocking work (SQLite, file I/O) on the runtime's blocking pool as a future.
    fn blocking(
        &self,
        what: &'static str,
        work: impl FnOnce() -> cairn_plugin_api::Outcome + Send + 'static,
    ) -> BoxOutcome {
        let task = self.runtime.spawn_blocking(work);
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Err(PluginError::failed(format!(
                    "{what} failed unexpectedly: {e}"
                )))
            })
        })
    }

    pub(super) fn detach(&self) {
        self.attached.store(false, Ordering::Release);
    }
}

impl HostServices for PluginServices {
    fn log(&self, level: abi::CairnLogLevel, target: &str, message: &str) {
        // A thread an unloaded instance left behind must not pass for the running one.
        let unloaded;
        let plugin = if self.attached.load(Ordering::Acquire) {
            self.plugin.as_str()
        } else {
            unloaded = format!("{} (unloaded instance)", self.plugin);
            unloaded.as_str()
        };
        tracing::dispatcher::with_default(&self.log_dispatch, || match level {
            abi::CAIRN_LOG_ERROR => {
                tracing::error!(plugin = %plugin, module = %target, "{message}")
            }
            abi::CAIRN_LOG_WARN => tracing::warn!(plugin = %plugin, module = %target, "{message}"),
            abi::CAIRN_LOG_INFO => tracing::info!(plugin = %plugin, module = %target, "{message}"),
            abi::CAIRN_LOG_DEBUG => {
                tracing::debug!(plugin = %plugin, module = %target, "{message}")
            }
            _ => tracing::trace!(plugin = %plugin, module = %target, "{message}"),
        });
    }

    fn list_databases(&self) -> Result<Vec<String>, PluginError> {
        self.check_attached()?;
        let list = self
            .catalog
            .list()
            .map_err(|e| PluginError::failed(e.to_string()))?;
        Ok(list.into_iter().map(|db| db.name).collect())
    }

    fn execute_sql(&self, database: String, sql: String, params: Vec<Value>) -> BoxOutcome {
        let plugins = match self.registry() {
            Ok(plugins) => plugins,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let catalog = Arc::clone(&self.catalog);
        let backups = Arc::clone(&self.backups);
        let user = format!("plugin:{}", self.plugin);
        let role = self.role;
        self.blocking("the statement", move || {
            let mut session = Session::open(catalog, plugins, backups, &user, role, &database)
                .map_err(|e| PluginError::failed(e.to_string()))?;
            let executed = if params.is_empty() {
                let mut results = session.execute_query(&sql);
                results
                    .pop()
                    .unwrap_or_else(|| Ok(Executed::empty()))
                    .map_err(|e| PluginError::failed(e.to_string()))?
            } else {
                let prepared = session
                    .prepare(&sql)
                    .map_err(|e| PluginError::failed(e.to_string()))?;
                let params: Vec<rusqlite::types::Value> =
                    params.into_iter().map(to_sqlite).collect();
                session
                    .execute_prepared(&prepared, &params)
                    .map_err(|e| PluginError::failed(e.to_string()))?
            };
            Ok(reply(executed))
        })
    }

    fn register_function(&self, function: ForeignFunction) -> Result<(), PluginError> {
        self.registry()?.register_sql_function(
            &self.plugin,
            self.generation,
            FunctionKind::Scalar(function),
        )
    }

    fn register_aggregate(&self, aggregate: ForeignAggregate) -> Result<(), PluginError> {
        self.registry()?.register_sql_function(
            &self.plugin,
            self.generation,
            FunctionKind::Aggregate(Arc::new(aggregate)),
        )
    }

    fn register_table_function(&self, function: ForeignTableFunction) -> Result<(), PluginError> {
        self.registry()?.register_sql_function(
            &self.plugin,
            self.generation,
            FunctionKind::Table(Arc::new(function)),
        )
    }

    fn subscribe_changes(
        &self,
        databases: Vec<String>,
        tables: Vec<String>,
    ) -> Result<(), PluginError> {
        self.registry()?
            .subscribe_changes(&self.plugin, self.generation, databases, tables)
    }

    fn subscribe_statements(&self, min_duration_micros: u64) -> Result<(), PluginError> {
        self.registry()?
            .subscribe_statements(&self.plugin, self.generation, min_duration_micros)
    }

    fn register_procedure(&self, procedure: ForeignProcedure) -> Result<(), PluginError> {
        self.registry()?
            .register_procedure(&self.plugin, self.generation, procedure)
    }

    fn subscribe(&self, mask: u64) -> Result<(), PluginError> {
        self.check_attached()?;
        self.subscriptions.store(mask, Ordering::Release);
        Ok(())
    }

    fn schedule(&self, job: ForeignJob) -> Result<(), PluginError> {
        self.registry()?
            .schedule(&self.plugin, self.generation, job)
    }

    fn sleep(&self, duration: Duration) -> BoxOutcome {
        // Made inside the runtime so that the timer belongs to it, whoever polls.
        let sleep = {
            let _entered = self.runtime.enter();
            tokio::time::sleep(duration)
        };
        Box::pin(async move {
            sleep.await;
            Ok(Reply::default())
        })
    }

    fn backup_database(&self, database: String, path: String, options: Args) -> BoxOutcome {
        let started = (|| {
            self.check_may_back_up("back up databases")?;
            if !options.positional.is_empty() {
                return Err(PluginError::InvalidArgument(
                    "backup options are named: format, compression_level, buffer_size, max_rate, into, incremental, parent"
                        .into(),
                ));
            }
            let mut written = options
                .named
                .into_iter()
                .map(|(name, value)| literal(&name, value).map(|value| (name, value)))
                .collect::<Result<Vec<_>, _>>()?;
            let kind = take_format(&mut written)?;
            let into = take_switch(&mut written, "into")?;
            let incremental = take_switch(&mut written, "incremental")?;
            let parent = take_text(&mut written, "parent")?;
            if ((incremental || parent.is_some()) && !into) || (into && kind == Kind::Export) {
                return Err(PluginError::InvalidArgument(
                    "incremental and parent go with into (path is then a collection: BACKUP DATABASE … INTO), and into with format 'zip'".into(),
                ));
            }
            let options = BackupOptions::from_written(&written).map_err(plugin_backup_error)?;
            let into = into.then_some(match parent {
                Some(parent) => Member::On(parent),
                None if incremental => Member::OnNewest,
                None => Member::Full,
            });
            Ok((kind, options, into))
        })();
        let (kind, options, into) = match started {
            Ok(started) => started,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let backups = Arc::clone(&self.backups);
        let by = format!("plugin:{}", self.plugin);
        // Starting may ask a destination whether the key is taken: a blocking call, so not on
        // the plugins' async workers.
        self.blocking("the backup", move || {
            let job = match into {
                Some(Member::On(parent)) => {
                    backups.start_increment_on(&database, &path, &parent, options, &by)
                }
                Some(member) => backups.start_into(
                    &database,
                    &path,
                    member == Member::OnNewest,
                    false,
                    options,
                    &by,
                ),
                None => backups.start_kind(kind, &database, &path, options, &by),
            }
            .map_err(plugin_backup_error)?;
            let (written, took) = job.finished().map_err(plugin_backup_error)?;
            Ok(Reply {
                columns: Some(vec![
                    Column::new("id", ColumnType::Integer),
                    Column::new("database", ColumnType::Text),
                    Column::new("path", ColumnType::Text),
                    Column::new("bytes", ColumnType::Integer),
                    Column::new("duration", ColumnType::Real),
                ]),
                rows: vec![vec![
                    Value::Integer(job.id),
                    Value::Text(job.database.clone()),
                    Value::Text(written.path().display().to_string()),
                    Value::Integer(written.bytes() as i64),
                    Value::Real(took.as_secs_f64()),
                ]],
                message: Some("BACKUP".into()),
            })
        })
    }

    fn verify_archive(&self, path: String) -> BoxOutcome {
        if let Err(e) = self.check_may_back_up("verify archives") {
            return Box::pin(std::future::ready(Err(e)));
        }
        let backups = Arc::clone(&self.backups);
        self.blocking("the verification", move || {
            match backups.verify(&path).map_err(plugin_backup_error)? {
                Checked::Export(read) => {
                    let h = read.header;
                    Ok(Reply {
                        columns: Some(vec![
                            Column::new("database", ColumnType::Text),
                            Column::new("created_at", ColumnType::Text),
                            Column::new("tables", ColumnType::Integer),
                            Column::new("rows", ColumnType::Integer),
                            Column::new("bytes", ColumnType::Integer),
                        ]),
                        rows: vec![vec![
                            Value::Text(h.database),
                            Value::Text(h.created_at),
                            Value::Integer(h.tables as i64),
                            Value::Integer(h.rows as i64),
                            Value::Integer(read.bytes as i64),
                        ]],
                        message: Some("VERIFY".into()),
                    })
                }
                Checked::Archive(verified) => {
                    let m = verified.manifest;
                    Ok(Reply {
                        columns: Some(vec![
                            Column::new("database", ColumnType::Text),
                            Column::new("created_at", ColumnType::Text),
                            Column::new("page_size", ColumnType::Integer),
                            Column::new("page_count", ColumnType::Integer),
                            Column::new("bytes", ColumnType::Integer),
                            Column::new("kind", ColumnType::Text),
                            Column::new("parent", ColumnType::Text),
                        ]),
                        rows: vec![vec![
                            Value::Text(m.database),
                            Value::Text(m.created_at),
                            Value::Integer(m.page_size as i64),
                            Value::Integer(m.page_count as i64),
                            Value::Integer(verified.database_bytes as i64),
                            Value::Text(m.kind),
                            m.parent.map_or(Value::Null, |p| Value::Text(p.name)),
                        ]],
                        message: Some("VERIFY".into()),
                    })
                }
            }
        })
    }

    fn drill_archive(&self, database: String, location: String) -> BoxOutcome {
        if let Err(e) = self.check_may_back_up("run restore drills") {
            return Box::pin(std::future::ready(Err(e)));
        }
        let backups = Arc::clone(&self.backups);
        let by = format!("plugin:{}", self.plugin);
        self.blocking("the drill", move || {
            let drilled = backups
                .drill(&database, &location, &by)
                .map_err(plugin_backup_error)?;
            let count = |n: u64| Value::Integer(i64::try_from(n).unwrap_or(i64::MAX));
            Ok(Reply {
                columns: Some(vec![
                    Column::new("database", ColumnType::Text),
                    Column::new("location", ColumnType::Text),
                    Column::new("created_at", ColumnType::Text),
                    Column::new("tables", ColumnType::Integer),
                    Column::new("rows", ColumnType::Integer),
                    Column::new("counted", ColumnType::Integer),
                ]),
                rows: vec![vec![
                    Value::Text(drilled.database),
                    Value::Text(location),
                    Value::Text(drilled.created_at),
                    count(drilled.tables),
                    count(drilled.rows),
                    Value::Integer(i64::from(drilled.counted)),
                ]],
                message: Some("DRILL".into()),
            })
        })
    }

    fn list_archives(&self, location: String) -> BoxOutcome {
        if let Err(e) = self.check_may_back_up("list archives") {
            return Box::pin(std::future::ready(Err(e)));
        }
        let backups = Arc::clone(&self.backups);
        self.blocking("listing archives", move || {
            let archives = backups
                .archives(&location, false)
                .map_err(plugin_backup_error)?;
            let text = |t: Option<String>| t.map_or(Value::Null, Value::Text);
            Ok(Reply {
                columns: Some(vec![
                    Column::new("location", ColumnType::Text),
                    Column::new("database", ColumnType::Text),
                    Column::new("kind", ColumnType::Text),
                    Column::new("created_at", ColumnType::Text),
                    Column::new("bytes", ColumnType::Integer),
                    Column::new("problem", ColumnType::Text),
                    Column::new("parent", ColumnType::Text),
                ]),
                // Archives only: a continuous archive's stream is not a file to keep or remove.
                rows: archives
                    .into_iter()
                    .filter(|a| a.kind.as_deref() != Some("continuous"))
                    .map(|a| {
                        vec![
                            Value::Text(a.location),
                            text(a.database),
                            text(a.kind),
                            text(a.created_at),
                            Value::Integer(a.bytes as i64),
                            text(a.problem),
                            text(a.parent),
                        ]
                    })
                    .collect(),
                message: Some("SHOW".into()),
            })
        })
    }

    fn delete_archive(&self, location: String) -> BoxOutcome {
        if let Err(e) = self.check_may_back_up("delete archives") {
            return Box::pin(std::future::ready(Err(e)));
        }
        let backups = Arc::clone(&self.backups);
        let by = format!("plugin:{}", self.plugin);
        self.blocking("deleting an archive", move || {
            let deleted = backups
                .delete_archive(&location, &by)
                .map_err(plugin_backup_error)?;
            Ok(Reply {
                columns: Some(vec![Column::new("deleted", ColumnType::Integer)]),
                rows: vec![vec![Value::Integer(i64::from(deleted))]],
                message: Some("DELETE".into()),
            })
        })
    }

    fn list_backups(&self, database: Option<String>, limit: u64) -> cairn_plugin_api::Outcome {
        self.check_may_back_up("read the backup history")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let records = self
            .backups
            .history()
            .recent(database.as_deref(), limit)
            .map_err(plugin_backup_error)?;
        let optional_int = |v: Option<i64>| v.map_or(Value::Null, Value::Integer);
        Ok(Reply {
            columns: Some(vec![
                Column::new("id", ColumnType::Integer),
                Column::new("database", ColumnType::Text),
                Column::new("kind", ColumnType::Text),
                Column::new("status", ColumnType::Text),
                Column::new("path", ColumnType::Text),
                Column::new("bytes", ColumnType::Integer),
                Column::new("backup_error", ColumnType::Text),
            ]),
            rows: records
                .into_iter()
                .map(|r| {
                    vec![
                        Value::Integer(r.id),
                        Value::Text(r.database),
                        Value::Text(r.kind),
                        Value::Text(r.status),
                        Value::Text(r.path),
                        optional_int(r.bytes),
                        r.backup_error.map_or(Value::Null, Value::Text),
                    ]
                })
                .collect(),
            message: None,
        })
    }

    fn state_directory(&self) -> Result<PathBuf, PluginError> {
        self.check_attached()?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.state_directory)
            .map_err(|e| {
                PluginError::failed(format!(
                    "cannot create the plugin state directory {}: {e}",
                    self.state_directory.display()
                ))
            })?;
        Ok(self.state_directory.clone())
    }

    fn archive_directory(&self, path: String) -> Result<PathBuf, PluginError> {
        self.check_may_back_up("make archive directories")?;
        if let Ok(crate::backup::destination::Location::Object { destination, .. }) =
            self.backups.destinations().resolve(&path)
        {
            return Err(PluginError::InvalidArgument(format!(
                "'{path}' is in destination \"{}\", not a directory; use it as a location (Host::backup, Host::list_archives) instead",
                destination.name()
            )));
        }
        self.backups
            .rules()
            .archive_directory(&path)
            .map_err(plugin_backup_error)
    }

    fn set_gauge(&self, sample: GaugeSample) -> Result<(), PluginError> {
        self.registry()?
            .gauges()
            .set(&self.plugin, self.generation, sample)
    }

    fn raise_alert(&self, database: Option<String>, message: String) -> Result<(), PluginError> {
        let plugins = self.registry()?;
        let database = database.unwrap_or_default();
        tracing::dispatcher::with_default(
            &self.log_dispatch,
            || tracing::error!(plugin = %self.plugin, database = %database, alert = true, "{message}"),
        );
        plugins.emit(
            cairn_plugin_api::EventKind::Alert,
            &database,
            &format!("{}: {message}", self.plugin),
        );
        Ok(())
    }
}

fn literal(name: &str, value: Value) -> Result<Literal, PluginError> {
    Ok(match value {
        Value::Null => Literal::Null,
        Value::Integer(i) => Literal::Integer(i),
        Value::Real(r) => Literal::Real(r),
        Value::Text(t) => Literal::Text(t),
        Value::Blob(_) => {
            return Err(PluginError::InvalidArgument(format!(
                "backup option {name} cannot be a blob"
            )));
        }
    })
}

/// Removes the `format` option: `'zip'` (the default) is a backup archive, `'export'` an
/// EXPORT DATABASE file.
fn take_format(written: &mut Vec<(String, Literal)>) -> Result<Kind, PluginError> {
    let Some(at) = written.iter().position(|(name, _)| name == "format") else {
        return Ok(Kind::Backup);
    };
    match written.remove(at).1 {
        Literal::Text(format) if format == "zip" => Ok(Kind::Backup),
        Literal::Text(format) if format == "export" => Ok(Kind::Export),
        other => Err(PluginError::InvalidArgument(format!(
            "format must be 'zip' (a backup archive) or 'export' (an EXPORT DATABASE file), got {other}"
        ))),
    }
}

/// What a backup into a collection builds on.
#[derive(Debug, PartialEq, Eq)]
enum Member {
    /// Nothing: a full archive.
    Full,
    /// The newest archive of the database in the collection.
    OnNewest,
    /// The archive of this file name in the collection.
    On(String),
}

/// A text option; absent is `None`.
fn take_text(
    written: &mut Vec<(String, Literal)>,
    name: &str,
) -> Result<Option<String>, PluginError> {
    let Some(at) = written.iter().position(|(n, _)| n == name) else {
        return Ok(None);
    };
    match written.remove(at).1 {
        Literal::Text(text) => Ok(Some(text)),
        other => Err(PluginError::InvalidArgument(format!(
            "{name} is a text, got {other}"
        ))),
    }
}

/// A yes/no option: 1 or 0, or the text `true` or `false`; absent is no.
fn take_switch(written: &mut Vec<(String, Literal)>, name: &str) -> Result<bool, PluginError> {
    let Some(at) = written.iter().position(|(n, _)| n == name) else {
        return Ok(false);
    };
    match written.remove(at).1 {
        Literal::Integer(1) => Ok(true),
        Literal::Integer(0) => Ok(false),
        Literal::Text(t) if t == "true" => Ok(true),
        Literal::Text(t) if t == "false" => Ok(false),
        other => Err(PluginError::InvalidArgument(format!(
            "{name} is 1 or 0 (or 'true' or 'false'), got {other}"
        ))),
    }
}

fn plugin_backup_error(e: BackupError) -> PluginError {
    match e {
        BackupError::InvalidOption(m) | BackupError::PathRefused(m) => {
            PluginError::InvalidArgument(m)
        }
        // A name the config does not know is the caller's mistake, not the store's state.
        e @ BackupError::UnknownDestination { .. } => PluginError::InvalidArgument(e.to_string()),
        // A caller that runs backups on a schedule tells "busy" from "broken" by this.
        e @ BackupError::AlreadyRunning { .. } => PluginError::Refused(e.to_string()),
        other => PluginError::failed(other.to_string()),
    }
}

pub(super) fn to_sqlite(value: Value) -> rusqlite::types::Value {
    match value {
        Value::Null => rusqlite::types::Value::Null,
        Value::Integer(i) => rusqlite::types::Value::Integer(i),
        Value::Real(r) => rusqlite::types::Value::Real(r),
        Value::Text(s) => rusqlite::types::Value::Text(s),
        Value::Blob(b) => rusqlite::types::Value::Blob(b),
    }
}

pub(super) fn from_sqlite(value: rusqlite::types::Value) -> Value {
    match value {
        rusqlite::types::Value::Null => Value::Null,
        rusqlite::types::Value::Integer(i) => Value::Integer(i),
        rusqlite::types::Value::Real(r) => Value::Real(r),
        rusqlite::types::Value::Text(s) => Value::Text(s),
        rusqlite::types::Value::Blob(b) => Value::Blob(b),
    }
}

fn reply(executed: Executed) -> Reply {
    let columns = executed.columns.map(|columns| {
        columns
            .into_iter()
            .map(|c| {
                let ty = match c.ty {
                    // A plugin sees SQLite's storage: a boolean is an integer 0 or 1.
                    SqlType::Int8 | SqlType::Bool => ColumnType::Integer,
                    SqlType::Float8 => ColumnType::Real,
                    SqlType::Text
                    | SqlType::TextArray
                    | SqlType::BoolArray
                    | SqlType::Int8Array
                    | SqlType::Float8Array
                    | SqlType::OidArray
                    | SqlType::Int2Vector
                    | SqlType::OidVector => ColumnType::Text,
                    SqlType::Bytea => ColumnType::Blob,
                };
                Column::new(c.name, ty)
            })
            .collect()
    });
    let message = match executed.tag.rows {
        Some(rows) if executed.tag.command == "INSERT" => format!("INSERT 0 {rows}"),
        Some(rows) => format!("{} {rows}", executed.tag.command),
        None => executed.tag.command.clone(),
    };
    Reply {
        columns,
        rows: executed
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(from_sqlite).collect())
            .collect(),
        message: Some(message),
    }
}
