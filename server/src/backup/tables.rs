//! Table-level backups and restores: an archive that holds some of a database's tables
//! (Doris's `BACKUP SNAPSHOT … ON (…)`, CockroachDB's `BACKUP TABLE`), cut from the
//! snapshot's copy, and `RESTORE TABLE`, which copies tables out of an archive's database
//! into an existing one.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::error::BackupError;
use crate::export::writer::quote;

/// Which tables a backup keeps (`WITH (tables = […])` or `WITH (exclude_tables = […])`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableFilter {
    Only(Vec<String>),
    Except(Vec<String>),
}

/// What a table-level archive holds, as its manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// The tables kept, with their indexes and triggers.
    pub tables: Vec<String>,
    /// Views and triggers left out because they use a table left out (`view v`,
    /// `trigger t`).
    pub left_out: Vec<String>,
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
    // A key to a table the database does not have (SQLite allows one) leaves nothing out.
    let exists = |name: &str| all.iter().any(|(t, _)| t.eq_ignore_ascii_case(name));
    for table in &kept {
        let keys = referenced(conn, "main", table).map_err(&err)?;
        let keys = keys.into_iter().map(|t| (t, "has a foreign key to"));
        let content = content_table(conn, "main", table).map_err(&err)?;
        let content = content.into_iter().map(|t| (t, "indexes the content of"));
        for (needed, how) in keys.chain(content) {
            if exists(&needed) && !is_kept(&needed) {
                return Err(BackupError::TableDependency(format!(
                    "table {table} {how} {needed}, which this backup leaves out; add {needed} to the tables"
                )));
            }
        }
    }
    Ok(kept)
}

/// The table a virtual table (an FTS5 index) reads its content from: `content = 'x'`.
fn content_table(conn: &Connection, schema: &str, table: &str) -> rusqlite::Result<Option<String>> {
    Ok(content_option(conn, schema, table)?.filter(|name| !name.is_empty()))
}

/// A virtual table's `content = …` option as written (empty: a contentless FTS5 index).
fn content_option(
    conn: &Connection,
    schema: &str,
    table: &str,
) -> rusqlite::Result<Option<String>> {
    let sql: Option<String> = conn
        .query_row(
            &format!(
                "SELECT sql FROM {schema}.sqlite_schema WHERE type = 'table' AND name = ?1 AND sql LIKE 'CREATE VIRTUAL TABLE%'"
            ),
            [table],
            |r| r.get(0),
        )
        .optional()?;
    let Some(sql) = sql else { return Ok(None) };
    let Ok(tokens) = crate::sql::lexer::tokenize(&sql) else {
        return Ok(None);
    };
    let tokens: Vec<_> = tokens.into_iter().map(|t| t.token).collect();
    use crate::sql::lexer::Token;
    Ok(tokens.windows(3).find_map(|w| match w {
        [key, Token::Punct("="), value] if key.is_keyword("content") => match value {
            Token::Str(name) | Token::QuotedIdent(name) => Some(name.clone()),
            Token::Word(name) => Some((*name).to_owned()),
            _ => None,
        },
        _ => None,
    }))
}

