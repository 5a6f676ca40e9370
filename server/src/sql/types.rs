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
    /// A column declared BOOLEAN (or BOOL): stored as SQLite's integers 0 and 1, described
    /// and sent as PostgreSQL's bool.
    Bool,
    /// An array (`array_agg(…)`, `ARRAY(SELECT …)`), kept as its text (`{a,b}`): described and
    /// sent as PostgreSQL's text[].
    TextArray,
    /// An array of booleans (`array_agg` of a comparison), kept as its text (`{1,0}`):
    /// described and sent as PostgreSQL's bool[].
    BoolArray,
    /// A parameter cast to an array of integers (`$1::int[]`, `$1::oid[]`): taken as
    /// PostgreSQL's int8[], kept as its text.
    Int8Array,
    /// A parameter cast to an array of reals (`$1::float8[]`): PostgreSQL's float8[].
    Float8Array,
    /// PostgreSQL's int2vector (`pg_index.indkey`): numbers separated by spaces, as text.
    Int2Vector,
    /// PostgreSQL's oidvector (`pg_index.indclass`).
    OidVector,
    /// A parameter cast to `oid[]`: PostgreSQL's oid[] (asyncpg reads its own type lookups
    /// with one, and knows no other array type before it has looked them up).
    OidArray,
}

/// The type of a column declared as `decl`, by SQLite's affinity rules (section 3.1 of
/// "Datatypes In SQLite"). `None` for NUMERIC affinity, whose values may be of any class:
/// those columns are typed by their values.
pub fn from_declared(decl: &str) -> Option<SqlType> {
    let decl = decl.to_ascii_uppercase();
    if decl == "INT2VECTOR" {
        Some(SqlType::Int2Vector)
    } else if decl == "OIDVECTOR" {
        Some(SqlType::OidVector)
    } else if decl.starts_with("BOOL") {
        Some(SqlType::Bool)
    } else if decl.contains("INT") {
        Some(SqlType::Int8)
    } else if decl.contains("CHAR") || decl.contains("CLOB") || decl.contains("TEXT") {
        Some(SqlType::Text)
    } else if decl.contains("BLOB") || decl == "BYTEA" {
        // PostgreSQL's BYTEA has SQLite's NUMERIC affinity, which keeps a blob a blob:
        // its values are the blobs clients stored (asyncpg sends them only to a bytea).
        Some(SqlType::Bytea)
    } else if decl.contains("REAL") || decl.contains("FLOA") || decl.contains("DOUB") {
        Some(SqlType::Float8)
    } else {
        None
    }
}

/// The type of a result column SQLite names after the call that makes it (`count(*)`,
/// `avg(x)`), for the functions whose result type does not depend on their arguments:
/// a column no row could type yet (a statement with parameters is not run to describe it).
/// `None` for anything else (an alias, an expression, a function of any type; a window
/// function's column is named with its `OVER …`, so it is not a call alone).
pub fn of_call(column_name: &str) -> Option<SqlType> {
    let name = column_name.trim();
    let (function, rest) = name.split_once('(')?;
    if !function
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return None;
    }
    // One call: its opening parenthesis is closed by the name's last character only.
    let mut depth = 1usize;
    let mut quoted = false;
    for (i, c) in rest.char_indices() {
        match c {
            // Parentheses inside a string are not the call's.
            '\'' => quoted = !quoted,
            _ if quoted => {}
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 && i + 1 != rest.len() {
                    return None;
                }
            }
            _ => {}
        }
    }
    if depth != 0 {
        return None;
    }
    let is = |names: &[&str]| names.iter().any(|n| function.eq_ignore_ascii_case(n));
    if is(&[
        "count",
        "length",
        "octet_length",
        "instr",
        "unicode",
        "changes",
        "total_changes",
        "last_insert_rowid",
        "random",
    ]) {
        Some(SqlType::Int8)
    } else if is(&["avg", "total"]) {
        Some(SqlType::Float8)
    } else if is(&[
        "lower",
        "upper",
        "trim",
        "ltrim",
        "rtrim",
        "substr",
        "substring",
        "replace",
        "hex",
        "quote",
        "printf",
        "format",
        "group_concat",
        "string_agg",
        "typeof",
        "char",
        "date",
        "time",
        "datetime",
        "strftime",
        "sqlite_version",
    ]) {
        Some(SqlType::Text)
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
        assert_eq!(from_declared("bytea"), Some(SqlType::Bytea));
        assert_eq!(from_declared("DOUBLE PRECISION"), Some(SqlType::Float8));
        assert_eq!(from_declared("NUMERIC"), None);
        assert_eq!(from_declared("DATETIME"), None);
        assert_eq!(from_declared("boolean"), Some(SqlType::Bool));
        assert_eq!(from_declared("BOOL"), Some(SqlType::Bool));
        assert_eq!(of_call("count(*)"), Some(SqlType::Int8));
        assert_eq!(of_call("AVG(price)"), Some(SqlType::Float8));
        assert_eq!(of_call("lower(name)"), Some(SqlType::Text));
        assert_eq!(of_call("max(x)"), None);
        assert_eq!(of_call("total_count"), None);
        assert_eq!(of_call("count(*) + 1"), None);
        assert_eq!(of_call("count(a) - sum(b)"), None);
        assert_eq!(of_call("count('(') || length(')')"), None);
        assert_eq!(of_call("count(DISTINCT (a))"), Some(SqlType::Int8));
    }
}
