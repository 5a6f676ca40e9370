//! Table-level backups and restores: an archive that holds some of a database's tables
//! (Doris's `BACKUP SNAPSHOT … ON (…)`, CockroachDB's `BACKUP TABLE`), cut from the
//! snapshot's copy, and `RESTORE TABLE`, which copies tables out of an archive's database
//! into an existing one.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use super::error::BackupError;

/// Which tables a backup keeps (`WITH (tables = […])` or `WITH (exclude_tables = […])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFilter {
    Only(Vec<String>),
    Except(Vec<String>),
}

/// What a table-level archive holds, as its manifest lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    /// The tables kept, with their indexes and triggers.
    pub tables: Vec<String>,
    /// Views and triggers left out because they use a table left out (`view v`,
    /// `trigger t`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

/// An identifier quoted for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn sqlite(action: &'static str, path: &Path) -> impl Fn(rusqlite::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Sqlite {
        action,
        path: path.clone(),
        source,
    }
}

/// The tables of `schema` a backup chooses among, in schema order: ordinary and virtual
/// ones (a virtual table's shadow tables go with it), not SQLite's own.
fn tables_of(conn: &Connection, schema: &str) -> rusqlite::Result<Vec<(String, bool)>> {
    // `schema` is one of ours (main, archived), never a client's text.
    let mut list = conn.prepare(&format!(
        "SELECT name, type = 'virtual' FROM pragma_table_list WHERE schema = ?1 AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY (SELECT rowid FROM {schema}.sqlite_schema AS s WHERE s.name = pragma_table_list.name)"
    ))?;
    let rows = list.query_map([schema], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

/// `names` as the database spells them; a name it does not have is refused, listing the
/// ones it has.
fn resolve(
    names: &[String],
    tables: &[(String, bool)],
    database: &str,
) -> Result<Vec<String>, BackupError> {
    names
        .iter()
        .map(|name| {
            tables
                .iter()
                .find(|(t, _)| t.eq_ignore_ascii_case(name))
                .map(|(t, _)| t.clone())
                .ok_or_else(|| BackupError::NoSuchTable {
                    table: name.clone(),
                    database: database.to_owned(),
                    has: tables
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// The tables `table` refers to by foreign key.
fn referenced(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut list =
        conn.prepare("SELECT DISTINCT \"table\" FROM pragma_foreign_key_list(?1, ?2)")?;
    let rows = list.query_map([table, schema], |r| r.get(0))?;
    rows.collect()
}

/// The tables of the database open on `conn` that `filter` keeps, in schema order; a
/// name it does not have is refused, and so is a kept table whose foreign key needs a
/// table left out, as CockroachDB refuses it. Checked before a job starts, and again on
/// its snapshot.
pub fn kept(
    conn: &Connection,
    filter: &TableFilter,
    database: &str,
    shown: &Path,
) -> Result<Vec<String>, BackupError> {
    let err = sqlite("choosing the tables of", shown);
    let all = tables_of(conn, "main").map_err(&err)?;
    let kept: Vec<String> = match filter {
        TableFilter::Only(names) => {
            let chosen = resolve(names, &all, database)?;
            all.iter()
                .map(|(t, _)| t)
                .filter(|t| chosen.contains(t))
                .cloned()
                .collect()
        }
        TableFilter::Except(names) => {
            let left = resolve(names, &all, database)?;
            all.iter()
                .map(|(t, _)| t)
                .filter(|t| !left.contains(t))
                .cloned()
                .collect()
        }
    };
    if kept.is_empty() {
        return Err(BackupError::InvalidOption(format!(
            "no table of database {database} is left to back up"
        )));
    }
    let is_kept = |name: &str| kept.iter().any(|k| k.eq_ignore_ascii_case(name));
    for table in &kept {
        for needed in referenced(conn, "main", table).map_err(&err)? {
            if !is_kept(&needed) {
                return Err(BackupError::TableDependency(format!(
                    "table {table} has a foreign key to {needed}, which this backup leaves out; add {needed} to the tables (a restored {table} could not be written without it)"
                )));
            }
        }
    }
    Ok(kept)
}

/// Cuts the snapshot's copy at `copy` down to the tables `filter` keeps ([`kept`]): the
/// others go with their indexes and triggers, so do views and triggers that use them
/// (listed), and the file is vacuumed.
pub fn keep_only(
    copy: &Path,
    filter: &TableFilter,
    database: &str,
) -> Result<Selection, BackupError> {
    let conn = Connection::open(copy).map_err(sqlite("opening the snapshot", copy))?;
    let err = sqlite("choosing the tables of the snapshot", copy);
    let kept = kept(&conn, filter, database, copy)?;
    let all = tables_of(&conn, "main").map_err(&err)?;
    let is_kept = |name: &str| kept.iter().any(|k| k.eq_ignore_ascii_case(name));
    let mut left_out = Vec::new();
    // No kept table needs a dropped one (checked above); a dropped parent of a dropped
    // child must go without its keys checked.
    conn.execute_batch("PRAGMA foreign_keys = OFF; BEGIN")
        .map_err(&err)?;
    for (table, _) in all.iter().filter(|(t, _)| !is_kept(t)) {
        conn.execute_batch(&format!("DROP TABLE {}", quoted(table)))
            .map_err(&err)?;
    }
    for own in ["sqlite_sequence", "sqlite_stat1", "sqlite_stat4"] {
        let exists: Option<i64> = conn
            .query_row(
                "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [own],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?;
        if exists.is_some() {
            let column = if own == "sqlite_sequence" {
                "name"
            } else {
                "tbl"
            };
            let mut statement = conn
                .prepare(&format!("SELECT DISTINCT {column} FROM {own}"))
                .map_err(&err)?;
            let named: Vec<String> = statement
                .query_map([], |r| r.get(0))
                .and_then(|rows| rows.collect())
                .map_err(&err)?;
            drop(statement);
            for name in named.iter().filter(|n| !is_kept(n)) {
                conn.execute(&format!("DELETE FROM {own} WHERE {column} = ?1"), [name])
                    .map_err(&err)?;
            }
        }
    }
    // SQLite re-reads every view and trigger when a table is renamed, and names the first
    // that uses a table that is gone: the test is made in a savepoint and rolled back.
    if let Some((probe, _)) = all
        .iter()
        .find(|(t, virtual_table)| is_kept(t) && !virtual_table)
    {
        for _ in 0..10_000 {
            conn.execute_batch("SAVEPOINT probe").map_err(&err)?;
            let renamed = conn.execute_batch(&format!(
                "ALTER TABLE {} RENAME TO {}",
                quoted(probe),
                quoted("cairn rename probe")
            ));
            conn.execute_batch("ROLLBACK TO probe; RELEASE probe")
                .map_err(&err)?;
            let Err(e) = renamed else { break };
            let message = e.to_string();
            let broken = ["view", "trigger"].iter().find_map(|kind| {
                let name = message
                    .strip_prefix(&format!("error in {kind} "))?
                    .split_once(':')?
                    .0;
                Some((*kind, name.to_owned()))
            });
            let Some((kind, name)) = broken else {
                return Err(err(e));
            };
            conn.execute_batch(&format!("DROP {kind} {}", quoted(&name)))
                .map_err(&err)?;
            left_out.push(format!("{kind} {name}"));
        }
    }
    conn.execute_batch("COMMIT; VACUUM").map_err(&err)?;
    Ok(Selection {
        tables: kept,
        left_out,
    })
}

/// Copies `tables` (all it holds when empty) from the database attached as `archived` on
/// `target` into `target`'s own, in one transaction: each table as it was created, its
/// rows, its AUTOINCREMENT counter, its indexes and its triggers. A table `target` already
/// has is refused (nothing is copied), as is one whose foreign key needs a table neither
/// copied nor there. Returns each table with its rows.
pub fn copy_into(
    target: &Connection,
    tables: &[String],
    archived_database: &str,
    into: &str,
    shown: &Path,
) -> Result<Vec<(String, u64)>, BackupError> {
    let err = sqlite("restoring tables", shown);
    let archived = tables_of(target, "archived").map_err(&err)?;
    // In the archive's order, which is creation order: a parent comes before a child, and
    // SQLite checks a key only against a table that exists.
    let named = resolve(tables, &archived, archived_database)?;
    let chosen: Vec<String> = archived
        .iter()
        .map(|(t, _)| t)
        .filter(|t| tables.is_empty() || named.contains(t))
        .cloned()
        .collect();
    let present = tables_of(target, "main").map_err(&err)?;
    for table in &chosen {
        if present.iter().any(|(t, _)| t.eq_ignore_ascii_case(table)) {
            return Err(BackupError::TableExists {
                table: table.clone(),
                database: into.to_owned(),
            });
        }
        for needed in referenced(target, "archived", table).map_err(&err)? {
            let restored = chosen.iter().any(|t| t.eq_ignore_ascii_case(&needed));
            let there = present.iter().any(|(t, _)| t.eq_ignore_ascii_case(&needed));
            if !restored && !there {
                return Err(BackupError::TableDependency(format!(
                    "table {table} has a foreign key to {needed}, which database {into} does not have; restore {needed} with it"
                )));
            }
        }
    }
    let schema_sql = |kind: &str, table: &str| -> rusqlite::Result<Vec<String>> {
        let mut list = target.prepare(
            "SELECT sql FROM archived.sqlite_schema WHERE type = ?1 AND tbl_name = ?2 AND sql IS NOT NULL ORDER BY rowid",
        )?;
        let rows = list.query_map([kind, table], |r| r.get(0))?;
        rows.collect()
    };
    let has_sequence = |schema: &str| -> rusqlite::Result<bool> {
        target
            .query_row(
                &format!(
                    "SELECT count(*) FROM {schema}.sqlite_schema WHERE name = 'sqlite_sequence'"
                ),
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)
    };
    let mut copied = Vec::new();
    // Parents and children in any order: their keys are checked at the commit.
    target
        .execute_batch("BEGIN IMMEDIATE; PRAGMA defer_foreign_keys = ON")
        .map_err(&err)?;
    let result = (|| -> rusqlite::Result<()> {
        for table in &chosen {
            for create in schema_sql("table", table)? {
                target.execute_batch(&create)?;
            }
            // Stored columns only: generated ones are computed again.
            let columns: Vec<String> = {
                let mut list = target.prepare(
                    "SELECT name FROM pragma_table_xinfo(?1, 'archived') WHERE hidden = 0",
                )?;
                let rows = list.query_map([table], |r| r.get::<_, String>(0))?;
                rows.map(|c| c.map(|c| quoted(&c)))
                    .collect::<rusqlite::Result<_>>()?
            };
            let columns = columns.join(", ");
            let rows = target.execute(
                &format!(
                    "INSERT INTO main.{t} ({columns}) SELECT {columns} FROM archived.{t}",
                    t = quoted(table)
                ),
                [],
            )?;
            // The counter as archived (the rows copied set it to their largest rowid).
            if has_sequence("archived")? && has_sequence("main")? {
                target.execute("DELETE FROM main.sqlite_sequence WHERE name = ?1", [table])?;
                target.execute(
                    "INSERT INTO main.sqlite_sequence (name, seq) SELECT name, seq FROM archived.sqlite_sequence WHERE name = ?1",
                    [table],
                )?;
            }
            for index in schema_sql("index", table)? {
                target.execute_batch(&index)?;
            }
            for trigger in schema_sql("trigger", table)? {
                target.execute_batch(&trigger)?;
            }
            copied.push((table.clone(), rows as u64));
        }
        Ok(())
    })();
    match result {
        Ok(()) => target.execute_batch("COMMIT").map_err(&err)?,
        Err(e) => {
            let _ = target.execute_batch("ROLLBACK");
            return Err(err(e));
        }
    }
    Ok(copied)
}