/// Which view or trigger an error of SQLite's schema check names (`error in view v: …`),
/// matched against the names there are (a name may hold a colon).
fn broken_object(conn: &Connection, message: &str) -> rusqlite::Result<Option<(String, String)>> {
    let mut list = conn.prepare(
        "SELECT type, name FROM sqlite_schema WHERE type IN ('view', 'trigger') ORDER BY length(name) DESC",
    )?;
    let objects: Vec<(String, String)> = list
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(objects
        .into_iter()
        .find(|(kind, name)| message.starts_with(&format!("error in {kind} {name}:"))))
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
    // child must go without its keys checked. What is dropped is zeroed, not vacuumed away:
    // VACUUM would renumber the rowids of tables without an INTEGER PRIMARY KEY, and the
    // free pages of zeros cost next to nothing compressed.
    conn.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA secure_delete = ON; BEGIN")
        .map_err(&err)?;
    for (table, _) in all.iter().filter(|(t, _)| !is_kept(t)) {
        conn.execute_batch(&format!("DROP TABLE {}", quote(table)))
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
    // that uses a table that is gone: a scratch table is made and renamed in a savepoint,
    // rolled back, until the schema reads clean.
    let probe: String = conn
        .query_row(
            "SELECT 'cairn probe ' || (SELECT count(*) FROM sqlite_schema) || ' ' || hex(randomblob(8))",
            [],
            |r| r.get(0),
        )
        .map_err(&err)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(&err)?;
    let mut clean = false;
    for _ in 0..=objects {
        conn.execute_batch("SAVEPOINT probe").map_err(&err)?;
        let renamed = conn.execute_batch(&format!(
            "CREATE TABLE {a}(x); ALTER TABLE {a} RENAME TO {b}",
            a = quote(&probe),
            b = quote(&format!("{probe} renamed"))
        ));
        conn.execute_batch("ROLLBACK TO probe; RELEASE probe")
            .map_err(&err)?;
        let Err(e) = renamed else {
            clean = true;
            break;
        };
        let Some((kind, name)) = broken_object(&conn, &e.to_string()).map_err(&err)? else {
            return Err(err(e));
        };
        conn.execute_batch(&format!("DROP {kind} {}", quote(&name)))
            .map_err(&err)?;
        left_out.push(format!("{kind} {name}"));
    }
    if !clean {
        return Err(BackupError::TableDependency(format!(
            "the schema of database {database} still does not read without the tables left out after dropping {}",
            left_out.join(", ")
        )));
    }
    conn.execute_batch("COMMIT").map_err(&err)?;
    Ok(Selection {
        tables: kept,
        left_out,
    })
}

/// Refuses, before a restore starts, tables named for it that database `into` (open on
/// `conn`) already has.
pub fn refuse_present(conn: &Connection, tables: &[String], into: &str) -> Result<(), BackupError> {
    let present =
        tables_of(conn, "main").map_err(sqlite("reading the tables of", Path::new(into)))?;
    match tables
        .iter()
        .find(|t| present.iter().any(|(p, _)| p.eq_ignore_ascii_case(t)))
    {
        Some(table) => Err(BackupError::ObjectExists {
            kind: "table",
            name: table.clone(),
            database: into.to_owned(),
        }),
        None => Ok(()),
    }
}

/// Copies `tables` (all it holds when empty) from the database attached as `archived` on
/// `target` into `target`'s own, in one transaction: each table as it was created, its
/// rows with their rowids, its AUTOINCREMENT counter, its indexes and its triggers. A name
/// `target` already has (table, index or trigger) is refused (nothing is copied), as is a
/// table whose foreign key needs a table neither copied nor there, and a contentless FTS5
/// index (whose rows cannot be read back). Returns each table with its rows.
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
    let there = |name: &str| present.iter().any(|(t, _)| t.eq_ignore_ascii_case(name));
    let objects = |table: &str| -> rusqlite::Result<Vec<(String, String, String)>> {
        // A trigger's tbl_name is spelt as its ON clause was written.
        let mut list = target.prepare(
            "SELECT type, name, sql FROM archived.sqlite_schema WHERE type IN ('table', 'index', 'trigger') AND tbl_name = ?1 COLLATE NOCASE AND sql IS NOT NULL ORDER BY type = 'trigger', type = 'index', rowid",
        )?;
        let rows = list.query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    };
    let taken = |name: &str| -> rusqlite::Result<Option<String>> {
        target
            .query_row(
                "SELECT type FROM main.sqlite_schema WHERE name = ?1 COLLATE NOCASE",
                [name],
                |r| r.get(0),
            )
            .optional()
    };
    for table in &chosen {
        for (kind, name, _) in objects(table).map_err(&err)? {
            if let Some(existing) = taken(&name).map_err(&err)? {
                let kind = if existing == "table" {
                    "table"
                } else if kind == "index" {
                    "index"
                } else {
                    "trigger"
                };
                return Err(BackupError::ObjectExists {
                    kind,
                    name,
                    database: into.to_owned(),
                });
            }
        }
        for needed in referenced(target, "archived", table).map_err(&err)? {
            let restored = chosen.iter().any(|t| t.eq_ignore_ascii_case(&needed));
            if !restored && !there(&needed) {
                return Err(BackupError::TableDependency(format!(
                    "table {table} has a foreign key to {needed}, which database {into} does not have; restore {needed} with it"
                )));
            }
        }
        if content_option(target, "archived", table)
            .map_err(&err)?
            .is_some_and(|c| c.is_empty())
        {
            return Err(BackupError::TableDependency(format!(
                "table {table} is a contentless FTS5 index, whose rows cannot be read back; restore the archive as a database instead (RESTORE DATABASE … FROM …)"
            )));
        }
    }
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
            let objects = objects(table)?;
            for (_, _, create) in objects.iter().filter(|o| o.0 == "table") {
                target.execute_batch(create)?;
            }
            // Rowids too: an FTS5 index's are its documents' ids, and others' may be
            // referred to.
            let (rowid, stored) = crate::export::writer::stored_columns(target, "archived", table)?;
            let columns: Vec<String> = rowid.iter().chain(&stored).map(|c| quote(c)).collect();
            let columns = columns.join(", ");
            let rows = target.execute(
                &format!(
                    "INSERT INTO main.{t} ({columns}) SELECT {columns} FROM archived.{t}",
                    t = quote(table)
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
            // Indexes and triggers after the rows: the triggers must not fire on them.
            for (_, _, create) in objects.iter().filter(|o| o.0 != "table") {
                target.execute_batch(create)?;
            }
            copied.push((table.clone(), rows as u64));
        }
        target.execute_batch("COMMIT")
    })();
    if let Err(e) = result {
        let _ = target.execute_batch("ROLLBACK");
        return Err(err(e));
    }
    Ok(copied)
}
