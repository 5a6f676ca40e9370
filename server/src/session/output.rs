//! Where a statement's results go: to the wire as SQLite steps the rows (the pg layer's
//! pipe), or into memory (plugins' SQL, unit tests). A session never holds a whole result
//! unless its caller collects one.

use rusqlite::types::{Value, ValueRef};

use super::{Column, Executed};
use crate::pgcompat::copy::CopyFormat;
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
    /// One row, read in place: borrowed from SQLite until the next step.
    fn row(&mut self, row: &dyn RowValues) -> Result<(), Stopped>;
    /// How the statement ended. Its rows were all given to `row` before.
    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped>;
    /// Whether the output stopped the statement with an error of its own (a value it could
    /// not encode or take), which fails the statement as an error of SQLite's would.
    fn failed(&self) -> bool {
        false
    }
    /// A `COPY … TO STDOUT` result starts: its rows follow, as a result's rows follow
    /// `columns`, to be written in `format`.
    fn copy_out(&mut self, _format: &CopyFormat, columns: &[Column]) -> Result<(), Stopped> {
        self.columns("COPY", columns)
    }
    /// A `COPY … FROM STDIN` of `columns` columns is ready for its data: the client is told
    /// so, and the data is read from what this returns. `None`: no client can send any here.
    fn copy_in(&mut self, _format: &CopyFormat, _columns: usize) -> Option<&mut dyn CopyData> {
        None
    }
}

/// The data a client sends for `COPY … FROM STDIN`, piece by piece.
pub trait CopyData {
    /// Waits for the next piece.
    fn next(&mut self) -> CopyInput;
}

/// What a client sent next during `COPY … FROM STDIN`.
#[derive(Debug)]
pub enum CopyInput {
    Data(bytes::Bytes),
    /// CopyDone: the data is complete.
    Done,
    /// CopyFail, with the client's reason.
    Failed(String),
    /// The statement was stopped (a cancel, its timeout), or the client went away.
    Stopped,
}

/// A row's values, read where they are: SQLite's current row, or values the server made.
pub trait RowValues {
    /// How many values the row has.
    fn width(&self) -> usize;
    /// The `i`th value (NULL past the end).
    fn value(&self, i: usize) -> ValueRef<'_>;
}

impl RowValues for Vec<Value> {
    fn width(&self) -> usize {
        self.len()
    }

    fn value(&self, i: usize) -> ValueRef<'_> {
        self.get(i).map_or(ValueRef::Null, ValueRef::from)
    }
}

impl RowValues for rusqlite::Row<'_> {
    fn width(&self) -> usize {
        self.as_ref().column_count()
    }

    fn value(&self, i: usize) -> ValueRef<'_> {
        self.get_ref(i).unwrap_or(ValueRef::Null)
    }
}

/// Collects every result in memory.
#[derive(Debug, Default)]
pub struct Collect {
    rows: Vec<Vec<Value>>,
    /// A value that could not be taken (text that is not UTF-8): the statement's error.
    failed: Option<SqlError>,
    pub results: Vec<Result<Executed, SqlError>>,
}

impl Output for Collect {
    fn columns(&mut self, _command: &str, _columns: &[Column]) -> Result<(), Stopped> {
        self.rows.clear();
        Ok(())
    }

    fn row(&mut self, row: &dyn RowValues) -> Result<(), Stopped> {
        let owned = (0..row.width())
            .map(|i| Value::try_from(row.value(i)))
            .collect::<Result<Vec<_>, _>>();
        match owned {
            Ok(values) => {
                self.rows.push(values);
                Ok(())
            }
            Err(e) => {
                self.failed = Some(SqlError::new(
                    crate::sqlstate::DATATYPE_MISMATCH,
                    format!("a value of the result could not be read: {e}"),
                ));
                Err(Stopped)
            }
        }
    }

    fn failed(&self) -> bool {
        self.failed.is_some()
    }

    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped> {
        let result = match self.failed.take() {
            Some(error) => Err(error),
            None => result,
        };
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
