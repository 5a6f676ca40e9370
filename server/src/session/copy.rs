//! `COPY … FROM STDIN` and `COPY … TO STDOUT`: rows in from the client's data as it arrives
//! (one transaction, all or nothing), rows out as SQLite steps them. The formats are
//! `pgcompat::copy`'s; the framing on the wire is the pg layer's.

use rusqlite::types::Value;

use super::output::{CopyData, CopyInput, Output, RowValues, Stopped};
use super::{Column, Executed, Session};
use crate::pgcompat::copy::{CopyError, CopyFormat, CopySource, CopyStatement, Decoder, Field};
use crate::pgcompat::quoted;
use crate::sql::lexer;
use crate::sql::types::{self, SqlType};
use crate::sqlstate::{self, SqlError};

impl Session {
    /// Runs a `COPY` (or says why `parse` refused it). `last`: it is its query string's
    /// last statement (a `COPY FROM STDIN` must be: the client's data follows the query).
    pub(super) fn copy(
        &mut self,
        parsed: Result<CopyStatement, CopyError>,
        last: bool,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        if self.failed_transaction {
            return self.in_failed_transaction(None);
        }
        let copied = match parsed {
            Err(e) => Err(SqlError::new(e.code, e.message)),
            Ok(copy) if !copy.from_client => self.copy_query_to_client(&copy, out),
            Ok(_) if !last => Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY … FROM STDIN must be the last statement of its query string: its data follows it".into(),
            )),
            Ok(copy) => self.copy_from_client(&copy, out),
        };
        // As any failed statement, it fails the transaction it is in (a COPY's own is rolled
        // back already); a reader that stopped fails nothing, as a closed portal does not.
        if let Err(e) = &copied
            && *e != super::stopped(Stopped)
            && !self.conn.is_autocommit()
        {
            self.failed_transaction = true;
        }
        copied
    }

    fn copy_query_to_client(
        &mut self,
        copy: &CopyStatement,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        let query = match &copy.source {
            CopySource::Query(query) => query.clone(),
            CopySource::Table { name, columns } => {
                let listed = if columns.is_empty() {
                    "*".to_owned()
                } else {
                    self.table_columns(name, columns)?
                        .iter()
                        .map(|(c, _)| quoted(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("SELECT {listed} FROM {}", quoted(name))
            }
        };
        let statements = lexer::split(&query)
            .map_err(|e| SqlError::new(sqlstate::SYNTAX_ERROR, e.to_string()))?;
        let [statement] = statements.as_slice() else {
            return Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                "COPY (query) TO STDOUT takes one query".into(),
            ));
        };
        let sql = self
            .sqlite_text(statement.text, &statement.tokens)?
            .into_owned();
        let returns_rows = self
            .conn
            .prepare_cached(&sql)
            .map(|stmt| stmt.column_count() > 0)
            .map_err(|e| self.sql_error(e))?;
        if !returns_rows {
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY (query) TO STDOUT needs a query that returns rows (a SELECT, or a write with RETURNING)".into(),
            ));
        }
        let facts = super::Facts::of(&statement.tokens);
        let mut rows = CopyOut {
            out,
            format: &copy.format,
        };
        let mut executed = self.run_sqlite(&sql, &facts, &[], None, &mut rows)?;
        executed.columns = None;
        executed.tag.command = "COPY".into();
        Ok(executed)
    }

    fn copy_from_client(
        &mut self,
        copy: &CopyStatement,
        out: &mut dyn Output,
    ) -> Result<Executed, SqlError> {
        let CopySource::Table { name, columns } = &copy.source else {
            return Err(SqlError::new(
                sqlstate::SYNTAX_ERROR,
                "COPY FROM needs a table".into(),
            ));
        };
        let columns = self.table_columns(name, columns)?;
        if self.catalog.disk().is_full() && !self.role.may_write_on_a_full_disk() {
            return Err(SqlError::new(
                sqlstate::DISK_FULL,
                self.catalog.disk().refusal(),
            ));
        }
        let insert = format!(
            "INSERT INTO {} ({}) VALUES ({})",
            quoted(name),
            columns
                .iter()
                .map(|(c, _)| quoted(c))
                .collect::<Vec<_>>()
                .join(", "),
            vec!["?"; columns.len()].join(", ")
        );
        // Prepared before the client is asked for data: a table it may not write is refused
        // at once, as PostgreSQL refuses it before CopyInResponse.
        self.conn
            .prepare_cached(&insert)
            .map_err(|e| self.sql_error(e))?;
        let own_transaction = self.conn.is_autocommit();
        if own_transaction {
            let begin = if self.role.may_write() {
                "BEGIN IMMEDIATE"
            } else {
                "BEGIN"
            };
            self.conn
                .execute_batch(begin)
                .map_err(|e| self.sql_error(e))?;
        }
        let Some(data) = out.copy_in(&copy.format, columns.len()) else {
            if own_transaction {
                let _ = self.conn.execute_batch("ROLLBACK");
            }
            return Err(SqlError::new(
                sqlstate::FEATURE_NOT_SUPPORTED,
                "COPY … FROM STDIN needs a client to send the data (it is not available here)"
                    .into(),
            ));
        };
        let copied = self.copy_rows(name, &insert, &columns, &copy.format, data);
        let ended = match (&copied, own_transaction) {
            (Ok(_), true) => self
                .conn
                .execute_batch("COMMIT")
                .map_err(|e| self.sql_error(e)),
            (Err(_), true) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Ok(())
            }
            // Inside a transaction a failed COPY fails it (see `copy`), and its only ways
            // out (ROLLBACK, or back to an earlier savepoint) undo the rows.
            (_, false) => Ok(()),
        };
        if ended.is_err() && own_transaction && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        ended?;
        Ok(Executed::command("COPY", Some(copied?)))
    }

    /// Inserts the rows of the client's data until its end: how many.
    fn copy_rows(
        &mut self,
        table: &str,
        insert: &str,
        columns: &[(String, Option<SqlType>)],
        format: &CopyFormat,
        data: &mut dyn CopyData,
    ) -> Result<usize, SqlError> {
        let mut decoder = Decoder::new(format.clone());
        let mut stmt = self
            .conn
            .prepare_cached(insert)
            .map_err(|e| self.sql_error(e))?;
        let context = |decoder: &Decoder, e: SqlError| SqlError {
            message: format!("{} (COPY {table}, line {})", e.message, decoder.line),
            ..e
        };
        let mut count = 0usize;
        let mut values = Vec::with_capacity(columns.len());
        loop {
            let last = match data.next() {
                CopyInput::Data(piece) => {
                    decoder.feed(&piece);
                    false
                }
                CopyInput::Done => true,
                CopyInput::Failed(why) => {
                    return Err(SqlError::new(
                        sqlstate::QUERY_CANCELED,
                        format!("COPY from stdin failed: {why}"),
                    ));
                }
                CopyInput::Stopped => return Err(self.stopped_error()),
            };
            while let Some(row) = decoder.next_row(last).map_err(copy_error)? {
                values.clear();
                row_values(&row, columns, format.is_binary(), &mut values)
                    .map_err(|e| context(&decoder, e))?;
                stmt.execute(rusqlite::params_from_iter(values.iter()))
                    .map_err(|e| context(&decoder, self.sql_error(e)))?;
                count += 1;
            }
            if last {
                return Ok(count);
            }
        }
    }

    /// The table's columns named (all of them when none is), with their types.
    fn table_columns(
        &self,
        table: &str,
        named: &[String],
    ) -> Result<Vec<(String, Option<SqlType>)>, SqlError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(|e| self.sql_error(e))?;
        let all = stmt
            .query_map([table], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.sql_error(e))?;
        if all.is_empty() {
            return Err(SqlError::new(
                sqlstate::UNDEFINED_TABLE,
                format!("relation \"{table}\" does not exist"),
            ));
        }
        let typed = |(name, decl): &(String, String)| (name.clone(), types::from_declared(decl));
        if named.is_empty() {
            return Ok(all.iter().map(typed).collect());
        }
        named
            .iter()
            .map(|n| {
                all.iter()
                    .find(|(c, _)| c.eq_ignore_ascii_case(n))
                    .map(typed)
                    .ok_or_else(|| {
                        SqlError::new(
                            sqlstate::UNDEFINED_COLUMN,
                            format!("column \"{n}\" of relation \"{table}\" does not exist"),
                        )
                    })
            })
            .collect()
    }
}

