//! Where a statement's results go: to the wire as SQLite steps the rows (the pg layer's
//! pipe), or into memory (plugins' SQL, unit tests). A session never holds a whole result
//! unless its caller collects one.

use rusqlite::types::Value;

use super::{Column, Executed};
use crate::sqlstate::SqlError;

/// The receiver of a result stopped taking rows (the client went away, or the portal was
/// closed): the statement ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// Receives each statement's results in order: for a statement that returns rows, its
/// columns, then its rows one by one, then its outcome.
pub trait Output {
    /// The columns of a statement that returns rows, before its first row. `command` is the
    /// tag's command word (`SELECT`, or `INSERT` for `INSERT … RETURNING`).
    fn columns(&mut self, command: &str, columns: &[Column]) -> Result<(), Stopped>;
    fn row(&mut self, row: Vec<Value>) -> Result<(), Stopped>;
    /// How the statement ended. Its rows were all given to `row` before.
    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped>;
}

/// Collects every result in memory.
#[derive(Debug, Default)]
pub struct Collect {
    rows: Vec<Vec<Value>>,
    pub results: Vec<Result<Executed, SqlError>>,
}

impl Output for Collect {
    fn columns(&mut self, _command: &str, _columns: &[Column]) -> Result<(), Stopped> {
        self.rows.clear();
        Ok(())
    }

    fn row(&mut self, row: Vec<Value>) -> Result<(), Stopped> {
        self.rows.push(row);
        Ok(())
    }

    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped> {
        let rows = std::mem::take(&mut self.rows);
        self.results.push(result.map(|mut executed| {
            if executed.columns.is_some() {
                executed.rows = rows;
            }
            executed
        }));
        Ok(())
    }
}
