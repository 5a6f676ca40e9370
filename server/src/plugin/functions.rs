//! Scalar and aggregate SQL functions (ABI 1.6) and table functions (1.7, in
//! `table_functions`) plugins register, for every session's connection.
//!
//! SQLite resolves a function (and a virtual table's module) by name when a statement is
//! prepared, on each connection, so each session brings its connection up to date with the
//! registry before it runs a statement: one atomic load when nothing changed. The function SQLite calls only looks the
//! plugin's function up by name: one unloaded (or replaced) meanwhile is an error naming it,
//! never a call into an instance that is gone, and a call that is running keeps the function
//! (and the plugin's context) alive until it returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cairn_plugin_api::Value;
use cairn_plugin_api::ffi::host::{
    AggregateState, ForeignAggregate, ForeignFunction, ForeignTableFunction,
};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// What a plugin registered under a name.
#[derive(Debug)]
pub enum Kind {
    Scalar(ForeignFunction),
    Aggregate(Arc<ForeignAggregate>),
    Table(Arc<ForeignTableFunction>),
}

/// How a function is defined on a connection: what, when it changes, makes the connection
/// define it again.
#[derive(Debug, Clone, PartialEq)]
enum Shape {
    Scalar {
        args: i32,
        deterministic: bool,
    },
    Aggregate {
        args: i32,
        deterministic: bool,
        /// A window function too (ABI 1.9).
        window: bool,
    },
    /// A module per instance: a new one (a reload) connects its table afresh, with the
    /// columns it declares.
    Table {
        generation: u64,
    },
}

/// One registered function.
#[derive(Debug)]
pub struct RegisteredFunction {
    pub plugin: String,
    /// The plugin instance that registered it.
    pub generation: u64,
    pub kind: Kind,
    /// Cleared when it is unregistered: a group still running then ends with an error
    /// rather than step the plugin's gone instance.
    alive: AtomicBool,
}

impl RegisteredFunction {
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Scalar(f) => &f.name,
            Kind::Aggregate(a) => &a.name,
            Kind::Table(t) => &t.name,
        }
    }

    /// Whether it is still registered (a scan or group that began before an unload ends).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Whether `count` arguments are what it takes.
    fn takes(&self, count: usize) -> bool {
        let n = self.arg_count();
        n < 0 || usize::try_from(n) == Ok(count)
    }

    /// How many arguments it takes (-1: any; a table function: at most).
    fn arg_count(&self) -> i32 {
        match &self.kind {
            Kind::Scalar(f) => f.arg_count,
            Kind::Aggregate(a) => a.arg_count,
            Kind::Table(t) => i32::try_from(t.arguments.len()).unwrap_or(i32::MAX),
        }
    }

    fn shape(&self) -> Shape {
        match &self.kind {
            Kind::Scalar(f) => Shape::Scalar {
                args: f.arg_count,
                deterministic: f.deterministic,
            },
            Kind::Aggregate(a) => Shape::Aggregate {
                args: a.arg_count,
                deterministic: a.deterministic,
                window: a.is_window(),
            },
            Kind::Table(_) => Shape::Table {
                generation: self.generation,
            },
        }
    }
}

/// One row of `plugin_functions()`.
#[derive(Debug, Clone)]
pub struct FunctionListing {
    pub plugin: String,
    pub name: String,
    /// `scalar`, `aggregate` or `table`.
    pub kind: &'static str,
    /// -1: any number.
    pub arg_count: i32,
    pub deterministic: bool,
    pub description: String,
    /// A table function's arguments and result columns.
    pub arguments: Option<Vec<cairn_plugin_api::Column>>,
    pub columns: Option<Vec<cairn_plugin_api::Column>>,
}

/// Every plugin function, by SQL name.
#[derive(Debug, Default)]
pub struct SqlFunctions {
    /// Moves on at every registration and removal.
    changes: AtomicU64,
    by_name: RwLock<BTreeMap<String, Arc<RegisteredFunction>>>,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// SQLite's own function and virtual-table module names (and those of its extensions built
/// in), which a plugin may not take over.
fn sqlite_has(name: &str) -> bool {
    let Ok(conn) = rusqlite::Connection::open_in_memory() else {
        return true;
    };
    conn.query_row(
        "SELECT 1 FROM pragma_function_list WHERE name = ?1
         UNION ALL SELECT 1 FROM pragma_module_list WHERE name = ?1",
        [name.to_ascii_lowercase()],
        |_| Ok(()),
    )
    .is_ok()
}

/// A table function's column and argument names: identifiers, all different.
fn check_table_names(function: &ForeignTableFunction) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for c in function.columns.iter().chain(&function.arguments) {
        crate::catalog::validate_identifier("column", &c.name)?;
        if !seen.insert(c.name.to_ascii_lowercase()) {
            return Err(format!(
                "table function {} names {} twice among its columns and arguments; give each its own name",
                function.name, c.name
            ));
        }
    }
    Ok(())
}