fn copy_error(e: CopyError) -> SqlError {
    SqlError::new(e.code, e.message)
}

/// A row's fields as the values SQLite stores for the columns' types: PostgreSQL's
/// spellings of booleans and byte strings read as SQLite keeps them; numbers checked, as
/// PostgreSQL checks them.
fn row_values(
    row: &[Field],
    columns: &[(String, Option<SqlType>)],
    binary: bool,
    values: &mut Vec<Value>,
) -> Result<(), SqlError> {
    if row.len() != columns.len() {
        let message = match columns.get(row.len()) {
            Some((missing, _)) if row.len() < columns.len() => {
                format!("missing data for column \"{missing}\"")
            }
            _ => "extra data after last expected column".to_owned(),
        };
        return Err(SqlError::new(sqlstate::BAD_COPY_FILE_FORMAT, message));
    }
    for (field, (name, ty)) in row.iter().zip(columns) {
        let value = match field {
            None => Value::Null,
            Some(bytes) if binary => binary_value(bytes, *ty, name)?,
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|_| not_utf8(name))?;
                text_value(text, *ty, name)?
            }
        };
        values.push(value);
    }
    Ok(())
}

fn not_utf8(column: &str) -> SqlError {
    SqlError::new(
        sqlstate::CHARACTER_NOT_IN_REPERTOIRE,
        format!("invalid byte sequence for encoding \"UTF8\" in column \"{column}\""),
    )
}

