//! Errors as a PostgreSQL client sees them: an SQLSTATE code and a message. SQLite's result
//! codes are mapped to the PostgreSQL class a driver would test for (23505 for a unique
//! violation, 42P01 for a missing table, …); the message is SQLite's own.

use rusqlite::ErrorCode;
use rusqlite::ffi;

pub const PROTOCOL_VIOLATION: &str = "08P01";
pub const INVALID_CATALOG_NAME: &str = "3D000";
pub const INVALID_AUTHORIZATION_SPECIFICATION: &str = "28000";
pub const INVALID_NAME: &str = "42602";
pub const DUPLICATE_DATABASE: &str = "42P04";
pub const SYNTAX_ERROR: &str = "42601";
pub const SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: &str = "42000";
pub const UNDEFINED_TABLE: &str = "42P01";
pub const DUPLICATE_TABLE: &str = "42P07";
pub const DEPENDENT_OBJECTS_STILL_EXIST: &str = "2BP01";
pub const UNDEFINED_COLUMN: &str = "42703";
pub const UNDEFINED_FUNCTION: &str = "42883";
pub const DUPLICATE_OBJECT: &str = "42710";
pub const DUPLICATE_CURSOR: &str = "42P03";
pub const INVALID_CURSOR_NAME: &str = "34000";
pub const INVALID_CURSOR_DEFINITION: &str = "42P11";
pub const RESERVED_NAME: &str = "42939";
pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
pub const DATATYPE_MISMATCH: &str = "42804";
pub const INTEGRITY_CONSTRAINT_VIOLATION: &str = "23000";
pub const NOT_NULL_VIOLATION: &str = "23502";
pub const FOREIGN_KEY_VIOLATION: &str = "23503";
pub const UNIQUE_VIOLATION: &str = "23505";
pub const CHECK_VIOLATION: &str = "23514";
pub const ACTIVE_SQL_TRANSACTION: &str = "25001";
pub const NO_ACTIVE_SQL_TRANSACTION: &str = "25P01";
pub const READ_ONLY_SQL_TRANSACTION: &str = "25006";
pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
pub const OBJECT_IN_USE: &str = "55006";
/// pgcrypto's code for "Wrong key or corrupt data".
pub const WRONG_KEY: &str = "39000";
pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
pub const LOCK_NOT_AVAILABLE: &str = "55P03";
pub const DISK_FULL: &str = "53100";
pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
pub const ADMIN_SHUTDOWN: &str = "57P01";
pub const IO_ERROR: &str = "58030";
pub const INTERNAL_ERROR: &str = "XX000";
pub const UNDEFINED_OBJECT: &str = "42704";
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
pub const UNDEFINED_FILE: &str = "58P01";
pub const DUPLICATE_FILE: &str = "58P02";
pub const QUERY_CANCELED: &str = "57014";
pub const DATA_CORRUPTED: &str = "XX001";
pub const INVALID_PARAMETER_VALUE: &str = "22023";
pub const CANT_CHANGE_RUNTIME_PARAM: &str = "55P02";
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
pub const UNDEFINED_PARAMETER: &str = "42P02";
pub const TOO_MANY_CONNECTIONS: &str = "53300";
pub const CONFIGURATION_LIMIT_EXCEEDED: &str = "53400";
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "25P03";
pub const EXTERNAL_ROUTINE_EXCEPTION: &str = "38000";

/// An error for the client: SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (SQLSTATE {code})")]
pub struct SqlError {
    pub code: &'static str,
    pub message: String,
}

impl SqlError {
    pub fn new(code: &'static str, message: String) -> SqlError {
        SqlError { code, message }
    }

    /// Maps a SQLite error to the SQLSTATE a PostgreSQL driver expects.
    pub fn from_sqlite(error: &rusqlite::Error) -> SqlError {
        let (code, message) = match error {
            rusqlite::Error::SqliteFailure(failure, message) => {
                let message = message.clone().unwrap_or_else(|| failure.to_string());
                let code = match failure.code {
                    ErrorCode::ConstraintViolation => match failure.extended_code {
                        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                            UNIQUE_VIOLATION
                        }
                        ffi::SQLITE_CONSTRAINT_NOTNULL => NOT_NULL_VIOLATION,
                        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => FOREIGN_KEY_VIOLATION,
                        ffi::SQLITE_CONSTRAINT_CHECK => CHECK_VIOLATION,
                        _ => INTEGRITY_CONSTRAINT_VIOLATION,
                    },
                    ErrorCode::ReadOnly => READ_ONLY_SQL_TRANSACTION,
                    ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => LOCK_NOT_AVAILABLE,
                    ErrorCode::AuthorizationForStatementDenied => INSUFFICIENT_PRIVILEGE,
                    ErrorCode::DiskFull => DISK_FULL,
                    ErrorCode::TooBig => PROGRAM_LIMIT_EXCEEDED,
                    ErrorCode::Unknown => by_message(&message),
                    _ => INTERNAL_ERROR,
                };
                let message = if code == INSUFFICIENT_PRIVILEGE {
                    format!(
                        "{message}: ATTACH, DETACH, VACUUM INTO and changing server-managed pragmas (journal_mode, synchronous, …) are not available to clients"
                    )
                } else {
                    message
                };
                (code, message)
            }
            rusqlite::Error::SqlInputError { msg, .. } => (by_message(msg), msg.clone()),
            rusqlite::Error::InvalidParameterName(name) => {
                (PROTOCOL_VIOLATION, format!("invalid parameter name {name}"))
            }
            other => (INTERNAL_ERROR, other.to_string()),
        };
        SqlError { code, message }
    }
}

/// SQLITE_ERROR covers every SQL mistake; its message says which one.
fn by_message(message: &str) -> &'static str {
    if message.contains("syntax error")
        || message.contains("incomplete input")
        || message.contains("unrecognized token")
    {
        SYNTAX_ERROR
    } else if message.starts_with("no such table") {
        UNDEFINED_TABLE
    } else if message.starts_with("no such column") {
        UNDEFINED_COLUMN
    } else if message.starts_with("no such function") {
        UNDEFINED_FUNCTION
    } else if message.contains("already exists") {
        DUPLICATE_OBJECT
    } else if message.contains("not authorized") {
        INSUFFICIENT_PRIVILEGE
    } else {
        SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    }
}
