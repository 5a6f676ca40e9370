//! `audit`: an example Cairn plugin that keeps an audit log of committed row changes
//! (ABI 1.8).
//!
//! It subscribes to the row changes of the databases and tables its config names, and
//! writes one row per change into a log table: the database's commit number, the database,
//! the table, `insert`/`update`/`delete` and the rowid. Only committed transactions reach
//! it, in commit order, after they are durable: a rolled-back transaction, or the part of
//! one undone by `ROLLBACK TO` a savepoint, never appears. When its queue overflowed it
//! writes a row of op `missed` with the number of commits lost, so a gap is never silent.
//!
//! ```toml
//! [plugins.audit]
//! library = "libaudit_plugin.so"
//! role = "readwrite"                  # it writes its log
//! [plugins.audit.config]
//! databases = ["bank"]                # whose changes (default: every database)
//! tables = ["accounts"]               # which tables (default: every table)
//! log_database = "default"            # where the log is kept
//! log_table = "audit_log"
//! log_statements_over_ms = 100        # also log statements this slow (ABI 1.10; default: none)
//! ```
//!
//! With `log_statements_over_ms`, every session's statements that ran at least that long
//! (0: all of them) go to `statement_log` in the log database: when, who, where, how long,
//! how many rows, the SQLSTATE of a failure, and the text (never parameter values).
//!
//! The log's own changes are never logged. Each commit's rows are written in statements of
//! up to 200 rows, each its own transaction: a crash in the middle of a large commit can
//! leave part of it logged (its rows share the commit's number, so it shows).

use cairn_plugin_api::serde::Deserialize;
use cairn_plugin_api::tracing::info;
use cairn_plugin_api::{
    Commit, Host, Plugin, PluginConfig, PluginError, Statement, Value, async_trait, export_plugin,
};

/// The plugin's config table.
#[derive(Debug, Deserialize)]
#[serde(crate = "cairn_plugin_api::serde", deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    databases: Vec<String>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default = "default_log_database")]
    log_database: String,
    #[serde(default = "default_log_table")]
    log_table: String,
    #[serde(default)]
    log_statements_over_ms: Option<u64>,
}

fn default_log_database() -> String {
    "default".into()
}

fn default_log_table() -> String {
    "audit_log".into()
}

/// The plugin's state.
#[derive(Debug)]
pub struct Audit {
    settings: Settings,
}

/// Rows per INSERT statement (five parameters each).
const ROWS_PER_STATEMENT: usize = 200;

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[async_trait]
impl Plugin for Audit {
    fn new(config: PluginConfig) -> Result<Self, PluginError> {
        let settings: Settings = config.parse()?;
        if !is_identifier(&settings.log_table) {
            return Err(PluginError::Config(format!(
                "log_table {:?} is not a plain identifier ([A-Za-z_][A-Za-z0-9_]*)",
                settings.log_table
            )));
        }
        Ok(Audit { settings })
    }

    async fn start(&self, host: &Host) -> Result<(), PluginError> {
        let s = &self.settings;
        host.execute(
            &s.log_database,
            &format!(
                "CREATE TABLE IF NOT EXISTS {}(
                     id INTEGER PRIMARY KEY,
                     sequence INTEGER NOT NULL,
                     database_name TEXT NOT NULL,
                     table_name TEXT,
                     op TEXT NOT NULL,
                     row_id INTEGER,
                     logged_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
                s.log_table
            ),
            &[],
        )
        .await?;
        let databases: Vec<&str> = s.databases.iter().map(String::as_str).collect();
        let tables: Vec<&str> = s.tables.iter().map(String::as_str).collect();
        host.subscribe_changes(&databases, &tables)?;
        if let Some(ms) = s.log_statements_over_ms {
            host.execute(
                &s.log_database,
                "CREATE TABLE IF NOT EXISTS statement_log(
                     id INTEGER PRIMARY KEY,
                     started_at TEXT,
                     database_name TEXT,
                     user_name TEXT,
                     duration_ms REAL,
                     rows INTEGER,
                     sqlstate TEXT,
                     text TEXT,
                     missed INTEGER)",
                &[],
            )
            .await?;
            host.subscribe_statements(Some(std::time::Duration::from_millis(ms)))?;
        }
        info!(databases = ?s.databases, tables = ?s.tables, log = %format!("{}.{}", s.log_database, s.log_table), "audit plugin started");
        Ok(())
    }

    async fn on_statement(&self, host: &Host, statement: Statement) -> Result<(), PluginError> {
        let started = statement
            .started_at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        host.execute(
            &self.settings.log_database,
            "INSERT INTO statement_log(started_at, database_name, user_name, duration_ms, rows, sqlstate, text, missed)
             VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', $1, 'unixepoch'), $2, $3, $4, $5, $6, $7, $8)",
            &[
                Value::Real(started),
                Value::Text(statement.database),
                Value::Text(statement.user),
                Value::Real(statement.duration.as_secs_f64() * 1000.0),
                Value::Integer(i64::try_from(statement.rows).unwrap_or(i64::MAX)),
                statement.failed.map_or(Value::Null, Value::Text),
                Value::Text(statement.text),
                Value::Integer(i64::try_from(statement.missed).unwrap_or(i64::MAX)),
            ],
        )
        .await?;
        Ok(())
    }

    async fn on_commit(&self, host: &Host, commit: Commit) -> Result<(), PluginError> {
        let s = &self.settings;
        // One log row: the commit, then the table (none for a report), op and rowid or count.
        let row = |table: Option<&str>, op: &str, n: i64| {
            [
                Value::Integer(i64::try_from(commit.sequence).unwrap_or(i64::MAX)),
                Value::Text(commit.database.clone()),
                table.map_or(Value::Null, |t| Value::Text(t.to_owned())),
                Value::Text(op.to_owned()),
                Value::Integer(n),
            ]
        };
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let mut rows: Vec<[Value; 5]> = Vec::new();
        if commit.missed > 0 {
            rows.push(row(None, "missed", count(commit.missed)));
        }
        for change in &commit.changes {
            // Its own log's rows are not audited (they would be, with `tables` empty).
            if commit.database == s.log_database && change.table.eq_ignore_ascii_case(&s.log_table)
            {
                continue;
            }
            rows.push(row(Some(&change.table), change.op.name(), change.rowid));
        }
        if commit.truncated > 0 {
            rows.push(row(None, "truncated", count(commit.truncated)));
        }
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let p = i * 5;
                    format!(
                        "(${}, ${}, ${}, ${}, ${})",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO {}(sequence, database_name, table_name, op, row_id) VALUES {}",
                s.log_table,
                values.join(", ")
            );
            let params: Vec<Value> = chunk.iter().flat_map(|row| row.iter().cloned()).collect();
            host.execute(&s.log_database, &sql, &params).await?;
        }
        Ok(())
    }
}

export_plugin!(
    Audit,
    name: "audit",
    version: env!("CARGO_PKG_VERSION"),
    description: "Example plugin: an audit log of committed row changes"
);