fn invalid(ty: &str, text: &str, column: &str) -> SqlError {
    SqlError::new(
        sqlstate::INVALID_TEXT_REPRESENTATION,
        format!("invalid input syntax for type {ty}: \"{text}\" (column \"{column}\")"),
    )
}

fn text_value(text: &str, ty: Option<SqlType>, column: &str) -> Result<Value, SqlError> {
    Ok(match ty {
        Some(SqlType::Bool) => match text.trim().to_ascii_lowercase().as_str() {
            "t" | "true" | "yes" | "y" | "on" | "1" => Value::Integer(1),
            "f" | "false" | "no" | "n" | "off" | "0" => Value::Integer(0),
            _ => return Err(invalid("boolean", text, column)),
        },
        Some(SqlType::Int8) => Value::Integer(
            text.trim()
                .parse()
                .map_err(|_| invalid("bigint", text, column))?,
        ),
        // Rust reads PostgreSQL's Infinity, -Infinity and NaN too (any case).
        Some(SqlType::Float8) => Value::Real(
            text.trim()
                .parse()
                .map_err(|_| invalid("double precision", text, column))?,
        ),
        Some(SqlType::Bytea) => Value::Blob(
            crate::pgcompat::casts::bytea(text).ok_or_else(|| invalid("bytea", text, column))?,
        ),
        _ => Value::Text(text.to_owned()),
    })
}

