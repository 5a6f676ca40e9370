//! SQL-level cursors (`DECLARE`, `FETCH`, `MOVE`, `CLOSE`): a cursor's query runs once, at
//! DECLARE, into a temporary table of the session (on disk past the page cache, within
//! `[server] temp_storage_limit`), and each FETCH streams the next rows of it to the client
//! with the query's own column types. A cursor `WITHOUT HOLD` (the default) ends with its
//! transaction, as in PostgreSQL; one `WITH HOLD` lasts until CLOSE or the session's end. A
//! rollback (to a savepoint too) that takes a cursor's table back takes the cursor back.

use rusqlite::types::Value;

use super::facts::Facts;
use super::output::Output;
use super::{Column, Executed, Session, aborted_transaction};
use crate::sql::cursor_statement::{Count, CursorStatement};
use crate::sql::lexer::{self, Spanned, Token};
use crate::sqlstate::{self, SqlError};

/// One open cursor.
#[derive(Debug)]
pub(super) struct Cursor {
    /// Its rows, in the session's temporary database, numbered by `cairn_position`.
    table: String,
    /// As the query described them.
    columns: Vec<Column>,
    /// Rows fetched or moved over so far, and in all.
    read: u64,
    total: u64,
    hold: bool,
}

impl Session {
    /// Runs a statement on cursors; `text` is the statement's, `params` its parameters.
    pub(super) fn run_cursor(
        &mut self,
        statement: &CursorStatement,
        text: &str,
        params: &[Value],
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        if self.failed_transaction {
            return Err(aborted_transaction());
        }
        let was_autocommit = self.conn.is_autocommit();
        let result = self.run_cursor_statement(statement, text, params, out);
        // As in PostgreSQL, an error inside a transaction fails it (an unknown cursor too).
        if result.is_err() && (!was_autocommit || !self.conn.is_autocommit()) {
            self.failed_transaction = true;
        }
        result
    }

    fn run_cursor_statement(
        &mut self,
        statement: &CursorStatement,
        text: &str,
        params: &[Value],
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        match statement {
            CursorStatement::Unsupported(why) => {
                Err(SqlError::new(sqlstate::FEATURE_NOT_SUPPORTED, why.clone()))
            }
            CursorStatement::Declare {
                name,
                hold,
                query_at,
            } => {
                let query = text.get(*query_at..).unwrap_or_default();
                self.declare(name, *hold, query, params)
            }
            CursorStatement::Fetch {
                name,
                count,
                moving,
            } => self.fetch(name, *count, *moving, out),
            CursorStatement::Close { name } => {
                if !self.is_open(name) {
                    return Err(no_such_cursor(name));
                }
                if let Some(cursor) = self.cursors.remove(name) {
                    self.drop_later(cursor);
                }
                Ok(Executed::command("CLOSE CURSOR", None))
            }
        }
    }

