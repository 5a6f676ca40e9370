//! Table functions plugins register (ABI 1.7), as SQLite eponymous-only virtual tables:
//! `SELECT * FROM name(args…)`, joins included (`FROM t, name(t.x)`).
//!
//! The table's columns are the function's result columns, then its arguments as hidden
//! columns; SQLite hands a call's arguments to the scan as equality constraints on those.
//! A scan pulls the plugin's rows a batch at a time as the statement steps, so memory stays
//! at one batch whatever the function yields, and a cancel or a `LIMIT` stops it between
//! batches. Like a scalar function, the plugin is looked up by name when a scan starts: one
//! unloaded meanwhile is an error naming it, never a call into an instance that is gone.
//!
//! The only unsafe code outside the plugin ABI is here: the two `unsafe impl`s by which
//! rusqlite's virtual-table glue is told that the table and cursor structs start with
//! SQLite's own (`#[repr(C)]`, base first). No unsafe block.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::{CStr, CString, c_int};
use std::sync::Arc;

use cairn_plugin_api::ffi::host::TableScan;
use cairn_plugin_api::{Column, Value};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::vtab::{
    Context, Filters, IndexConstraintOp, IndexInfo, Module, VTab, VTabConfig, VTabConnection,
    VTabCursor, sqlite3_vtab, sqlite3_vtab_cursor,
};

use super::functions::{Kind, RegisteredFunction, SqlFunctions};

/// What SQLite keeps with the module of one table function name.
pub(super) struct TableAux {
    pub registry: Arc<SqlFunctions>,
    pub name: String,
}

/// The one module every plugin table function is defined with; its aux says which.
pub(super) const MODULE: Module<'static, PluginTable> = Module::eponymous_only_module();

fn error(message: String) -> rusqlite::Error {
    rusqlite::Error::ModuleError(message)
}

fn gone(name: &str) -> rusqlite::Error {
    error(format!(
        "table function {name} is no longer registered (its plugin was unloaded or failed)"
    ))
}

/// The table of one table function on one connection.
#[repr(C)]
pub(super) struct PluginTable {
    /// SQLite's part; first, as rusqlite requires.
    base: sqlite3_vtab,
    registry: Arc<SqlFunctions>,
    name: String,
    /// As the function declared them when the table was connected.
    columns: Vec<Column>,
    arguments: Vec<Column>,
}

fn sql_type(ty: cairn_plugin_api::ColumnType) -> &'static str {
    use cairn_plugin_api::ColumnType;
    match ty {
        ColumnType::Integer => "INTEGER",
        ColumnType::Real => "REAL",
        ColumnType::Text => "TEXT",
        ColumnType::Blob => "BLOB",
    }
}

/// `CREATE TABLE x(…)` for the columns, then the arguments as hidden columns.
fn declaration(columns: &[Column], arguments: &[Column]) -> String {
    let column = |c: &Column, hidden: &str| {
        format!(
            "\"{}\" {hidden}{}",
            c.name.replace('"', "\"\""),
            sql_type(c.ty)
        )
    };
    let all: Vec<String> = columns
        .iter()
        .map(|c| column(c, ""))
        .chain(arguments.iter().map(|c| column(c, "HIDDEN ")))
        .collect();
    format!("CREATE TABLE x({})", all.join(", "))
}

// SAFETY: `PluginTable` is `#[repr(C)]` with SQLite's `sqlite3_vtab` as its first field, which
// is what rusqlite's glue casts between.
unsafe impl<'vtab> VTab<'vtab> for PluginTable {
    type Aux = TableAux;
    type Cursor = PluginScan<'vtab>;

