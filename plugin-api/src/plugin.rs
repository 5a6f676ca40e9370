//! The trait a plugin implements, and what the server hands it.

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use crate::abi;
use crate::{Args, Column, Host, PluginError, Value};

/// A Cairn plugin. Implement it, then export it with [`export_plugin!`](crate::export_plugin).
///
/// The server makes one instance per load with [`Plugin::new`], then calls
/// [`start`](Plugin::start); the other methods are called as things happen, possibly at the
/// same time from several threads, until [`stop`](Plugin::stop). Every method runs on the
/// server's executor: await host services ([`Host::execute`], [`Host::sleep`]) rather than
/// blocking, and do not call `tokio::spawn` or tokio timers (this library's copy of tokio has
/// no runtime). A panic is caught; the server then marks the plugin failed.
#[async_trait]
pub trait Plugin: Send + Sync + Sized + 'static {
    /// Makes an instance from the operator's config. Refuse a bad config here, with a
    /// [`PluginError::Config`] naming the key: the server then keeps the previous instance
    /// (on reload) or reports the plugin failed (at start).
    fn new(config: PluginConfig) -> Result<Self, PluginError>;

    /// Checks what [`start`](Plugin::start) will need from the server (the directories it
    /// writes, its state directory, the databases it names) before anything is stopped. On
    /// a reload the previous instance is still running while this runs, and keeps running
    /// if it refuses: the operator sees the error as a refused config. Called once, right
    /// after [`new`](Plugin::new), with this instance's host. Use only the host's immediate
    /// services here ([`Host::databases`], [`Host::archive_directory`],
    /// [`Host::state_directory`]); register nothing (that is `start`'s job). The default
    /// checks nothing.
    fn prepare(&self, host: &Host) -> Result<(), PluginError> {
        let _ = host;
        Ok(())
    }

    /// Starts: register procedures, schedule jobs, subscribe to events.
    async fn start(&self, host: &Host) -> Result<(), PluginError> {
        let _ = host;
        Ok(())
    }

    /// Stops. The server has already unregistered the plugin's procedures and jobs.
    async fn stop(&self, host: &Host) -> Result<(), PluginError> {
        let _ = host;
        Ok(())
    }

    /// One committed transaction's row changes, of the databases and tables the plugin
    /// subscribed to ([`Host::subscribe_changes`], since ABI 1.8). Commits arrive one at a
    /// time, in each database's commit order, after they are durable; the next waits for
    /// this one to return, and a queue of them is kept meanwhile (bounded: commits dropped
    /// when it is full are counted in the next one's [`Commit::missed`]). Rolled-back
    /// transactions, and the rolled-back parts of committed ones, never arrive.
    async fn on_commit(&self, host: &Host, commit: Commit) -> Result<(), PluginError> {
        let _ = (host, commit);
        Ok(())
    }

    /// One statement a session ran, of those the plugin subscribed to
    /// ([`Host::subscribe_statements`], since ABI 1.10): after it ended, one at a time, in
    /// the order they ended, through a bounded queue (statements dropped when it is full are
    /// counted in the next one's [`Statement::missed`]). The plugin's own SQL is not
    /// delivered to it.
    async fn on_statement(&self, host: &Host, statement: Statement) -> Result<(), PluginError> {
        let _ = (host, statement);
        Ok(())
    }

    /// One event the plugin subscribed to ([`Host::subscribe`]). Events arrive one at a time,
    /// in order.
    async fn on_event(&self, host: &Host, event: Event) -> Result<(), PluginError> {
        let _ = (host, event);
        Ok(())
    }

    /// A call of one of the plugin's procedures ([`Host::register_procedure`]): returns its
    /// rows, each matching the procedure's declared columns.
    ///
    /// The future may be dropped at any await point: when the client cancels the `CALL`, its
    /// statement times out, or the client disconnects. Keep state consistent across awaits.
    async fn call(
        &self,
        host: &Host,
        procedure: &str,
        args: Args,
    ) -> Result<Vec<Vec<Value>>, PluginError> {
        let _ = (host, args);
        Err(PluginError::failed(format!(
            "procedure `{procedure}` is registered but not implemented"
        )))
    }

    /// One run of a scheduled job ([`Host::schedule`]). The server never starts a run of a job
    /// while its previous run is still going.
    async fn run_job(&self, host: &Host, job: &str) -> Result<(), PluginError> {
        let _ = host;
        Err(PluginError::failed(format!(
            "job `{job}` is scheduled but not implemented"
        )))
    }

    /// One call of one of the plugin's scalar SQL functions ([`Host::register_function`],
    /// since ABI 1.6): its value for `args`. Called on the statement's thread, once per row,
    /// from many threads at once: compute, do not block (no I/O, no waiting on the plugin's
    /// own tasks). An error fails the statement with the message, naming the plugin; a panic
    /// is an error too.
    fn call_function(&self, function: &str, args: &[Value]) -> Result<Value, PluginError> {
        let _ = args;
        Err(PluginError::failed(format!(
            "function `{function}` is registered but not implemented"
        )))
    }

    /// A new group of one of the plugin's aggregate SQL functions
    /// ([`Host::register_aggregate`], since ABI 1.6): the accumulator that sees the group's
    /// rows. The same rules as [`Plugin::call_function`]: compute, do not block.
    fn start_aggregate(&self, aggregate: &str) -> Result<Box<dyn Accumulator>, PluginError> {
        Err(PluginError::failed(format!(
            "aggregate `{aggregate}` is registered but not implemented"
        )))
    }

    /// A scan of one of the plugin's table functions ([`Host::register_table_function`],
    /// since ABI 1.7) for `args` (as many as the statement passed, at most as many as
    /// declared): its rows, each matching the declared columns, pulled as the statement
    /// steps, and dropped when it stops (a `LIMIT` may stop it early). Produce them lazily
    /// to keep memory bounded. The same rules as [`Plugin::call_function`]: compute, do not
    /// block, in `open_table` and in the iterator alike.
    fn open_table(&self, function: &str, args: &[Value]) -> Result<Rows, PluginError> {
        let _ = args;
        Err(PluginError::failed(format!(
            "table function `{function}` is registered but not implemented"
        )))
    }
}

