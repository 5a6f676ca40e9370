//! Scalar SQL functions plugins register (ABI 1.6), for every session's connection.
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
use cairn_plugin_api::ffi::host::ForeignFunction;
use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value as SqlValue, ValueRef};

/// One registered function.
#[derive(Debug)]
pub struct RegisteredFunction {
    pub plugin: String,
    /// The plugin instance that registered it.
    pub generation: u64,
    pub function: ForeignFunction,
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
    /// Registers `function` of `plugin` (instance `generation`).
    pub fn register(
        &self,
        plugin: &str,
        generation: u64,
        function: ForeignFunction,
    ) -> Result<(), String> {
        crate::catalog::validate_identifier("function", &function.name)?;
        if sqlite_has(&function.name) {
            return Err(format!(
                "{} is one of SQLite's own functions; give the plugin's function another name",
                function.name
            ));
        }
        let mut by_name = write(&self.by_name);
        if let Some(other) = by_name.get(&function.name) {
            return Err(format!(
                "function {} is already registered by plugin {}",
                function.name, other.plugin
            ));
        }
        by_name.insert(
            function.name.clone(),
            Arc::new(RegisteredFunction {
                plugin: plugin.to_owned(),
                generation,
                function,
            }),
        );
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
        let wanted: BTreeMap<String, (i32, bool)> = registry
            .list()
            .iter()
            .map(|f| {
                (
                    f.function.name.clone(),
                    (f.function.arg_count, f.function.deterministic),
                )
            })
            .collect();
        let mut complete = true;
        let gone: Vec<(String, i32)> = self
            .defined
            .iter()
            .filter(|(name, n)| wanted.get(*name).is_none_or(|(m, _)| m != *n))
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
        for (name, (n, deterministic)) in wanted {
            if self.defined.contains_key(&name) {
                continue;
            }
            let mut flags = FunctionFlags::SQLITE_UTF8;
            if deterministic {
                flags |= FunctionFlags::SQLITE_DETERMINISTIC;
            }
            let found = Arc::clone(registry);
            let sql_name = name.clone();
            let defined = conn.create_scalar_function(name.as_str(), n, flags, move |ctx| {
                call(&found, &sql_name, ctx)
            });
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

/// SQLite's call of `name` on this row.
fn call(registry: &SqlFunctions, name: &str, ctx: &Context<'_>) -> rusqlite::Result<SqlValue> {
    let failed =
        |message: String| rusqlite::Error::UserFunctionError(Box::new(CallFailed(message)));
    // Looked up at each call: an unloaded plugin's function is gone, a reloaded one's is the
    // new instance's.
    let Some(registered) = registry.get(name) else {
        return Err(failed(format!(
            "function {name} is no longer registered (its plugin was unloaded or failed)"
        )));
    };
    let args: Vec<Value> = (0..ctx.len())
        .map(|i| match ctx.get_raw(i) {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(n) => Value::Integer(n),
            ValueRef::Real(r) => Value::Real(r),
            ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::Blob(b.to_vec()),
        })
        .collect();
    match registered.function.call(&args) {
        Ok(Value::Null) => Ok(SqlValue::Null),
        Ok(Value::Integer(n)) => Ok(SqlValue::Integer(n)),
        Ok(Value::Real(r)) => Ok(SqlValue::Real(r)),
        Ok(Value::Text(t)) => Ok(SqlValue::Text(t)),
        Ok(Value::Blob(b)) => Ok(SqlValue::Blob(b)),
        Err(e) => Err(failed(format!(
            "plugin {}: function {name}: {}",
            registered.plugin,
            e.message()
        ))),
    }
}
