//! PostgreSQL's session-level advisory locks: `pg_advisory_lock(key)` and `(key1, key2)`,
//! `pg_try_advisory_lock`, `pg_advisory_unlock`, `pg_advisory_unlock_all()`. They are real
//! locks, per database as in PostgreSQL, held by a session until it unlocks them or ends,
//! and re-entrant (locked twice, unlocked twice). A wait ends with the session's lock
//! timeout, or a cancel, a statement timeout or a termination, as a wait for a table lock
//! does. Pools (asyncpg's) unlock all when a connection is given back.
//!
//! Not provided: the shared and transaction-level variants.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::functions::{Context, FunctionFlags};

use super::lock_wait::LockWait;

/// The server's advisory locks: per (database, key), its holder and how many times it holds
/// it.
#[derive(Debug, Default)]
struct Locks {
    held: Mutex<HashMap<(String, i64), (u64, u32)>>,
    freed: Condvar,
}

static LOCKS: LazyLock<Locks> = LazyLock::new(Locks::default);
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// How often a wait looks at the session's interruptions.
const LOOK_EVERY: Duration = Duration::from_millis(10);

impl Locks {
    fn lock(&self) -> MutexGuard<'_, HashMap<(String, i64), (u64, u32)>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the lock if it is free or already `owner`'s.
    fn take(
        held: &mut HashMap<(String, i64), (u64, u32)>,
        key: &(String, i64),
        owner: u64,
    ) -> bool {
        match held.get_mut(key) {
            None => {
                held.insert(key.clone(), (owner, 1));
                true
            }
            Some((holder, count)) if *holder == owner => {
                *count += 1;
                true
            }
            Some(_) => false,
        }
    }
}

/// One session's hold on advisory locks; dropped with the session, it lets them all go.
#[derive(Debug)]
pub(super) struct AdvisoryOwner {
    id: u64,
}

impl Drop for AdvisoryOwner {
    fn drop(&mut self) {
        unlock_all(self.id);
    }
}

fn unlock_all(owner: u64) {
    let mut held = LOCKS.lock();
    let before = held.len();
    held.retain(|_, (holder, _)| *holder != owner);
    if held.len() != before {
        LOCKS.freed.notify_all();
    }
}

fn key(ctx: &Context<'_>) -> rusqlite::Result<i64> {
    match ctx.len() {
        1 => ctx.get::<i64>(0),
        // Two 32-bit keys, as PostgreSQL combines them.
        _ => {
            let (high, low) = (ctx.get::<i64>(0)?, ctx.get::<i64>(1)?);
            let part = |v: i64| {
                i32::try_from(v).map_err(|_| {
                    rusqlite::Error::UserFunctionError(
                        format!("an advisory lock's two keys are 32-bit integers, not {v}").into(),
                    )
                })
            };
            Ok((i64::from(part(high)?) << 32) | i64::from(part(low)? as u32))
        }
    }
}

fn busy(message: String) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(
        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
        Some(message),
    )
}

/// Defines the advisory-lock functions on a session's connection to `database`.
pub(super) fn install(
    conn: &rusqlite::Connection,
    database: &str,
    wait: Arc<LockWait>,
) -> rusqlite::Result<AdvisoryOwner> {
    let owner = NEXT_OWNER.fetch_add(1, Ordering::Relaxed);
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DIRECTONLY;
    for args in [1, 2] {
        let db = database.to_owned();
        let waits = Arc::clone(&wait);
        conn.create_scalar_function("pg_advisory_lock", args, flags, move |ctx| {
            let key = (db.clone(), key(ctx)?);
            let since = Instant::now();
            let mut held = LOCKS.lock();
            loop {
                if Locks::take(&mut held, &key, owner) {
                    return Ok(rusqlite::types::Value::Null);
                }
                if waits.interrupted() {
                    return Err(busy("canceled while waiting for an advisory lock".into()));
                }
                if since.elapsed() >= waits.timeout() {
                    return Err(busy(format!(
                        "could not obtain advisory lock {} within the session's lock_timeout",
                        key.1
                    )));
                }
                held = LOCKS
                    .freed
                    .wait_timeout(held, LOOK_EVERY)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
        })?;
        let db = database.to_owned();
        conn.create_scalar_function("pg_try_advisory_lock", args, flags, move |ctx| {
            let key = (db.clone(), key(ctx)?);
            Ok(Locks::take(&mut LOCKS.lock(), &key, owner))
        })?;
        let db = database.to_owned();
        conn.create_scalar_function("pg_advisory_unlock", args, flags, move |ctx| {
            let key = (db.clone(), key(ctx)?);
            let mut held = LOCKS.lock();
            let released = match held.get_mut(&key) {
                Some((holder, count)) if *holder == owner => {
                    *count -= 1;
                    if *count == 0 {
                        held.remove(&key);
                        LOCKS.freed.notify_all();
                    }
                    true
                }
                // PostgreSQL warns "you don't own a lock of type ExclusiveLock" and answers
                // false.
                _ => false,
            };
            Ok(released)
        })?;
    }
    conn.create_scalar_function("pg_advisory_unlock_all", 0, flags, move |_| {
        unlock_all(owner);
        Ok(rusqlite::types::Value::Null)
    })?;
    Ok(AdvisoryOwner { id: owner })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_keys_make_one_and_stay_apart_from_one_key() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.create_scalar_function("k", -1, FunctionFlags::SQLITE_UTF8, key)
            .unwrap();
        let k = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
        assert_eq!(k("SELECT k(4, 2)"), (4 << 32) | 2);
        assert_eq!(k("SELECT k(-1, -1)"), -1);
        assert_ne!(k("SELECT k(0, 42)"), 0);
        assert!(
            conn.query_row("SELECT k(1, 4294967296)", [], |r| r.get::<_, i64>(0))
                .is_err()
        );
    }
}
