//! SQL-level cursors (`DECLARE`, `FETCH`, `MOVE`, `CLOSE`): a cursor's query runs once, at
//! DECLARE, into a temporary table of the session (on disk past the page cache, within
//! `[server] temp_storage_limit`), and each FETCH streams the next rows of it to the client
//! with the query's own column types. A cursor `WITHOUT HOLD` (the default) ends with its
//! transaction, as in PostgreSQL; one `WITH HOLD` lasts until CLOSE or the session's end.

use rusqlite::types::Value;

use super::facts::Facts;
use super::output::Output;
use super::{Column, Executed, Session, aborted_transaction};
use crate::sql::cursor_statement::{Count, CursorStatement};
use crate::sql::lexer;
use crate::sqlstate::{self, SqlError};

/// One open cursor.
#[derive(Debug)]
pub(super) struct Cursor {
    /// Its rows, in the session's temporary database.
    table: String,
    /// As the query described them.
    pub columns: Vec<Column>,
    /// Rows fetched or moved over so far.
    read: u64,
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
                let declared = self.declare(name, *hold, query, params);
                if declared.is_err() && !self.conn.is_autocommit() {
                    self.failed_transaction = true;
                }
                declared
            }
            CursorStatement::Fetch {
                name,
                count,
                moving,
            } => self.fetch(name, *count, *moving, out),
            CursorStatement::Close { name } => match self.cursors.remove(name) {
                Some(cursor) => {
                    self.drop_cursor_table(&cursor);
                    Ok(Executed::command("CLOSE CURSOR", None))
                }
                None => Err(no_such_cursor(name)),
            },
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
        if self.cursors.contains_key(name) {
            return Err(SqlError::new(
                sqlstate::DUPLICATE_CURSOR,
                format!("cursor \"{name}\" already exists; CLOSE it first"),
            ));
        }
        let tokens = lexer::tokenize(query)
            .map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
        let is_query = tokens.first().is_some_and(|t| {
            ["select", "values", "with"]
                .iter()
                .any(|k| t.token.is_keyword(k))
                || t.token == lexer::Token::Punct("(")
        });
        let described = if is_query {
            self.prepare(query)?.columns
        } else {
            None
        };
        let Some(columns) = described else {
            return Err(SqlError::new(
                sqlstate::INVALID_CURSOR_DEFINITION,
                "DECLARE CURSOR takes a query: SELECT, VALUES or WITH … SELECT".into(),
            ));
        };
        let facts = Facts::of(&tokens);
        if facts.reads_catalogs {
            self.prepare_catalogs(facts.reads_settings)?;
        }
        let sql = self.sqlite_text(query, &tokens)?.into_owned();
        self.cursors_made += 1;
        let table = format!("cairn_cursor_{}", self.cursors_made);
        let create = format!("CREATE TEMP TABLE \"{table}\" AS {sql}");
        self.on_temp_only(|conn| conn.execute(&create, rusqlite::params_from_iter(params)))
            .map_err(|e| self.sql_error(e))?;
        self.cursors.insert(
            name.to_owned(),
            Cursor {
                table,
                columns,
                read: 0,
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
        let Some(cursor) = self.cursors.get(name) else {
            return Err(no_such_cursor(name));
        };
        let limit = match count {
            Count::All => -1,
            Count::Rows(n) => i64::try_from(n).unwrap_or(i64::MAX),
        };
        let rows = format!(
            "SELECT * FROM temp.\"{}\" WHERE rowid > {} ORDER BY rowid LIMIT {limit}",
            cursor.table, cursor.read
        );
        let executed = if moving {
            let counted: i64 = self
                .conn
                .query_row(&format!("SELECT count(*) FROM ({rows})"), [], |r| r.get(0))
                .map_err(|e| self.sql_error(e))?;
            Executed::command("MOVE", Some(counted.max(0) as usize))
        } else {
            let columns = cursor.columns.clone();
            let tokens = lexer::tokenize(&rows)
                .map_err(|e| SqlError::new(sqlstate::INTERNAL_ERROR, e.to_string()))?;
            let mut facts = Facts::of(&tokens);
            facts.command = "FETCH".into();
            facts.column_names = None;
            self.run_sqlite(&rows, &facts, &[], Some(&columns), out)?
        };
        if let Some(cursor) = self.cursors.get_mut(name) {
            cursor.read += executed.tag.rows.unwrap_or(0) as u64;
        }
        Ok(executed)
    }

    /// The described columns of `FETCH … name`, if the cursor is open.
    pub fn cursor_columns(&self, name: &str) -> Option<Vec<Column>> {
        self.cursors.get(name).map(|c| c.columns.clone())
    }

    /// `CLOSE ALL`, `DISCARD ALL`.
    pub(super) fn close_all_cursors(&mut self) {
        for (_, cursor) in std::mem::take(&mut self.cursors) {
            self.drop_cursor_table(&cursor);
        }
    }

    /// After each statement: once no transaction is open, the cursors WITHOUT HOLD are gone,
    /// and so are those a rollback took back (their table with it).
    pub(super) fn cursors_after_statement(&mut self) {
        if self.cursors.is_empty() || !self.conn.is_autocommit() {
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
                self.drop_cursor_table(&cursor);
            }
        }
    }

    fn cursor_table_exists(&self, cursor: &Cursor) -> bool {
        self.conn
            .query_row(
                "SELECT count(*) FROM temp.sqlite_schema WHERE name = ?1",
                [&cursor.table],
                |r| r.get::<_, i64>(0),
            )
            .is_ok_and(|n| n > 0)
    }

    fn drop_cursor_table(&self, cursor: &Cursor) {
        let drop = format!("DROP TABLE IF EXISTS temp.\"{}\"", cursor.table);
        if let Err(e) = self.on_temp_only(|conn| conn.execute_batch(&drop)) {
            tracing::debug!(table = %cursor.table, error = %e, "a closed cursor's rows were not dropped; they go with the session");
        }
    }
}

fn no_such_cursor(name: &str) -> SqlError {
    SqlError::new(
        sqlstate::INVALID_CURSOR_NAME,
        format!(
            "cursor \"{name}\" does not exist (a cursor WITHOUT HOLD ends with its transaction)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::session;
    use super::*;
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
        s.execute_query("BEGIN; DECLARE r CURSOR WITH HOLD FOR SELECT 1; ROLLBACK");
        assert!(s.execute_query("FETCH r").pop().unwrap().is_err());
        s.execute_query("DISCARD ALL").pop().unwrap().unwrap();
        assert!(s.execute_query("FETCH h").pop().unwrap().is_err());

        // Outside a transaction, without HOLD: refused, as in PostgreSQL.
        let refused = s
            .execute_query("DECLARE o CURSOR FOR SELECT 1")
            .pop()
            .unwrap()
            .unwrap_err();
        assert_eq!(refused.code, sqlstate::NO_ACTIVE_SQL_TRANSACTION);
        // A failed DECLARE fails its transaction.
        s.execute_query("BEGIN").pop().unwrap().unwrap();
        assert!(
            s.execute_query("DECLARE d CURSOR FOR SELECT * FROM nowhere")
                .pop()
                .unwrap()
                .is_err()
        );
        let after = s.execute_query("SELECT 1").pop().unwrap().unwrap_err();
        assert_eq!(after.code, sqlstate::IN_FAILED_SQL_TRANSACTION);
    }
}
