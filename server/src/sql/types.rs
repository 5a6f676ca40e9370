//! The types a result column or parameter is described with on the wire, derived from
//! SQLite's declared types and storage classes.

use rusqlite::types::Value;

/// The wire types Cairn describes values with: one per SQLite storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// SQLite INTEGER: PostgreSQL int8.
    Int8,
    /// SQLite REAL: PostgreSQL float8.
    Float8,
    /// SQLite TEXT: PostgreSQL text.
    Text,
    /// SQLite BLOB: PostgreSQL bytea.
    Bytea,
}

/// The type of a column declared as `decl`, by SQLite's affinity rules (section 3.1 of
/// "Datatypes In SQLite"). `None` for NUMERIC affinity, whose values may be of any class:
/// those columns are typed by their values.
pub fn from_declared(decl: &str) -> Option<SqlType> {
    let decl = decl.to_ascii_uppercase();
    if decl.contains("INT") {
        Some(SqlType::Int8)
    } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        Some(SqlType::Text)
    } else if decl.contains("BLOB") {
        Some(SqlType::Bytea)
    } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
        Some(SqlType::Float8)
    } else {
        None
    }
}

/// The type of one value's storage class; `None` for NULL.
pub fn of_value(value: &Value) -> Option<SqlType> {
    match value {
        Value::Null => None,
        Value::Integer(_) => Some(SqlType::Int8),
        Value::Real(_) => Some(SqlType::Float8),
        Value::Text(_) => Some(SqlType::Text),
        Value::Blob(_) => Some(SqlType::Bytea),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_rules_pick_the_type() {
        assert_eq!(from_declared("INTEGER"), Some(SqlType::Int8));
        assert_eq!(from_declared("bigint"), Some(SqlType::Int8));
        assert_eq!(from_declared("VARCHAR(20)"), Some(SqlType::Text));
        assert_eq!(from_declared("BLOB"), Some(SqlType::Bytea));
        assert_eq!(from_declared("DOUBLE PRECISION"), Some(SqlType::Float8));
        assert_eq!(from_declared("NUMERIC"), None);
        assert_eq!(from_declared("DATETIME"), None);
    }
}