/// The rows of one scan of a table function: each row's values, or an error that ends the
/// statement.
pub type Rows = Box<dyn Iterator<Item = Result<Vec<Value>, PluginError>> + Send>;

/// One group's state of an aggregate SQL function: every row's arguments, then its value.
/// Memory is the plugin's to bound: keep a summary, not the rows.
pub trait Accumulator: Send {
    /// Adds one row's arguments.
    fn step(&mut self, args: &[Value]) -> Result<(), PluginError>;
    /// The group's value (after zero or more steps).
    fn finish(self: Box<Self>) -> Result<Value, PluginError>;
    /// The current value, the state kept (a window function's, since ABI 1.9: registered
    /// with [`Function::window`]).
    fn value(&self) -> Result<Value, PluginError> {
        Err(PluginError::Unsupported(
            "this aggregate is not a window function".into(),
        ))
    }
    /// Takes back one row's arguments that [`Accumulator::step`] added, as the window's
    /// frame moves past the row (a window function's, since ABI 1.9).
    fn inverse(&mut self, args: &[Value]) -> Result<(), PluginError> {
        let _ = args;
        Err(PluginError::Unsupported(
            "this aggregate is not a window function".into(),
        ))
    }
}

/// The plugin's own config: the TOML table the operator wrote for it (`[plugins.<name>.config]`
/// or its `config_file`).
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    text: String,
}

impl PluginConfig {
    /// A config from TOML text.
    pub fn new(text: impl Into<String>) -> PluginConfig {
        PluginConfig { text: text.into() }
    }

    /// The TOML text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The config as a typed value; an error names the line and the key.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        toml::from_str(&self.text).map_err(|e| {
            let message = e.message().to_owned();
            PluginError::Config(match e.span() {
                Some(span) => format!("{}: {message}", self.place(span.start)),
                None => message,
            })
        })
    }

    /// "line L, column C, key `table.key`" of the byte `at` of the config text.
    fn place(&self, at: usize) -> String {
        let before = &self.text[..at.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        let this_line = self.text[line_start..].lines().next().unwrap_or("");
        // The key of a `key = value` line, under the nearest `[table]` above it.
        let key = this_line
            .split_once('=')
            .map(|(key, _)| key.trim().trim_matches('"').to_owned())
            .filter(|key| !key.is_empty() && !key.starts_with('['));
        let table = before[..line_start].lines().rev().find_map(|l| {
            let l = l.trim();
            (l.starts_with('[') && l.ends_with(']'))
                .then(|| l.trim_matches(['[', ']']).trim().to_owned())
        });
        match (table, key) {
            (Some(table), Some(key)) => {
                format!("line {line}, column {column}, key `{table}.{key}`")
            }
            (None, Some(key)) => format!("line {line}, column {column}, key `{key}`"),
            _ => format!("line {line}, column {column}"),
        }
    }
}

/// A server event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The database concerned, if any.
    pub database: Option<String>,
    /// Further detail (a backup id, a path, an error), if any.
    pub detail: Option<String>,
}

