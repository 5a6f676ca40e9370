//! Which pragmas a client may run. An allow-list, because SQLite keeps adding pragmas and
//! some of them act beyond the client's own connection: `hard_heap_limit` and
//! `soft_heap_limit` are process-wide (one readonly user could make every later login fail),
//! `schema_version` and `writable_schema` corrupt the file under other connections' cached
//! schemas, `journal_mode` and `synchronous` void the server's durability promise.
//!
//! Reading a pragma's value is allowed (except `wal_checkpoint`, which acts: checkpoints
//! are the server's). Setting one, or calling one with an argument, is allowed only for the
//! per-connection switches and the introspection pragmas below.

use super::lexer::{Spanned, Token};

/// Pragmas a client may set on its own connection, or call with an argument.
pub const ALLOWED_WITH_VALUE: &[&str] = &[
    // Per-connection behaviour, as PostgreSQL's session settings.
    "foreign_keys",
    "defer_foreign_keys",
    "recursive_triggers",
    "case_sensitive_like",
    "secure_delete",
    "automatic_index",
    "reverse_unordered_selects",
    "legacy_alter_table",
    "cell_size_check",
    "analysis_limit",
    "optimize",
    // Stored in the database header; the role decides whether the write is allowed.
    "user_version",
    "application_id",
    // Introspection with an argument: a table, an index, a row limit.
    "table_info",
    "table_xinfo",
    "table_list",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
    "foreign_key_check",
    "integrity_check",
    "quick_check",
];

/// Pragmas a client may not even read, because reading one acts.
const ACTING_WITHOUT_VALUE: &[&str] = &["wal_checkpoint"];

/// Whether a client may run `PRAGMA name` (`with_value`: `= v` or `(v)`).
pub fn allowed(name: &str, with_value: bool) -> bool {
    let listed = |list: &[&str]| list.iter().any(|p| p.eq_ignore_ascii_case(name));
    if with_value {
        listed(ALLOWED_WITH_VALUE)
    } else {
        !listed(ACTING_WITHOUT_VALUE)
    }
}

/// For a `PRAGMA` statement the client may not run, why. The authorizer enforces the same
/// rule; this gives the refusal a message that names the pragma.
pub fn check(tokens: &[Spanned<'_>]) -> Result<(), String> {
    let mut words = tokens.iter().map(|t| &t.token);
    if !words.next().is_some_and(|t| t.is_keyword("pragma")) {
        return Ok(());
    }
    let mut rest: Vec<&Token<'_>> = words.collect();
    // `PRAGMA schema.name`: the name is after the dot.
    if rest.get(1) == Some(&&Token::Punct(".")) {
        rest.drain(..2);
    }
    let Some(name) = rest.first().and_then(|t| t.identifier()) else {
        return Ok(());
    };
    let with_value = rest.len() > 1;
    if allowed(&name, with_value) {
        Ok(())
    } else {
        Err(refusal(&name, with_value))
    }
}

/// Why `PRAGMA name` was refused, for the client.
pub fn refusal(name: &str, with_value: bool) -> String {
    if with_value && name.eq_ignore_ascii_case("busy_timeout") {
        // The server waits for locks itself (and ends a wait at a cancel): say how to set it.
        return "PRAGMA busy_timeout cannot be set by clients: how long a statement waits for a lock is the session's lock_timeout (SET lock_timeout = '5s'; SHOW lock_timeout)".into();
    }
    if with_value {
        format!(
            "PRAGMA {name} cannot be set by clients: it acts beyond this connection (the whole server, the database file or its durability). Pragmas a client may set: {}",
            ALLOWED_WITH_VALUE.join(", ")
        )
    } else {
        format!("PRAGMA {name} is run by the server only (it manages checkpoints)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_wide_and_schema_pragmas_are_refused_and_reads_are_not() {
        for name in [
            "hard_heap_limit",
            "soft_heap_limit",
            "schema_version",
            "writable_schema",
            "journal_mode",
            "synchronous",
            "mmap_size",
            "cache_size",
            "threads",
            "temp_store",
            "max_page_count",
            "busy_timeout",
            "ignore_check_constraints",
            "Hard_Heap_Limit",
        ] {
            assert!(!allowed(name, true), "{name} may be set");
        }
        assert!(allowed("hard_heap_limit", false));
        assert!(refusal("busy_timeout", true).contains("SET lock_timeout"));
        assert!(allowed("foreign_keys", true));
        assert!(allowed("TABLE_INFO", true));
        assert!(!allowed("wal_checkpoint", false));
        let check = |sql| check(&crate::sql::lexer::tokenize(sql).unwrap());
        assert!(check("PRAGMA main.schema_version = 7").is_err());
        assert!(check("pragma hard_heap_limit(1)").is_err());
        assert!(check("PRAGMA schema_version").is_ok());
        assert!(check("PRAGMA foreign_keys = OFF").is_ok());
        assert!(check("SELECT 1").is_ok());
    }
}
