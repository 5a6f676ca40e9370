//! The PostgreSQL compatibility layer: what PostgreSQL clients write that SQLite reads
//! differently, rewritten to SQLite's spelling before a statement is prepared. Pure text
//! work on one statement's tokens; it never decides what SQL means.

pub mod casts;
pub mod parameters;
pub mod spellings;