/// What a change did to its row (ABI 1.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChangeOp {
    /// Inserted.
    Insert,
    /// Updated in place (a new rowid is a delete and an insert).
    Update,
    /// Deleted.
    Delete,
}

impl ChangeOp {
    /// The op of an ABI constant, if this SDK knows it.
    pub fn from_abi(op: abi::CairnChangeOp) -> Option<ChangeOp> {
        match op {
            abi::CAIRN_CHANGE_INSERT => Some(ChangeOp::Insert),
            abi::CAIRN_CHANGE_UPDATE => Some(ChangeOp::Update),
            abi::CAIRN_CHANGE_DELETE => Some(ChangeOp::Delete),
            _ => None,
        }
    }

    /// `insert`, `update` or `delete`.
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One row a committed transaction changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The table.
    pub table: String,
    /// What happened to the row.
    pub op: ChangeOp,
    /// The row's rowid (before a delete, after an insert or update).
    pub rowid: i64,
}

/// One committed transaction of a database (ABI 1.8), as [`Plugin::on_commit`] gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The database.
    pub database: String,
    /// Its number among the database's commits since the server started (from 1), increasing
    /// in commit order; commits without subscribed changes are not delivered, so numbers
    /// skip.
    pub sequence: u64,
    /// The changes, in the order they were made.
    pub changes: Vec<Change>,
    /// Commits dropped just before this one because the plugin's queue was full, or not
    /// delivered across a reload (queued for the previous instance, or made before this one
    /// subscribed). A report of drops that no commit
    /// followed comes with no changes, an empty database and sequence 0.
    pub missed: u64,
    /// Changes of this commit left out because it changed more rows than one commit carries
    /// (they may be of tables the plugin does not follow), or at least 1 when the
    /// transaction was already open when the subscription began.
    pub truncated: u64,
}

/// One statement a session ran (ABI 1.10), as [`Plugin::on_statement`] gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The session's database.
    pub database: String,
    /// The session's user (`plugin:NAME` for a plugin's SQL).
    pub user: String,
    /// Its text as sent (never its parameters' values), at most 4096 bytes.
    pub text: String,
    /// The SQLSTATE of its error, if it failed.
    pub failed: Option<String>,
    /// When it started.
    pub started_at: std::time::SystemTime,
    /// How long it ran, its rows handed over and its commit durable.
    pub duration: std::time::Duration,
    /// The rows it returned or changed.
    pub rows: u64,
    /// Statements dropped just before this one because the plugin's queue was full. A report
    /// of drops with none after them has an empty text.
    pub missed: u64,
}

/// The kinds of server events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// All plugins have started and the server is serving.
    Startup,
    /// The server is shutting down.
    Shutdown,
    /// A database was created.
    DatabaseCreated,
    /// A database was dropped.
    DatabaseDropped,
    /// A backup started.
    BackupStarted,
    /// A backup finished.
    BackupFinished,
    /// A backup failed.
    BackupFailed,
    /// A plugin raised an alert ([`Host::alert`](crate::Host::alert); since ABI 1.2): the
    /// detail is `plugin: message`.
    Alert,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [EventKind; 8] = [
        EventKind::Startup,
        EventKind::Shutdown,
        EventKind::DatabaseCreated,
        EventKind::DatabaseDropped,
        EventKind::BackupStarted,
        EventKind::BackupFinished,
        EventKind::BackupFailed,
        EventKind::Alert,
    ];

    /// The ABI constant of this kind.
    pub fn to_abi(self) -> abi::CairnEventKind {
        match self {
            EventKind::Startup => abi::CAIRN_EVENT_STARTUP,
            EventKind::Shutdown => abi::CAIRN_EVENT_SHUTDOWN,
            EventKind::DatabaseCreated => abi::CAIRN_EVENT_DATABASE_CREATED,
            EventKind::DatabaseDropped => abi::CAIRN_EVENT_DATABASE_DROPPED,
            EventKind::BackupStarted => abi::CAIRN_EVENT_BACKUP_STARTED,
            EventKind::BackupFinished => abi::CAIRN_EVENT_BACKUP_FINISHED,
            EventKind::BackupFailed => abi::CAIRN_EVENT_BACKUP_FAILED,
            EventKind::Alert => abi::CAIRN_EVENT_ALERT,
        }
    }

    /// The kind of an ABI constant, if this SDK knows it.
    pub fn from_abi(kind: abi::CairnEventKind) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.to_abi() == kind)
    }

    /// The kind's name in logs and in `SHOW PLUGINS`.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Startup => "startup",
            EventKind::Shutdown => "shutdown",
            EventKind::DatabaseCreated => "database_created",
            EventKind::DatabaseDropped => "database_dropped",
            EventKind::BackupStarted => "backup_started",
            EventKind::BackupFinished => "backup_finished",
            EventKind::BackupFailed => "backup_failed",
            EventKind::Alert => "alert",
        }
    }
}