    fn connect(
        db: &mut VTabConnection,
        aux: Option<&TableAux>,
        _module_name: &[u8],
        _database_name: &[u8],
        _table_name: &[u8],
        _args: &[&[u8]],
    ) -> rusqlite::Result<(Cow<'static, CStr>, PluginTable)> {
        let aux = aux.ok_or_else(|| error("a plugin table function without its name".into()))?;
        let registered = aux.registry.get(&aux.name).ok_or_else(|| gone(&aux.name))?;
        let Kind::Table(function) = &registered.kind else {
            return Err(gone(&aux.name));
        };
        // Direct use only, as for scalar functions: a view or trigger would outlive the plugin.
        db.config(VTabConfig::DirectOnly)?;
        let schema = CString::new(declaration(&function.columns, &function.arguments))
            .map_err(|_| error(format!("table function {} has a NUL in a name", aux.name)))?;
        Ok((
            Cow::Owned(schema),
            PluginTable {
                base: sqlite3_vtab::default(),
                registry: Arc::clone(&aux.registry),
                name: aux.name.clone(),
                columns: function.columns.clone(),
                arguments: function.arguments.clone(),
            },
        ))
    }

    /// Takes the equality constraints on the arguments' hidden columns as the call's
    /// arguments, in order: as many leading ones as are given. A plan that would leave an
    /// argument it was given unusable (its value comes from a table not yet scanned) is
    /// refused, so that SQLite orders the join with the function inside.
    fn best_index(&self, info: &mut IndexInfo) -> rusqlite::Result<bool> {
        let first = self.columns.len() as c_int;
        let mut given: Vec<Option<usize>> = vec![None; self.arguments.len()];
        let mut unusable = vec![false; self.arguments.len()];
        for (i, constraint) in info.constraints().enumerate() {
            let Ok(argument) = usize::try_from(constraint.column() - first) else {
                continue;
            };
            if argument >= given.len()
                || constraint.operator() != IndexConstraintOp::SQLITE_INDEX_CONSTRAINT_EQ
            {
                continue;
            }
            if constraint.is_usable() {
                given[argument] = Some(i);
            } else {
                unusable[argument] = true;
            }
        }
        if given
            .iter()
            .zip(&unusable)
            .any(|(given, unusable)| given.is_none() && *unusable)
        {
            return Ok(false);
        }
        let passed: Vec<usize> = given.iter().map_while(|g| *g).collect();
        for (position, constraint) in passed.iter().enumerate() {
            let mut usage = info.constraint_usage(*constraint);
            usage.set_argv_index(position as c_int + 1);
            usage.set_omit(true);
        }
        info.set_idx_num(passed.len() as c_int);
        // Cheaper with more of its arguments given: SQLite then prefers the plans that give
        // them all.
        let missing = (self.arguments.len() - passed.len()) as i32;
        info.set_estimated_rows(1000);
        info.set_estimated_cost(1000.0 * 10f64.powi(missing));
        Ok(true)
    }

    fn open(&'vtab mut self) -> rusqlite::Result<PluginScan<'vtab>> {
        Ok(PluginScan {
            base: sqlite3_vtab_cursor::default(),
            table: self,
            scan: None,
            registered: None,
            arguments: Vec::new(),
            batch: Vec::new(),
            at: 0,
            rowid: 0,
        })
    }
}

/// One cursor over a table function: the plugin's scan for the current arguments and the
/// batch of rows being read.
#[repr(C)]
pub(super) struct PluginScan<'vtab> {
    /// SQLite's part; first, as rusqlite requires.
    base: sqlite3_vtab_cursor,
    table: &'vtab PluginTable,
    scan: Option<TableScan>,
    /// The registration the scan belongs to: an unload meanwhile ends it with an error.
    registered: Option<Arc<RegisteredFunction>>,
    arguments: Vec<Value>,
    batch: Vec<Vec<Value>>,
    at: usize,
    rowid: i64,
}

