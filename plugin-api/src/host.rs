//! [`Host`]: what the server offers a plugin.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Weak;
use std::task::{Context, Poll};
use std::time::Duration;

use tracing::Dispatch;

use crate::ffi::ImportedFuture;
use crate::ffi::guest::{ErasedInstance, HostRef};
use crate::{EventKind, Outcome, PluginError, Procedure, Reply, Value};

/// The server, as a plugin sees it. Cheap to clone; valid for as long as the plugin is loaded.
#[derive(Clone)]
pub struct Host {
    raw: HostRef,
    instance: Weak<dyn ErasedInstance>,
    dispatch: Dispatch,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("abi_minor", &self.abi_minor())
            .finish_non_exhaustive()
    }
}

impl Host {
    pub(crate) fn new(
        raw: HostRef,
        instance: Weak<dyn ErasedInstance>,
        dispatch: Dispatch,
    ) -> Host {
        Host {
            raw,
            instance,
            dispatch,
        }
    }

    pub(crate) fn dispatch(&self) -> &Dispatch {
        &self.dispatch
    }

    /// The server's ABI minor version: a function added in a later minor returns
    /// [`PluginError::Unsupported`] on an older server.
    pub fn abi_minor(&self) -> u32 {
        self.raw.abi_minor()
    }

    /// The names of the server's databases.
    pub fn databases(&self) -> Result<Vec<String>, PluginError> {
        let reply = self.raw.list_databases()?;
        Ok(reply
            .rows
            .into_iter()
            .filter_map(|row| match row.into_iter().next() {
                Some(Value::Text(name)) => Some(name),
                _ => None,
            })
            .collect())
    }

    /// Runs SQL against `database` with the admin role: one or more statements, `$1`… bound
    /// to `params`. The reply holds the last statement's columns and rows, and its command tag
    /// as the message.
    pub fn execute(&self, database: &str, sql: &str, params: &[Value]) -> HostCall {
        HostCall(self.raw.execute_sql(database, sql, params))
    }

    /// Registers a procedure callable as `CALL <plugin>.<name>(…)`; calls reach
    /// [`Plugin::call`](crate::Plugin::call).
    pub fn register_procedure(&self, procedure: Procedure) -> Result<(), PluginError> {
        let instance = self.instance()?;
        self.raw.register_procedure(&procedure, instance)
    }

    /// Registers a scalar SQL function (since ABI 1.6) for every session's connection, those
    /// opened later included; calls reach
    /// [`Plugin::call_function`](crate::Plugin::call_function). It is removed when the
    /// plugin is unloaded or replaced: a statement that calls it then fails with an error
    /// naming it, never a call into the old instance. Refused for a name SQLite or another
    /// plugin already has.
    pub fn register_function(&self, function: crate::Function) -> Result<(), PluginError> {
        let instance = self.instance()?;
        self.raw.register_function(&function, instance)
    }

    /// Registers an aggregate SQL function (since ABI 1.6), as [`Host::register_function`]
    /// does a scalar one: each group's rows reach the
    /// [`Accumulator`](crate::Accumulator) that
    /// [`Plugin::start_aggregate`](crate::Plugin::start_aggregate) makes for it.
    pub fn register_aggregate(&self, aggregate: crate::Function) -> Result<(), PluginError> {
        let instance = self.instance()?;
        self.raw.register_aggregate(&aggregate, instance)
    }

    /// Registers a table function (since ABI 1.7), as [`Host::register_function`] does a
    /// scalar one: each scan (`SELECT * FROM name(args…)`) pulls the rows of the iterator
    /// [`Plugin::open_table`](crate::Plugin::open_table) returns for it.
    pub fn register_table_function(
        &self,
        function: crate::TableFunction,
    ) -> Result<(), PluginError> {
        let instance = self.instance()?;
        self.raw.register_table_function(&function, instance)
    }

    /// Delivers the row changes of committed transactions to
    /// [`Plugin::on_commit`](crate::Plugin::on_commit) (since ABI 1.8): of `databases`
    /// (empty: every database) and `tables` (empty: every table), replacing any earlier
    /// subscription.
    pub fn subscribe_changes(
        &self,
        databases: &[&str],
        tables: &[&str],
    ) -> Result<(), PluginError> {
        self.raw.subscribe_changes(databases, tables)
    }