/// A scalar SQL function to register (since ABI 1.6): called as `name(args…)` from any
/// statement on any database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Its SQL name: an identifier, not one of SQLite's own functions.
    pub name: String,
    /// One line saying what it does.
    pub description: String,
    /// How many arguments it takes (0 to 127), or -1 for any number.
    pub arg_count: i32,
    /// Whether the same arguments always give the same result.
    pub deterministic: bool,
    /// An aggregate that is also a window function (its accumulators implement
    /// [`Accumulator::value`] and [`Accumulator::inverse`]; since ABI 1.9).
    pub window: bool,
}

impl Function {
    /// A function called `name` taking `arg_count` arguments (-1: any number).
    pub fn new(name: impl Into<String>, arg_count: i32) -> Function {
        Function {
            name: name.into(),
            description: String::new(),
            arg_count,
            deterministic: false,
            window: false,
        }
    }

    /// Declares an aggregate usable as a window function too (`name(x) OVER (ORDER BY t
    /// ROWS 2 PRECEDING)`, since ABI 1.9): its accumulators implement
    /// [`Accumulator::value`] and [`Accumulator::inverse`]. A host before 1.9 registers it
    /// as a plain aggregate.
    pub fn window(mut self) -> Function {
        self.window = true;
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Function {
        self.description = description.into();
        self
    }

    /// Declares that the same arguments always give the same result (SQLite may then
    /// evaluate a call on constants once). Plugin functions are for direct calls only: not in
    /// indexes, generated columns, CHECK constraints, triggers or views, which would outlive
    /// the plugin.
    pub fn deterministic(mut self) -> Function {
        self.deterministic = true;
        self
    }
}

/// A table function to register (since ABI 1.7): `SELECT * FROM name(args…)` from any
/// statement on any database, joins included (`SELECT … FROM t, name(t.x)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFunction {
    /// Its SQL name: an identifier, not one of SQLite's own table functions.
    pub name: String,
    /// One line saying what it does.
    pub description: String,
    /// Its arguments, in order: hidden columns of the table, which a query may also filter
    /// on. A call may leave out trailing ones.
    pub arguments: Vec<Column>,
    /// The columns of its rows (at least one).
    pub columns: Vec<Column>,
}

impl TableFunction {
    /// A table function called `name`, with no arguments or columns yet.
    pub fn new(name: impl Into<String>) -> TableFunction {
        TableFunction {
            name: name.into(),
            description: String::new(),
            arguments: Vec::new(),
            columns: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> TableFunction {
        self.description = description.into();
        self
    }

    /// Appends an argument.
    pub fn argument(mut self, name: impl Into<String>, ty: crate::ColumnType) -> TableFunction {
        self.arguments.push(Column::new(name, ty));
        self
    }

    /// Appends a result column.
    pub fn column(mut self, name: impl Into<String>, ty: crate::ColumnType) -> TableFunction {
        self.columns.push(Column::new(name, ty));
        self
    }
}

/// A procedure to register: its name and the columns of the rows it returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Procedure {
    /// Called as `CALL <plugin>.<name>(…)`.
    pub name: String,
    /// One line saying what it does.
    pub description: String,
    /// The columns of its rows.
    pub columns: Vec<Column>,
}

impl Procedure {
    /// A procedure called `name` that returns no columns yet.
    pub fn new(name: impl Into<String>) -> Procedure {
        Procedure {
            name: name.into(),
            description: String::new(),
            columns: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Procedure {
        self.description = description.into();
        self
    }

    /// Appends a result column.
    pub fn column(mut self, name: impl Into<String>, ty: crate::ColumnType) -> Procedure {
        self.columns.push(Column::new(name, ty));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Settings {
        schedule: String,
        retention: Retention,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Retention {
        keep_last: u32,
    }

    #[test]
    fn a_config_error_names_line_column_and_key() {
        let config = PluginConfig::new("schedule = \"@daily\"\n[retention]\nkeep_last = \"x\"\n");
        let message = config.parse::<Settings>().unwrap_err().to_string();
        assert!(
            message.contains("line 3, column 13, key `retention.keep_last`"),
            "{message}"
        );
        let config = PluginConfig::new("schedule = 5\n[retention]\nkeep_last = 1\n");
        let message = config.parse::<Settings>().unwrap_err().to_string();
        assert!(
            message.contains("line 1, column 12, key `schedule`"),
            "{message}"
        );
    }
}
