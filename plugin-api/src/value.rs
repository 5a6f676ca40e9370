//! The values, columns and arguments a plugin exchanges with the server.

use crate::abi;

/// One SQL value, as SQLite stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A 64-bit float.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Value {
    /// The text, if this is a text value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an integer value.
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Value::Integer(i) => Some(*i),
            _ => None,
        }
    }

    /// The boolean SQL would see: a nonzero integer, or the text `true`/`false`.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Integer(i) => Some(*i != 0),
            Value::Text(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Text(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    pub(crate) fn kind(&self) -> abi::CairnValueKind {
        match self {
            Value::Null => abi::CAIRN_VALUE_NULL,
            Value::Integer(_) => abi::CAIRN_VALUE_INTEGER,
            Value::Real(_) => abi::CAIRN_VALUE_REAL,
            Value::Text(_) => abi::CAIRN_VALUE_TEXT,
            Value::Blob(_) => abi::CAIRN_VALUE_BLOB,
        }
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Integer(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Real(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::Blob(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Integer(i64::from(v))
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// The type of a result column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// 64-bit integers (PostgreSQL `int8`).
    Integer,
    /// 64-bit floats (`float8`).
    Real,
    /// Text (`text`).
    Text,
    /// Bytes (`bytea`).
    Blob,
}

impl ColumnType {
    pub(crate) fn to_abi(self) -> abi::CairnValueKind {
        match self {
            ColumnType::Integer => abi::CAIRN_VALUE_INTEGER,
            ColumnType::Real => abi::CAIRN_VALUE_REAL,
            ColumnType::Text => abi::CAIRN_VALUE_TEXT,
            ColumnType::Blob => abi::CAIRN_VALUE_BLOB,
        }
    }

    pub(crate) fn from_abi(kind: abi::CairnValueKind) -> Option<ColumnType> {
        match kind {
            abi::CAIRN_VALUE_INTEGER => Some(ColumnType::Integer),
            abi::CAIRN_VALUE_REAL => Some(ColumnType::Real),
            abi::CAIRN_VALUE_TEXT => Some(ColumnType::Text),
            abi::CAIRN_VALUE_BLOB => Some(ColumnType::Blob),
            _ => None,
        }
    }
}

/// A named, typed result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The column's name.
    pub name: String,
    /// The column's type.
    pub ty: ColumnType,
}

impl Column {
    /// A column called `name` of type `ty`.
    pub fn new(name: impl Into<String>, ty: ColumnType) -> Column {
        Column {
            name: name.into(),
            ty,
        }
    }
}

/// The arguments of a procedure call: positional ones in order, then `name => value` ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args {
    /// Positional arguments, in order.
    pub positional: Vec<Value>,
    /// Named arguments (`dry_run => true`), in order.
    pub named: Vec<(String, Value)>,
}

impl Args {
    /// The `index`-th positional argument.
    pub fn get(&self, index: usize) -> Option<&Value> {
        self.positional.get(index)
    }

    /// The named argument `name`.
    pub fn named(&self, name: &str) -> Option<&Value> {
        self.named.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// What an operation returned: rows with their columns, and a one-line summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    /// The columns, when the operation declared them.
    pub columns: Option<Vec<Column>>,
    /// The rows.
    pub rows: Vec<Vec<Value>>,
    /// A summary such as a command tag (`INSERT 0 3`).
    pub message: Option<String>,
}

impl Reply {
    /// A reply of rows only.
    pub fn rows(rows: Vec<Vec<Value>>) -> Reply {
        Reply {
            rows,
            ..Reply::default()
        }
    }
}