fn owned(value: ValueRef<'_>) -> Value {
    match value {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(n) => Value::Integer(n),
        ValueRef::Real(r) => Value::Real(r),
        ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn borrowed(value: &Value) -> ValueRef<'_> {
    match value {
        Value::Null => ValueRef::Null,
        Value::Integer(n) => ValueRef::Integer(*n),
        Value::Real(r) => ValueRef::Real(*r),
        Value::Text(t) => ValueRef::Text(t.as_bytes()),
        Value::Blob(b) => ValueRef::Blob(b),
    }
}

impl PluginScan<'_> {
    fn plugin_error(&self, e: &cairn_plugin_api::PluginError) -> rusqlite::Error {
        let plugin = self.registered.as_ref().map_or("?", |r| r.plugin.as_str());
        error(format!(
            "plugin {plugin}: table function {}: {}",
            self.table.name,
            e.message()
        ))
    }

    /// The next batch; an empty one ends the scan (and releases the plugin's state).
    fn fetch(&mut self) -> rusqlite::Result<()> {
        self.batch.clear();
        self.at = 0;
        let Some(scan) = self.scan.as_mut() else {
            return Ok(());
        };
        if let Some(registered) = &self.registered
            && !registered.is_alive()
        {
            self.scan = None;
            return Err(gone(&self.table.name));
        }
        let batch = scan.next_batch().map_err(|e| self.plugin_error(&e))?;
        let plugin = self.registered.as_ref().map_or("?", |r| r.plugin.as_str());
        self.batch = super::registry::conform(&self.table.columns, batch, "table function")
            .map_err(|why| {
                error(format!(
                    "plugin {plugin}: table function {}: {why}",
                    self.table.name
                ))
            })?;
        if self.batch.is_empty() {
            self.scan = None;
        }
        Ok(())
    }
}

// SAFETY: `PluginScan` is `#[repr(C)]` with SQLite's `sqlite3_vtab_cursor` as its first field,
// which is what rusqlite's glue casts between.
unsafe impl VTabCursor for PluginScan<'_> {
    fn filter(
        &mut self,
        _passed: c_int,
        _plan: Option<&str>,
        args: &Filters<'_>,
    ) -> rusqlite::Result<()> {
        // A scan of earlier arguments (the previous row of a join) ends here.
        self.scan = None;
        self.arguments = args.iter().map(owned).collect();
        self.rowid = 0;
        let table = self.table;
        let registered = table
            .registry
            .get(&table.name)
            .ok_or_else(|| gone(&table.name))?;
        let Kind::Table(function) = &registered.kind else {
            return Err(gone(&table.name));
        };
        if function.columns != table.columns || function.arguments != table.arguments {
            return Err(error(format!(
                "table function {} of plugin {} was registered again with other columns or arguments since this statement was prepared; run it again",
                table.name, registered.plugin
            )));
        }
        let function = Arc::clone(function);
        self.registered = Some(Arc::clone(&registered));
        self.scan = Some(
            function
                .open(&self.arguments)
                .map_err(|e| self.plugin_error(&e))?,
        );
        self.fetch()
    }

    fn next(&mut self) -> rusqlite::Result<()> {
        self.at += 1;
        self.rowid += 1;
        if self.at >= self.batch.len() {
            self.fetch()?;
        }
        Ok(())
    }

    fn eof(&self) -> bool {
        self.at >= self.batch.len()
    }

    fn column(&self, ctx: &mut Context, i: c_int) -> rusqlite::Result<()> {
        let i = usize::try_from(i).unwrap_or(usize::MAX);
        let columns = self.table.columns.len();
        let value = if i < columns {
            self.batch.get(self.at).and_then(|row| row.get(i))
        } else {
            // An argument's hidden column: the value passed, NULL when left out.
            self.arguments.get(i - columns)
        };
        let value = value.map_or(ValueRef::Null, borrowed);
        ctx.set_result(ToSqlOutput::Borrowed(value))
    }

    fn rowid(&self) -> rusqlite::Result<i64> {
        Ok(self.rowid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_plugin_api::ColumnType;

    #[test]
    fn the_declaration_hides_the_arguments_after_the_columns() {
        let columns = [
            Column::new("value", ColumnType::Integer),
            Column::new("say \"hi\"", ColumnType::Text),
        ];
        let arguments = [Column::new("start", ColumnType::Integer)];
        assert_eq!(
            declaration(&columns, &arguments),
            "CREATE TABLE x(\"value\" INTEGER, \"say \"\"hi\"\"\" TEXT, \"start\" HIDDEN INTEGER)"
        );
    }
}