impl SqlFunctions {
    /// Registers `kind` of `plugin` (instance `generation`).
    pub fn register(&self, plugin: &str, generation: u64, kind: Kind) -> Result<(), String> {
        let registered = RegisteredFunction {
            plugin: plugin.to_owned(),
            generation,
            kind,
            alive: AtomicBool::new(true),
        };
        let name = registered.name().to_owned();
        crate::catalog::validate_identifier("function", &name)?;
        if let Kind::Table(function) = &registered.kind {
            check_table_names(function)?;
        }
        if name.starts_with("sqlite_")
            || name.starts_with("pragma_")
            || SERVER_FUNCTIONS.contains(&name.as_str())
        {
            return Err(format!(
                "{name} is a name the server keeps for itself; give the plugin's function another name"
            ));
        }
        if sqlite_has(&name) {
            return Err(format!(
                "{name} is one of SQLite's own functions; give the plugin's function another name"
            ));
        }
        let mut by_name = write(&self.by_name);
        if let Some(other) = by_name.get(&name) {
            return Err(format!(
                "function {name} is already registered by plugin {}",
                other.plugin
            ));
        }
        by_name.insert(name, Arc::new(registered));
        self.changes.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Removes what instance `generation` of `plugin` registered; returns it (to be dropped
    /// outside any lock: releasing a context is plugin code).
    pub fn unregister(&self, plugin: &str, generation: u64) -> Vec<Arc<RegisteredFunction>> {
        let mut by_name = write(&self.by_name);
        let names: Vec<String> = by_name
            .iter()
            .filter(|(_, f)| f.plugin == plugin && f.generation == generation)
            .map(|(name, _)| name.clone())
            .collect();
        let removed: Vec<_> = names
            .iter()
            .filter_map(|name| by_name.remove(name))
            .collect();
        drop(by_name);
        for f in &removed {
            f.alive.store(false, Ordering::Release);
        }
        if !removed.is_empty() {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Every registered function, by name.
    pub fn describe(&self) -> Vec<FunctionListing> {
        self.list()
            .iter()
            .map(|f| {
                let (kind, deterministic, description, arguments, columns) = match &f.kind {
                    Kind::Scalar(s) => ("scalar", s.deterministic, &s.description, None, None),
                    Kind::Aggregate(a) => (
                        if a.is_window() { "window" } else { "aggregate" },
                        a.deterministic,
                        &a.description,
                        None,
                        None,
                    ),
                    Kind::Table(t) => (
                        "table",
                        false,
                        &t.description,
                        Some(t.arguments.clone()),
                        Some(t.columns.clone()),
                    ),
                };
                FunctionListing {
                    plugin: f.plugin.clone(),
                    name: f.name().to_owned(),
                    kind,
                    arg_count: f.arg_count(),
                    deterministic,
                    description: description.clone(),
                    arguments,
                    columns,
                }
            })
            .collect()
    }

    /// Every registered function.
    pub fn list(&self) -> Vec<Arc<RegisteredFunction>> {
        read(&self.by_name).values().cloned().collect()
    }

    pub(super) fn get(&self, name: &str) -> Option<Arc<RegisteredFunction>> {
        read(&self.by_name).get(name).cloned()
    }
}

/// The server's own functions and table functions, which no plugin may take over.
const SERVER_FUNCTIONS: [&str; 9] = [
    "pg_backend_pid",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_advisory_lock",
    "pg_try_advisory_lock",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
    "archives",
    "backups",
];

/// What one connection has of the registry: brought up to date before each statement.
#[derive(Debug, Default)]
pub struct ConnectionFunctions {
    seen: u64,
    /// Each function defined on the connection, and how.
    defined: BTreeMap<String, Shape>,
}

impl ConnectionFunctions {
    /// Whether `tokens` name one of the plugin functions this connection has.
    pub fn named_in(&self, tokens: &[crate::sql::lexer::Spanned<'_>]) -> bool {
        use crate::sql::lexer::Token;
        !self.defined.is_empty()
            && tokens.iter().any(|t| match &t.token {
                Token::Word(w) => self.defined.contains_key(&w.to_ascii_lowercase()),
                Token::QuotedIdent(q) => self.defined.contains_key(q.as_str()),
                _ => false,
            })
    }

    /// Defines on `conn` the functions registered since the last call and removes those
    /// unregistered. A connection with a statement still running cannot change its functions
    /// (SQLite refuses): it tries again before its next statement.
    pub fn sync(&mut self, registry: &Arc<SqlFunctions>, conn: &rusqlite::Connection) {
        let changes = registry.changes.load(Ordering::Acquire);
        if changes == self.seen {
            return;
        }
        let wanted: BTreeMap<String, Shape> = registry
            .list()
            .iter()
            .map(|f| (f.name().to_owned(), f.shape()))
            .collect();
        let mut complete = true;
        // A table function gone or defined again: SQLite does not expire the statements
        // prepared against its old table, so the connection's cached ones are let go.
        let mut tables_changed = false;
        let gone: Vec<(String, Shape)> = self
            .defined
            .iter()
            .filter(|(name, shape)| wanted.get(*name) != Some(*shape))
            .map(|(name, shape)| (name.clone(), shape.clone()))
            .collect();
        for (name, shape) in gone {
            let removed = match shape {
                Shape::Scalar { args, .. } | Shape::Aggregate { args, .. } => {
                    conn.remove_function(name.as_str(), args)
                }
                // rusqlite cannot drop a module: it stays, and finds the function gone
                // (a scan then fails naming it), or is defined again just below.
                Shape::Table { .. } => {
                    tables_changed = true;
                    Ok(())
                }
            };
            match removed {
                Ok(()) => {
                    self.defined.remove(&name);
                }
                Err(_) => complete = false,
            }
        }
        for (name, shape) in wanted {
            if self.defined.contains_key(&name) {
                continue;
            }
            let defined = match shape {
                Shape::Scalar {
                    args,
                    deterministic,
                } => {
                    let found = Arc::clone(registry);
                    let sql_name = name.clone();
                    conn.create_scalar_function(
                        name.as_str(),
                        args,
                        flags(deterministic),
                        move |ctx| call(&found, &sql_name, ctx),
                    )
                }
                Shape::Aggregate {
                    args,
                    deterministic,
                    window,
                } => {
                    let groups = Groups {
                        registry: Arc::clone(registry),
                        name: name.clone(),
                    };
                    // A window function serves as a plain aggregate too.
                    if window {
                        conn.create_window_function(
                            name.as_str(),
                            args,
                            flags(deterministic),
                            groups,
                        )
                    } else {
                        conn.create_aggregate_function(
                            name.as_str(),
                            args,
                            flags(deterministic),
                            groups,
                        )
                    }
                }
                // Defining the module again (a new instance) drops the table SQLite connected
                // for the old one; the next statement connects it with the new columns.
                Shape::Table { .. } => {
                    let aux = super::table_functions::TableAux {
                        registry: Arc::clone(registry),
                        name: name.clone(),
                    };
                    conn.create_module(name.as_str(), &super::table_functions::MODULE, Some(aux))
                }
            };
            match defined {
                Ok(()) => {
                    self.defined.insert(name, shape);
                }
                Err(_) => complete = false,
            }
        }
        if tables_changed {
            conn.flush_prepared_statement_cache();
        }
        if complete {
            self.seen = changes;
        }
    }
}

/// Direct calls only: a plugin's function in an index, a generated column, a CHECK, a
/// trigger or a view would outlive the plugin (every write to the table failing after an
/// unload) and could not be evaluated where no plugin runs.
fn flags(deterministic: bool) -> FunctionFlags {
    let mut flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    if deterministic {
        flags |= FunctionFlags::SQLITE_DETERMINISTIC;
    }
    flags
}

/// Why a plugin function's call failed, as SQL sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallFailed(String);

fn failed(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(CallFailed(message)))
}

/// Looked up at each call (each group): an unloaded plugin's function is gone, a reloaded
/// one's is the new instance's, and one that now takes another number of arguments (a
/// statement prepared before a reload) is refused rather than handed what it does not take.
fn look_up(
    registry: &SqlFunctions,
    name: &str,
    count: Option<usize>,
) -> rusqlite::Result<Arc<RegisteredFunction>> {
    let registered = registry.get(name).ok_or_else(|| gone(name))?;
    if let Some(count) = count
        && !registered.takes(count)
    {
        return Err(failed(format!(
            "function {name} of plugin {} does not take {count} arguments (it was registered again since this statement was prepared); prepare it again",
            registered.plugin
        )));
    }
    Ok(registered)
}

fn gone(name: &str) -> rusqlite::Error {
    failed(format!(
        "function {name} is no longer registered (its plugin was unloaded or failed)"
    ))
}

fn arguments(ctx: &Context<'_>) -> Vec<Value> {
    (0..ctx.len())
        .map(|i| match ctx.get_raw(i) {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Integer(n),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
        .collect()
}

fn to_sql(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(n) => SqlValue::Integer(n),
        Value::Real(r) => SqlValue::Real(r),
        Value::Text(t) => SqlValue::Text(t),
        Value::Blob(b) => SqlValue::Blob(b),
    }
}

fn plugin_error(plugin: &str, name: &str, e: &cairn_plugin_api::PluginError) -> rusqlite::Error {
    failed(format!("plugin {plugin}: function {name}: {}", e.message()))
}

/// SQLite's call of the scalar function `name` on this row.
fn call(registry: &SqlFunctions, name: &str, ctx: &Context<'_>) -> rusqlite::Result<SqlValue> {
    let registered = look_up(registry, name, Some(ctx.len()))?;
    let Kind::Scalar(function) = &registered.kind else {
        return Err(failed(format!("{name} is an aggregate now")));
    };
    function
        .call(&arguments(ctx))
        .map(to_sql)
        .map_err(|e| plugin_error(&registered.plugin, name, &e))
}

/// SQLite's side of the aggregate `name`: a plugin state per group.
struct Groups {
    registry: Arc<SqlFunctions>,
    name: String,
}

/// One group: the plugin's state, and the registration it belongs to.
struct Group {
    registered: Arc<RegisteredFunction>,
    state: AggregateState,
}

impl std::panic::UnwindSafe for Group {}
impl std::panic::RefUnwindSafe for Group {}

impl Group {
    /// Whether its plugin is still the one registered (else the group ends, unfinished).
    fn check(&self, name: &str) -> rusqlite::Result<()> {
        if self.registered.alive.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(gone(name))
        }
    }
}

impl Groups {
    /// A group's state; `count`: the arguments of its first row (none: a group of no rows).
    fn start(&self, count: Option<usize>) -> rusqlite::Result<Group> {
        let registered = look_up(&self.registry, &self.name, count)?;
        let Kind::Aggregate(aggregate) = &registered.kind else {
            return Err(failed(format!("{} is a scalar function now", self.name)));
        };
        let state = aggregate
            .start()
            .map_err(|e| plugin_error(&registered.plugin, &self.name, &e))?;
        Ok(Group { registered, state })
    }
}

impl rusqlite::functions::WindowAggregate<Group, SqlValue> for Groups {
    fn value(&self, group: Option<&mut Group>) -> rusqlite::Result<SqlValue> {
        let fresh;
        let group = match group {
            Some(group) => &*group,
            // An empty frame: a fresh group's value.
            None => {
                fresh = self.start(None)?;
                &fresh
            }
        };
        group.check(&self.name)?;
        group
            .state
            .value()
            .map(to_sql)
            .map_err(|e| plugin_error(&group.registered.plugin, &self.name, &e))
    }

    fn inverse(&self, ctx: &mut Context<'_>, group: &mut Group) -> rusqlite::Result<()> {
        group.check(&self.name)?;
        group
            .state
            .inverse(&arguments(ctx))
            .map_err(|e| plugin_error(&group.registered.plugin, &self.name, &e))
    }
}

impl Aggregate<Group, SqlValue> for Groups {
    fn init(&self, ctx: &mut Context<'_>) -> rusqlite::Result<Group> {
        self.start(Some(ctx.len()))
    }

    fn step(&self, ctx: &mut Context<'_>, group: &mut Group) -> rusqlite::Result<()> {
        group.check(&self.name)?;
        if !group.registered.takes(ctx.len()) {
            return Err(failed(format!(
                "function {} does not take {} arguments",
                self.name,
                ctx.len()
            )));
        }
        group
            .state
            .step(&arguments(ctx))
            .map_err(|e| plugin_error(&group.registered.plugin, &self.name, &e))
    }

    fn finalize(&self, _: &mut Context<'_>, group: Option<Group>) -> rusqlite::Result<SqlValue> {
        // No rows: a fresh group, finished at once (what that gives is the plugin's call).
        let group = match group {
            Some(group) => group,
            None => self.start(None)?,
        };
        group.check(&self.name)?;
        let Group { registered, state } = group;
        state
            .finish()
            .map(to_sql)
            .map_err(|e| plugin_error(&registered.plugin, &self.name, &e))
    }
}
