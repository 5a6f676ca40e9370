//! Statements by outcome, counted for `/metrics`: every statement a session runs, from a
//! client or a plugin, ends `ok`, `canceled` (a cancel request, a statement timeout, a
//! terminated session: SQLSTATE 57014) or `error`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::sqlstate::{self, SqlError};

static OK: AtomicU64 = AtomicU64::new(0);
static CANCELED: AtomicU64 = AtomicU64::new(0);
static ERROR: AtomicU64 = AtomicU64::new(0);

/// Counts one statement's result.
pub fn record<T>(result: &Result<T, SqlError>) {
    let counter = match result {
        Ok(_) => &OK,
        Err(e) if e.code == sqlstate::QUERY_CANCELED => &CANCELED,
        Err(_) => &ERROR,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Statements so far, by outcome, since the process started.
pub fn counts() -> [(&'static str, u64); 3] {
    [
        ("ok", OK.load(Ordering::Relaxed)),
        ("canceled", CANCELED.load(Ordering::Relaxed)),
        ("error", ERROR.load(Ordering::Relaxed)),
    ]
}
