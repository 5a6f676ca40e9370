//! Reading SQL text: splitting, the server's own statements, result and parameter types.
//! SQLite decides what SQL means; this module only reads enough to route and describe it.

pub mod cursor_statement;
pub mod lexer;
pub mod params;
pub mod pragmas;
pub mod server_statement;
mod session_statements;
pub mod settings;
pub mod types;
pub mod user_statement;
