//! How a session waits for a lock another connection holds: SQLite's own busy handler
//! sleeps a whole millisecond at its first try and more after, while a write lock in WAL
//! mode is held for the tens of microseconds of one commit. This one looks again after tens
//! of microseconds, backing off to a millisecond, until the session's lock timeout; a brief
//! run's waiting ends with its deadline (it is then given up and run again the usual way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::brief::Deadline;

/// The first pause between two tries of a lock; each next one is twice as long, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_micros(20);
const LONGEST_PAUSE: Duration = Duration::from_millis(1);

/// The session's lock timeout, shared with its connection's busy handler.
#[derive(Debug)]
pub(super) struct LockWait {
    /// Microseconds.
    timeout: AtomicU64,
    /// The session's activity, once it has a seat: a cancel, a statement timeout or a
    /// termination ends a wait (SQLite's interrupt does not reach its busy handler).
    interrupts: OnceLock<Arc<super::registry::Activity>>,
}

impl LockWait {
    /// Installs the handler on `conn`, with `timeout` until [`LockWait::set`] says otherwise.
    pub(super) fn install(
        conn: &mut rusqlite::Connection,
        timeout: Duration,
        deadline: Arc<Deadline>,
    ) -> rusqlite::Result<Arc<LockWait>> {
        let wait = Arc::new(LockWait {
            timeout: AtomicU64::new(micros(timeout)),
            interrupts: OnceLock::new(),
        });
        let looked_at = Arc::clone(&wait);
        let mut since = Instant::now();
        let mut last_try = Instant::now();
        conn.busy_handler(Some(move |tries: i32| {
            // SQLite counts the tries of one wait from zero, but does not always start again
            // at zero for the next wait (a prepare after a step that waited, a second lock in
            // one step): a try long after the last one begins a new wait too.
            if tries == 0 || last_try.elapsed() > 2 * LONGEST_PAUSE {
                since = Instant::now();
            }
            if deadline.has_passed()
                || looked_at
                    .interrupts
                    .get()
                    .is_some_and(|a| a.interruption_pending())
            {
                return false;
            }
            let waited = since.elapsed();
            let timeout = Duration::from_micros(looked_at.timeout.load(Ordering::Relaxed));
            let Some(left) = timeout.checked_sub(waited).filter(|d| !d.is_zero()) else {
                return false;
            };
            let mut pause = FIRST_PAUSE
                .saturating_mul(1u32 << tries.clamp(0, 10))
                .min(LONGEST_PAUSE)
                .min(left);
            if deadline.armed() {
                // A brief run's deadline is a few hundred microseconds away at most.
                pause = pause.min(FIRST_PAUSE * 4);
            }
            std::thread::sleep(pause);
            last_try = Instant::now();
            true
        }))?;
        Ok(wait)
    }

    /// Ends waits when `activity` is interrupted.
    pub(super) fn watch(&self, activity: Arc<super::registry::Activity>) {
        let _ = self.interrupts.set(activity);
    }

    /// Whether a cancel, a statement timeout or a termination is pending: a wait ends.
    pub(super) fn interrupted(&self) -> bool {
        self.interrupts
            .get()
            .is_some_and(|a| a.interruption_pending())
    }

    /// How long a wait for a lock may last.
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_micros(self.timeout.load(Ordering::Relaxed))
    }

    /// The lock timeout from now on.
    pub(super) fn set(&self, timeout: Duration) {
        self.timeout.store(micros(timeout), Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(path: &std::path::Path) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn
    }

    #[test]
    fn a_held_lock_is_waited_for_until_the_timeout_and_taken_once_free() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sqlite");
        let holder = connection(&path);
        holder.execute_batch("CREATE TABLE t(a)").unwrap();
        let mut waiter = connection(&path);
        let deadline = Deadline::install(&mut waiter, None).unwrap();
        let wait = LockWait::install(&mut waiter, Duration::from_millis(150), deadline).unwrap();

        holder.execute_batch("BEGIN IMMEDIATE").unwrap();
        let started = Instant::now();
        let refused = waiter.execute_batch("BEGIN IMMEDIATE").unwrap_err();
        let waited = started.elapsed();
        assert_eq!(
            refused.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy)
        );
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");

        // Let go while the waiter waits (or before it starts): it takes the lock.
        wait.set(Duration::from_secs(10));
        let released = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            holder.execute_batch("COMMIT").unwrap();
        });
        waiter
            .execute_batch("BEGIN IMMEDIATE; INSERT INTO t VALUES (1); COMMIT")
            .unwrap();
        released.join().unwrap();
    }
}