/// A binary-format field as its column's value: the width says which PostgreSQL type the
/// client sent (int2, int4 or int8; float4 or float8).
fn binary_value(bytes: &[u8], ty: Option<SqlType>, column: &str) -> Result<Value, SqlError> {
    let wrong = || {
        SqlError::new(
            sqlstate::INVALID_BINARY_REPRESENTATION,
            format!(
                "incorrect binary data format in column \"{column}\": {} bytes for its type",
                bytes.len()
            ),
        )
    };
    Ok(match ty {
        Some(SqlType::Bool) => match bytes {
            [b] => Value::Integer(i64::from(*b != 0)),
            _ => return Err(wrong()),
        },
        Some(SqlType::Int8) => Value::Integer(match bytes.len() {
            2 => i64::from(i16::from_be_bytes([bytes[0], bytes[1]])),
            4 => i64::from(i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            8 => i64::from_be_bytes(bytes.try_into().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        }),
        Some(SqlType::Float8) => Value::Real(match bytes.len() {
            4 => f64::from(f32::from_be_bytes(bytes.try_into().map_err(|_| wrong())?)),
            8 => f64::from_be_bytes(bytes.try_into().map_err(|_| wrong())?),
            _ => return Err(wrong()),
        }),
        Some(SqlType::Bytea) => Value::Blob(bytes.to_vec()),
        _ => Value::Text(String::from_utf8(bytes.to_vec()).map_err(|_| not_utf8(column))?),
    })
}

/// A `COPY … TO STDOUT`'s rows on their way out: as a result's, announced as a COPY.
struct CopyOut<'o> {
    out: &'o mut dyn Output,
    format: &'o CopyFormat,
}

impl Output for CopyOut<'_> {
    fn columns(&mut self, _command: &str, columns: &[Column]) -> Result<(), Stopped> {
        self.out.copy_out(self.format, columns)
    }

    fn row(&mut self, row: &dyn RowValues) -> Result<(), Stopped> {
        self.out.row(row)
    }

    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped> {
        self.out.finished(result)
    }

    fn failed(&self) -> bool {
        self.out.failed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found in review: a COPY refused before its data (an unknown table) left the
    /// transaction it was in going, and its COMMIT kept the rows written before.
    #[test]
    fn a_copy_refused_inside_a_transaction_did_not_fail_it() {
        let (_dir, mut session) = super::super::tests::session(crate::roles::Role::Admin);
        let results = session.execute_query(
            "CREATE TABLE t(a INTEGER); BEGIN; INSERT INTO t VALUES (1); COPY nowhere FROM STDIN",
        );
        assert!(results.last().is_some_and(Result::is_err), "{results:?}");
        session.execute_query("COMMIT");
        let count = session.execute_query("SELECT count(*) FROM t");
        let Some(Ok(executed)) = count.first() else {
            panic!("{count:?}");
        };
        assert_eq!(executed.rows, vec![vec![Value::Integer(0)]]);
    }

    /// Found in review: `COPY (statement) TO STDOUT` ran a statement that returns no rows
    /// (here a CREATE TABLE) and answered `COPY 0`; PostgreSQL refuses it.
    #[test]
    fn a_copy_of_a_statement_without_rows_ran_it() {
        let (_dir, mut session) = super::super::tests::session(crate::roles::Role::Admin);
        let results = session.execute_query("COPY (CREATE TABLE made(a INTEGER)) TO STDOUT");
        let Some(Err(e)) = results.first() else {
            panic!("{results:?}");
        };
        assert_eq!(e.code, sqlstate::FEATURE_NOT_SUPPORTED, "{}", e.message);
        let tables =
            session.execute_query("SELECT count(*) FROM sqlite_schema WHERE name = 'made'");
        let Some(Ok(executed)) = tables.first() else {
            panic!("{tables:?}");
        };
        assert_eq!(executed.rows, vec![vec![Value::Integer(0)]]);
    }

    #[test]
    fn postgresql_spellings_become_what_sqlite_stores() {
        let bool_ty = Some(SqlType::Bool);
        assert_eq!(text_value("t", bool_ty, "b").unwrap(), Value::Integer(1));
        assert_eq!(
            text_value("false", bool_ty, "b").unwrap(),
            Value::Integer(0)
        );
        assert!(text_value("maybe", bool_ty, "b").is_err());
        assert_eq!(
            text_value("\\x00ff", Some(SqlType::Bytea), "x").unwrap(),
            Value::Blob(vec![0, 255])
        );
        assert_eq!(
            text_value("a\\\\\\001", Some(SqlType::Bytea), "x").unwrap(),
            Value::Blob(vec![b'a', b'\\', 1])
        );
        for (text, value) in [
            ("Infinity", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(
                text_value(text, Some(SqlType::Float8), "x").unwrap(),
                Value::Real(value)
            );
        }
        let err = text_value("12x", Some(SqlType::Int8), "n").unwrap_err();
        assert_eq!(err.code, sqlstate::INVALID_TEXT_REPRESENTATION);
        assert!(err.message.contains("\"12x\""), "{}", err.message);
        assert_eq!(
            binary_value(&7i32.to_be_bytes(), Some(SqlType::Int8), "n").unwrap(),
            Value::Integer(7)
        );
        assert!(binary_value(&[1, 2, 3], Some(SqlType::Int8), "n").is_err());
    }
}
