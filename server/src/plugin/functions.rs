//! Scalar and aggregate SQL functions plugins register (ABI 1.6), for every session's
//! connection.
//!
//! SQLite resolves a function by name when a statement is prepared, on each connection, so
//! each session brings its connection up to date with the registry before it runs a
//! statement: one atomic load when nothing changed. The function SQLite calls only looks the
//! plugin's function up by name: one unloaded (or replaced) meanwhile is an error naming it,
//! never a call into an instance that is gone, and a call that is running keeps the function
//! (and the plugin's context) alive until it returns.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use cairn_plugin_api::Value;
use cairn_plugin_api::ffi::host::{AggregateState, ForeignAggregate, ForeignFunction};
use rusqlite::functions::{Aggregate, Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// What a plugin registered under a name.
#[derive(Debug)]
pub enum Kind {
    Scalar(ForeignFunction),
    Aggregate(Arc<ForeignAggregate>),
}

/// One registered function.
#[derive(Debug)]
pub struct RegisteredFunction {
    pub plugin: String,
    /// The plugin instance that registered it.
    pub generation: u64,
    pub kind: Kind,
}

impl RegisteredFunction {
    pub fn name(&self) -> &str {
        match &self.kind {
            Kind::Scalar(f) => &f.name,
            Kind::Aggregate(a) => &a.name,
        }
    }

    /// Its argument count (-1: any), whether it is deterministic, whether an aggregate.
    fn shape(&self) -> (i32, bool, bool) {
        match &self.kind {
            Kind::Scalar(f) => (f.arg_count, f.deterministic, false),
            Kind::Aggregate(a) => (a.arg_count, a.deterministic, true),
        }
    }
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

/// SQLite's own function names (and those of its extensions built in), which a plugin may
/// not take over.
fn sqlite_has(name: &str) -> bool {
    let Ok(conn) = rusqlite::Connection::open_in_memory() else {
        return true;
    };
    conn.query_row(
        "SELECT 1 FROM pragma_function_list WHERE name = ?1",
        [name.to_ascii_lowercase()],
        |_| Ok(()),
    )
    .is_ok()
}

impl SqlFunctions {
    /// Registers `kind` of `plugin` (instance `generation`).
    pub fn register(&self, plugin: &str, generation: u64, kind: Kind) -> Result<(), String> {
        let registered = RegisteredFunction {
            plugin: plugin.to_owned(),
            generation,
            kind,
        };
        let name = registered.name().to_owned();
        crate::catalog::validate_identifier("function", &name)?;
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
        if !removed.is_empty() {
            self.changes.fetch_add(1, Ordering::AcqRel);
        }
        removed
    }

    /// Every registered function.
    pub fn list(&self) -> Vec<Arc<RegisteredFunction>> {
        read(&self.by_name).values().cloned().collect()
    }

    fn get(&self, name: &str) -> Option<Arc<RegisteredFunction>> {
        read(&self.by_name).get(name).cloned()
    }
}

/// What one connection has of the registry: brought up to date before each statement.
#[derive(Debug, Default)]
pub struct ConnectionFunctions {
    seen: u64,
    /// Name and argument count of each function defined on the connection.
    defined: BTreeMap<String, i32>,
}

impl ConnectionFunctions {
    /// Defines on `conn` the functions registered since the last call and removes those
    /// unregistered. A connection with a statement still running cannot change its functions
    /// (SQLite refuses): it tries again before its next statement.
    pub fn sync(&mut self, registry: &Arc<SqlFunctions>, conn: &rusqlite::Connection) {
        let changes = registry.changes.load(Ordering::Acquire);
        if changes == self.seen {
            return;
        }
        let wanted: BTreeMap<String, (i32, bool, bool)> = registry
            .list()
            .iter()
            .map(|f| (f.name().to_owned(), f.shape()))
            .collect();
        let mut complete = true;
        let gone: Vec<(String, i32)> = self
            .defined
            .iter()
            .filter(|(name, n)| wanted.get(*name).is_none_or(|(m, _, _)| m != *n))
            .map(|(name, n)| (name.clone(), *n))
            .collect();
        for (name, n) in gone {
            match conn.remove_function(name.as_str(), n) {
                Ok(()) => {
                    self.defined.remove(&name);
                }
                Err(_) => complete = false,
            }
        }
        for (name, (n, deterministic, aggregate)) in wanted {
            if self.defined.contains_key(&name) {
                continue;
            }
            let mut flags = FunctionFlags::SQLITE_UTF8;
            if deterministic {
                flags |= FunctionFlags::SQLITE_DETERMINISTIC;
            }
            let found = Arc::clone(registry);
            let sql_name = name.clone();
            let defined = if aggregate {
                let groups = Groups {
                    registry: found,
                    name: sql_name,
                };
                conn.create_aggregate_function(name.as_str(), n, flags, groups)
            } else {
                conn.create_scalar_function(name.as_str(), n, flags, move |ctx| {
                    call(&found, &sql_name, ctx)
                })
            };
            match defined {
                Ok(()) => {
                    self.defined.insert(name, n);
                }
                Err(_) => complete = false,
            }
        }
        if complete {
            self.seen = changes;
        }
    }
}

/// Why a plugin function's call failed, as SQL sees it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct CallFailed(String);

fn failed(message: String) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(Box::new(CallFailed(message)))
}

/// Looked up at each call (each group): an unloaded plugin's function is gone, a reloaded
/// one's is the new instance's.
fn look_up(registry: &SqlFunctions, name: &str) -> rusqlite::Result<Arc<RegisteredFunction>> {
    registry.get(name).ok_or_else(|| {
        failed(format!(
            "function {name} is no longer registered (its plugin was unloaded or failed)"
        ))
    })
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
    let registered = look_up(registry, name)?;
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

/// One group: the plugin's state, and whose it is (for errors).
struct Group {
    plugin: String,
    state: AggregateState,
}

impl Groups {
    fn start(&self) -> rusqlite::Result<Group> {
        let registered = look_up(&self.registry, &self.name)?;
        let Kind::Aggregate(aggregate) = &registered.kind else {
            return Err(failed(format!("{} is a scalar function now", self.name)));
        };
        let state = aggregate
            .start()
            .map_err(|e| plugin_error(&registered.plugin, &self.name, &e))?;
        Ok(Group {
            plugin: registered.plugin.clone(),
            state,
        })
    }
}

impl Aggregate<Group, SqlValue> for Groups {
    fn init(&self, _: &mut Context<'_>) -> rusqlite::Result<Group> {
        self.start()
    }

    fn step(&self, ctx: &mut Context<'_>, group: &mut Group) -> rusqlite::Result<()> {
        group
            .state
            .step(&arguments(ctx))
            .map_err(|e| plugin_error(&group.plugin, &self.name, &e))
    }

    fn finalize(&self, _: &mut Context<'_>, group: Option<Group>) -> rusqlite::Result<SqlValue> {
        // No rows: a fresh group, finished at once (what that gives is the plugin's call).
        let group = match group {
            Some(group) => group,
            None => self.start()?,
        };
        let Group { plugin, state } = group;
        state
            .finish()
            .map(to_sql)
            .map_err(|e| plugin_error(&plugin, &self.name, &e))
    }
}