    fn declare(
        &mut self,
        name: &str,
        hold: bool,
        query: &str,
        params: &[Value],
    ) -> Result<Executed, SqlError> {
        if !hold && self.conn.is_autocommit() {
            return Err(SqlError::new(
                sqlstate::NO_ACTIVE_SQL_TRANSACTION,
                "DECLARE CURSOR can only be used in transaction blocks: BEGIN first, or declare it WITH HOLD".into(),
            ));
        }
        if self.is_open(name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists; CLOSE it first"),
            ));
        }
        let tokens = lexer::tokenize(query)
            .map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
        if !is_query(&tokens) {
            return Err(not_a_query());
        }
        let Some(columns) = self.prepare(query)?.columns else {
            return Err(not_a_query());
        };
        let facts = Facts::of(&tokens);
        if facts.reads_catalogs {
            self.prepare_catalogs(facts.reads_settings)?;
        }
        let sql = self.sqlite_text(query, &tokens)?.into_owned();
        self.cursors_made += 1;
        let table = format!("cairn_cursor_{}", self.cursors_made);
        // A position column of its own, which no column of the query can hide (a `rowid`
        // could), and columns without a type, which keep each value as the query made it.
        let slots: Vec<String> = (1..=columns.len()).map(|i| format!("c{i}")).collect();
        let create = format!(
            "CREATE TEMP TABLE \"{table}\"(cairn_position INTEGER PRIMARY KEY, {})",
            slots.join(", ")
        );
        let fill = format!("INSERT INTO temp.\"{table}\"({}) {sql}", slots.join(", "));
        let declared_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let total = self.on_temp_only(|conn| -> Result<usize, SqlError> {
            conn.execute_batch(&create).map_err(|e| self.sql_error(e))?;
            let mut insert = conn.prepare(&fill).map_err(|e| self.sql_error(e))?;
            super::bind(&mut insert, &facts, params)?;
            let total = insert.raw_execute().map_err(|e| self.sql_error(e))?;
            // Listed in pg_cursors (psycopg looks there before it closes a cursor).
            conn.execute_batch(crate::pgcompat::catalogs::CURSORS)
                .and_then(|()| {
                    conn.execute(
                        "INSERT INTO temp.pg_cursors VALUES (?1, ?2, ?3, 0, 0, ?4)",
                        rusqlite::params![name, query, hold, declared_at],
                    )
                })
                .map_err(|e| self.sql_error(e))?;
            Ok(total)
        })?;
        self.cursors.insert(
            name.to_owned(),
            Cursor {
                table,
                columns,
                read: 0,
                total: total as u64,
                hold,
            },
        );
        Ok(Executed::command("DECLARE CURSOR", None))
    }

    fn fetch(
        &mut self,
        name: &str,
        count: Count,
        moving: bool,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        if !self.is_open(name) {
            return Err(no_such_cursor(name));
        }
        let Some(cursor) = self.cursors.get_mut(name) else {
            return Err(no_such_cursor(name));
        };
        let left = cursor.total - cursor.read;
        let taken = match count {
            Count::All => left,
            Count::Rows(n) => n.min(left),
        };
        let from = cursor.read;
        // The cursor moves by what it takes before its rows go out, as PostgreSQL's does: a
        // FETCH whose reader stops early does not give those rows again.
        cursor.read += taken;
        if moving {
            return Ok(Executed::command("MOVE", Some(taken as usize)));
        }
        let slots: Vec<String> = (1..=cursor.columns.len())
            .map(|i| format!("c{i}"))
            .collect();
        let rows = format!(
            "SELECT {} FROM temp.\"{}\" WHERE cairn_position > ?1 ORDER BY cairn_position LIMIT ?2",
            slots.join(", "),
            cursor.table
        );
        let columns = cursor.columns.clone();
        let tokens = lexer::tokenize(&rows)
            .map_err(|e| SqlError::new(sqlstate::INTERNAL_ERROR, e.to_string()))?;
        let mut facts = Facts::of(&tokens);
        facts.command = "FETCH".into();
        facts.column_names = None;
        let bounds = [Value::Integer(from as i64), Value::Integer(taken as i64)];
        self.run_sqlite(&rows, &facts, &bounds, Some(&columns), out)
    }

    /// The described columns of `FETCH … name`, if the cursor is open.
    pub fn cursor_columns(&self, name: &str) -> Option<Vec<Column>> {
        self.cursors.get(name).map(|c| c.columns.clone())
    }

    /// Whether the cursor `name` is open: a rollback to a savepoint may have taken its table
    /// back, and with it the cursor, which is then forgotten.
    fn is_open(&mut self, name: &str) -> bool {
        let Some(cursor) = self.cursors.get(name) else {
            return false;
        };
        if self.cursor_table_exists(cursor) {
            return true;
        }
        self.cursors.remove(name);
        false
    }

    /// `CLOSE ALL`, `DISCARD ALL`.
    pub(super) fn close_all_cursors(&mut self) {
        for (_, cursor) in std::mem::take(&mut self.cursors) {
            self.drop_later(cursor);
        }
    }

    /// After each statement: once no transaction is open, the cursors WITHOUT HOLD are gone,
    /// and so are those a rollback took back (their table with it); the tables of closed
    /// cursors are dropped then, so that a rollback cannot bring one back unowned.
    pub(super) fn cursors_after_statement(&mut self) {
        if (self.cursors.is_empty() && self.closed_cursors.is_empty()) || !self.conn.is_autocommit()
        {
            return;
        }
        let ended: Vec<String> = self
            .cursors
            .iter()
            .filter(|(_, c)| !c.hold || !self.cursor_table_exists(c))
            .map(|(name, _)| name.clone())
            .collect();
        for name in ended {
            if let Some(cursor) = self.cursors.remove(&name) {
                self.closed_cursors.push(cursor.table);
            }
        }
        if !self.closed_cursors.is_empty() {
            self.unlist_cursors();
        }
        for table in std::mem::take(&mut self.closed_cursors) {
            let drop = format!("DROP TABLE IF EXISTS temp.\"{table}\"");
            if let Err(e) = self.on_temp_only(|conn| conn.execute_batch(&drop)) {
                tracing::debug!(%table, error = %e, "a closed cursor's rows were not dropped; they go with the session");
            }
        }
    }

    /// A closed cursor's table goes once no transaction is open (see above); its row of
    /// pg_cursors goes now.
    fn drop_later(&mut self, cursor: Cursor) {
        self.closed_cursors.push(cursor.table);
        self.unlist_cursors();
    }

    /// pg_cursors lists the open cursors only.
    fn unlist_cursors(&self) {
        let open: Vec<&str> = self.cursors.keys().map(String::as_str).collect();
        let open = serde_json::to_string(&open).unwrap_or_else(|_| "[]".into());
        let _ = self.on_temp_only(|conn| {
            conn.execute(
                "DELETE FROM temp.pg_cursors WHERE name NOT IN (SELECT value FROM json_each(?1))",
                [open],
            )
        });
    }

    /// Whether its table is there; when that cannot be read, it is taken to be.
    fn cursor_table_exists(&self, cursor: &Cursor) -> bool {
        self.conn
            .prepare_cached("SELECT count(*) FROM temp.sqlite_schema WHERE name = ?1")
            .and_then(|mut stmt| stmt.query_row([&cursor.table], |r| r.get::<_, i64>(0)))
            .map_or(true, |n| n > 0)
    }
}