    /// Delivers every statement of every session that ran for at least `min_duration`
    /// (zero: all of them) to [`Plugin::on_statement`](crate::Plugin::on_statement) (since
    /// ABI 1.10), except the plugin's own SQL; replaces any earlier subscription. `None`
    /// ends it.
    pub fn subscribe_statements(
        &self,
        min_duration: Option<std::time::Duration>,
    ) -> Result<(), PluginError> {
        let micros = match min_duration {
            Some(d) => u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX - 1)
                .min(u64::MAX - 1),
            None => u64::MAX,
        };
        self.raw.subscribe_statements(micros)
    }

    /// Delivers these events to [`Plugin::on_event`](crate::Plugin::on_event) (replacing any
    /// earlier subscription).
    pub fn subscribe(&self, events: &[EventKind]) -> Result<(), PluginError> {
        let mask = events.iter().fold(0u64, |m, k| m | (1u64 << k.to_abi()));
        self.raw.subscribe(mask)
    }

    /// Runs [`Plugin::run_job`](crate::Plugin::run_job) with `job` on a cron schedule in UTC:
    /// 5 fields (`*/5 * * * *`) or 6 with seconds first (`*/10 * * * * *`). A run never starts
    /// while the previous run of the same job is still going.
    pub fn schedule(&self, job: &str, cron: &str) -> Result<(), PluginError> {
        let instance = self.instance()?;
        self.raw.schedule(job, cron, instance)
    }

    /// Backs up `database` to the archive `path` (since ABI 1.1), exactly as `BACKUP
    /// DATABASE` does: a consistent snapshot, written under a temporary name and published
    /// only when complete, recorded in the backup history. A relative `path` resolves under
    /// the server's backup directory; an absolute one must lie under a directory the
    /// server's config allows. `options` are `compression_level` (0–9), `buffer_size`
    /// (`'1MiB'` or bytes), `max_rate`, and `format`: `'zip'` (the default, a backup
    /// archive) or `'export'` (an `EXPORT DATABASE` file, gzip JSON lines; level 1–9;
    /// since ABI 1.2); since ABI 1.4, `into` (`1`: `path` is a collection, as `BACKUP
    /// DATABASE … INTO`, and the archive is named by its time there) and `incremental` (`1`,
    /// with `into`: only the pages changed since the newest archive of the database there);
    /// and `key`, the name of a `[backup.keys.NAME]` of the server config: the archive's
    /// entries are encrypted with it (a server without encryption refuses the option as
    /// unknown, so the archive is never written in the clear by mistake).
    /// The reply has one row: `id`, `database`, `path` (absolute), `bytes` (file size),
    /// `duration` (seconds).
    pub fn backup(&self, database: &str, path: &str, options: &[(&str, Value)]) -> HostCall {
        HostCall(self.raw.backup_database(database, path, options))
    }

    /// Verifies the archive at `path` (since ABI 1.1; same path rules as [`Host::backup`]):
    /// every entry's CRC, the manifest's sizes and SHA-256 hashes, and SQLite's integrity
    /// check. The reply has one row: `database`, `created_at`, `page_size`, `page_count`,
    /// `bytes` (of the database); a damaged archive is an error naming the entry. An export
    /// (a gzip file, since ABI 1.2) is read through and every line checked; its row is
    /// `database`, `created_at`, `tables`, `rows`, `bytes` (of the file), and a damaged
    /// one is an error naming the line.
    pub fn verify_archive(&self, path: &str) -> HostCall {
        HostCall(self.raw.verify_archive(path))
    }

    /// A restore drill (since ABI 1.5) of the archive at `location` (what
    /// [`Host::list_archives`] lists), which must be of `database`: it is restored (an
    /// increment with its chain) into a scratch file outside the catalog, SQLite's
    /// `integrity_check` runs on it, every table's rows are counted and compared with the
    /// counts its manifest recorded at snapshot time, and the scratch file is removed. It is
    /// recorded in the backup history as kind `drill` (so the server's
    /// `cairn_backup_last_success_timestamp_seconds{kind="drill"}` says when the last good one
    /// ended). The reply has one row: `database`, `location`, `created_at`, `tables`, `rows`,
    /// `counted` (1 when the manifest recorded row counts to compare with). A failure is an
    /// error saying which table, entry or check.
    pub fn drill_archive(&self, database: &str, location: &str) -> HostCall {
        HostCall(self.raw.drill_archive(database, location))
    }

    /// Every archive and export at `location` (since ABI 1.3): a directory by the backup path
    /// rules (`""` for the backup directory), or `NAME:prefix` in a destination of the server
    /// config (`"offsite:auto"`), read from the files' own manifests, oldest first. Rows:
    /// `location` (what [`Host::backup`], [`Host::verify_archive`] and
    /// [`Host::delete_archive`] take), `database`, `kind` (`full` or `export`), `created_at`,
    /// `bytes`, `problem` (NULL when the file reads as an archive or export).
    pub fn list_archives(&self, location: &str) -> HostCall {
        HostCall(self.raw.list_archives(location))
    }

    /// Deletes the archive or export at `location` (since ABI 1.3; same rules as
    /// [`Host::list_archives`], and only `.zip` and `.json.gz` files). One row, `deleted`:
    /// 1, or 0 when there was nothing there.
    pub fn delete_archive(&self, location: &str) -> HostCall {
        HostCall(self.raw.delete_archive(location))
    }

    /// The newest `limit` rows of the backup history (since ABI 1.1), of `database` or of
    /// every database: `id`, `database`, `kind` (`backup`, `restore`, `export`, `import`), `status` (`running`, `paused`,
    /// `complete`, `failed`, `aborted`), `path`, `bytes`, `backup_error`.
    pub fn backups(&self, database: Option<&str>, limit: u64) -> Result<Reply, PluginError> {
        self.raw.list_backups(database.unwrap_or(""), limit)
    }

    /// A directory private to this plugin under the server's data directory (since ABI 1.2),
    /// created if missing and kept across restarts and reloads: the place for the plugin's
    /// own state files.
    pub fn state_directory(&self) -> Result<PathBuf, PluginError> {
        single_path(self.raw.state_directory()?)
    }

    /// The absolute directory `path` names under the server's backup path rules (since ABI
    /// 1.2), created if missing: relative paths resolve under the backup directory, absolute
    /// ones must lie under a directory the server's config allows. Use it to list and tidy the
    /// archives a plugin wrote with [`Host::backup`].
    pub fn archive_directory(&self, path: &str) -> Result<PathBuf, PluginError> {
        single_path(self.raw.archive_directory(path)?)
    }

    /// Logs `message` at error level and delivers an [`EventKind::Alert`] about `database`
    /// (if any) to every plugin subscribed to alerts (since ABI 1.2).
    pub fn alert(&self, database: Option<&str>, message: &str) -> Result<(), PluginError> {
        self.raw.raise_alert(database.unwrap_or(""), message)
    }

    /// Sets this plugin's gauge `name` for the label set `labels` to `value` (since ABI 1.4):
    /// the server serves it at `/metrics` as `cairn_plugin_<plugin>_<name>` with `help` as
    /// its description, until the plugin is unloaded or reloaded (a new instance sets its own).
    /// Names (of the gauge and of labels) are identifiers (`[a-z_][a-z0-9_]*`); `plugin` and
    /// names starting with `__` are not label names. Help texts and label values are at most
    /// 256 bytes, without control characters, quotes or backslashes; a series has at most 8
    /// labels (their order does not matter); a plugin may keep up to 1,000 series. A NaN
    /// `value` removes the series (as [`Host::remove_gauge`]).
    ///
    /// ```no_run
    /// # fn f(host: &cairn_plugin_api::Host) -> Result<(), cairn_plugin_api::PluginError> {
    /// host.set_gauge("queue_length", "Jobs waiting", &[("queue", "mail")], 3.0)?;
    /// # Ok(()) }
    /// ```
    pub fn set_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> Result<(), PluginError> {
        self.raw.set_gauge(name, help, labels, value)
    }

    /// Removes one series of this plugin's gauge `name` (since ABI 1.4).
    pub fn remove_gauge(&self, name: &str, labels: &[(&str, &str)]) -> Result<(), PluginError> {
        self.raw.set_gauge(name, "", labels, f64::NAN)
    }

    /// Completes after `duration`, on the server's timer.
    pub fn sleep(&self, duration: Duration) -> HostCall {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        HostCall(self.raw.sleep(millis))
    }

    /// Writes one line to the server's log at `level`, tagged with the plugin's name. Plugins
    /// normally use `tracing`'s macros, which end up here.
    pub fn log(&self, level: tracing::Level, message: &str) {
        self.raw
            .log(crate::logging::level_to_abi(level), "plugin", message);
    }

    fn instance(&self) -> Result<std::sync::Arc<dyn ErasedInstance>, PluginError> {
        self.instance
            .upgrade()
            .ok_or_else(|| PluginError::failed("the plugin instance is being destroyed"))
    }
}

/// The one text value of a one-row reply, as a path.
fn single_path(reply: Reply) -> Result<PathBuf, PluginError> {
    match reply
        .rows
        .into_iter()
        .next()
        .and_then(|row| row.into_iter().next())
    {
        Some(Value::Text(path)) => Ok(PathBuf::from(path)),
        _ => Err(PluginError::failed("the server answered without a path")),
    }
}

/// A host service in progress; await it.
#[derive(Debug)]
#[must_use = "a host call does nothing unless awaited"]
pub struct HostCall(Result<ImportedFuture, PluginError>);

impl Future for HostCall {
    type Output = Result<Reply, PluginError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        match &mut self.get_mut().0 {
            Ok(future) => Pin::new(future).poll(cx),
            Err(e) => Poll::Ready(Err(e.clone())),
        }
    }
}