/// A DECLARE's query must be one: SELECT, VALUES, WITH … or a parenthesized one.
fn is_query(tokens: &[Spanned<'_>]) -> bool {
    tokens.first().is_some_and(|t| {
        ["select", "values", "with"]
            .iter()
            .any(|k| t.token.is_keyword(k))
            || t.token == Token::Punct("(")
    })
}

/// The inner query of a DECLARE being prepared, or the refusal: one that is not a query
/// (another DECLARE, say, which would be prepared again and again) is refused at once.
pub(super) fn declared_query(text: &str, query_at: usize) -> Result<&str, SqlError> {
    let query = text.get(query_at..).unwrap_or_default();
    match lexer::tokenize(query) {
        Ok(tokens) if is_query(&tokens) => Ok(query),
        _ => Err(not_a_query()),
    }
}

fn not_a_query() -> SqlError {
    SqlError::new(
        sqlstate::INVALID_CURSOR_DEFINITION,
        "DECLARE CURSOR takes a query: SELECT, VALUES or WITH … SELECT".into(),
    )
}

fn no_such_cursor(name: &str) -> SqlError {
    SqlError::new(
        sqlstate::INVALID_CURSOR_NAME,
        format!(
            "cursor \"{name}\" does not exist (a cursor WITHOUT HOLD ends with its transaction, and a rollback takes back the cursors it declared)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::session;
    use super::*;

    fn ok(results: Vec<Result<Executed, SqlError>>) -> Vec<Executed> {
        results.into_iter().map(|r| r.unwrap()).collect()
    }
    use crate::roles::Role;

    fn values(executed: &Executed) -> Vec<i64> {
        executed
            .rows
            .iter()
            .map(|r| match r[0] {
                Value::Integer(i) => i,
                ref other => panic!("{other:?}"),
            })
            .collect()
    }

    /// `DECLARE … CURSOR` and `FETCH` were SQLite syntax errors (psycopg's named cursors,
    /// Django's `.iterator()`). A cursor reads forward, ends with its transaction unless
    /// declared WITH HOLD, is taken back by a rollback, and goes with DISCARD ALL.
    #[test]
    fn declare_and_fetch_were_syntax_errors() {
        let (_dir, mut s) = session(Role::Readonly);
        let results = s.execute_query(
            "BEGIN; DECLARE c CURSOR FOR WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 7) SELECT x FROM n; FETCH 3 FROM c; MOVE 2 IN c; FETCH ALL FROM c; FETCH c",
        );
        let done: Vec<Executed> = results.into_iter().map(|r| r.unwrap()).collect();
        assert_eq!(done[1].tag.command, "DECLARE CURSOR");
        assert_eq!(values(&done[2]), vec![1, 2, 3]);
        assert_eq!(
            (done[2].tag.command.as_str(), done[2].tag.rows),
            ("FETCH", Some(3))
        );
        assert_eq!(
            (done[3].tag.command.as_str(), done[3].tag.rows),
            ("MOVE", Some(2))
        );
        assert_eq!(values(&done[4]), vec![6, 7]);
        assert!(values(&done[5]).is_empty());
        s.execute_query("COMMIT").pop().unwrap().unwrap();
        let gone = s.execute_query("FETCH c").pop().unwrap().unwrap_err();
        assert_eq!(gone.code, sqlstate::INVALID_CURSOR_NAME);

        // WITH HOLD outlives its commit, not a rollback.
        s.execute_query("BEGIN; DECLARE h CURSOR WITH HOLD FOR SELECT 42; COMMIT");
        let held = s.execute_query("FETCH h").pop().unwrap().unwrap();
        assert_eq!(values(&held), vec![42]);
        let code =
            |s: &mut Session, sql: &str| s.execute_query(sql).pop().unwrap().unwrap_err().code;
        ok(s.execute_query("BEGIN; DECLARE r CURSOR WITH HOLD FOR SELECT 1; ROLLBACK"));
        assert_eq!(code(&mut s, "FETCH r"), sqlstate::INVALID_CURSOR_NAME);
        ok(s.execute_query("DISCARD ALL"));
        assert_eq!(code(&mut s, "FETCH h"), sqlstate::INVALID_CURSOR_NAME);

        // A rollback to a savepoint takes back the cursor declared after it, which may be
        // declared again; a CLOSE that a rollback undoes leaves no table behind.
        ok(s.execute_query(
            "BEGIN; SAVEPOINT a; DECLARE v CURSOR FOR SELECT 1; ROLLBACK TO a; DECLARE v CURSOR FOR SELECT 2",
        ));
        assert_eq!(values(&ok(s.execute_query("FETCH v")).remove(0)), vec![2]);
        ok(s.execute_query("ROLLBACK"));
        ok(s.execute_query("BEGIN; DECLARE w CURSOR WITH HOLD FOR SELECT 3; COMMIT"));
        ok(s.execute_query("BEGIN; CLOSE w; ROLLBACK"));
        assert_eq!(code(&mut s, "FETCH w"), sqlstate::INVALID_CURSOR_NAME);
        let left: i64 = s
            .conn
            .query_row(
                "SELECT count(*) FROM temp.sqlite_schema WHERE name LIKE 'cairn_cursor_%'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(left, 0, "tables of closed cursors");

        // A column named rowid neither hides the order nor repeats rows.
        ok(s.execute_query(
            "BEGIN; DECLARE q CURSOR FOR SELECT 9 AS rowid UNION ALL SELECT 8; FETCH 1 FROM q",
        ));
        assert_eq!(
            values(&ok(s.execute_query("FETCH ALL FROM q")).remove(0)),
            vec![8]
        );
        assert!(values(&ok(s.execute_query("FETCH q")).remove(0)).is_empty());
        ok(s.execute_query("COMMIT"));

        // In one query string, PostgreSQL's implicit transaction holds the cursor, and ends it.
        let done = ok(s.execute_query(
            "DECLARE m CURSOR FOR SELECT 5 UNION ALL SELECT 6; FETCH 1 FROM m; FETCH 1 FROM m",
        ));
        assert_eq!((values(&done[1]), values(&done[2])), (vec![5], vec![6]));
        assert_eq!(code(&mut s, "FETCH m"), sqlstate::INVALID_CURSOR_NAME);

        // Outside a transaction, without HOLD: refused, as in PostgreSQL.
        let refused = s
            .execute_query("DECLARE o CURSOR FOR SELECT 1")
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code, sqlstate::NO_ACTIVE_SQL_TRANSACTION);
        // A failed DECLARE fails its transaction.
        s.execute_query("BEGIN").pop().unwrap().unwrap();
        assert_eq!(
            code(&mut s, "DECLARE d CURSOR FOR SELECT * FROM nowhere"),
            sqlstate::UNDEFINED_TABLE
        );
        assert_eq!(
            code(&mut s, "SELECT 1"),
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
        ok(s.execute_query("ROLLBACK"));
        // So does a FETCH of a cursor that is not there.
        ok(s.execute_query("BEGIN"));
        assert_eq!(code(&mut s, "FETCH nothing"), sqlstate::INVALID_CURSOR_NAME);
        assert_eq!(
            code(&mut s, "SELECT 1"),
            sqlstate::IN_FAILED_SQL_TRANSACTION
        );
    }

    /// A DECLARE prepared with its query's parameters binds them by number, and a DECLARE
    /// of a DECLARE is refused at once (it was prepared again for each, until the stack gave
    /// out).
    #[test]
    fn a_prepared_declare_bound_its_parameters_by_position() {
        let (_dir, mut s) = session(Role::Readonly);
        ok(s.execute_query("BEGIN"));
        let prepared = s
            .prepare("DECLARE p CURSOR FOR SELECT $2 - $1 AS d")
            .unwrap();
        assert_eq!(prepared.param_types.len(), 2);
        s.execute_prepared(&prepared, &[Value::Integer(1), Value::Integer(10)])
            .unwrap();
        assert_eq!(values(&ok(s.execute_query("FETCH p")).remove(0)), vec![9]);
        let nested = format!("{}SELECT 1", "DECLARE a CURSOR FOR ".repeat(20_000));
        assert_eq!(
            s.prepare(&nested).unwrap_err().code,
            sqlstate::INVALID_CURSOR_DEFINITION
        );
    }
}
