//! Turns at a database's write lock: its sessions' single writes outside a transaction line
//! up in the server for SQLite's write lock instead of each polling it.
//!
//! SQLite has one writer at a time per database, and a connection that finds the lock taken
//! can only sleep and try again (its busy handler). A single-row insert holds the lock for
//! about ten microseconds, but a sleeping waiter looks again only after its pause, and one
//! that finds it taken again pauses longer: with four clients inserting, a third of the
//! inserts took more than 100 µs to run and a sixth more than 300 µs (11 µs with one
//! client), and the commits that came late missed the log sync under way and waited for the
//! next. A turn is a lock in this process, so the next writer is woken as the last one lets
//! go. Only brief writes take turns (see `session/brief.rs`): each is over within its brief
//! deadline, so a wait for a turn is bounded too; a longer write, or a write inside a
//! transaction, meets the others at SQLite's lock as before. Not yet done: a commit that
//! fills the log past SQLite's automatic checkpoint checkpoints inside its own step, after
//! the commit and with the turn still held (a few milliseconds, fsyncs included, every
//! thousand pages of log); the other brief writes then give up at their deadline and run the
//! usual way, at SQLite's lock, which is free by then.

use std::time::Instant;

/// The turns at one database's write lock, shared by its sessions' connections.
#[derive(Debug, Default)]
pub struct WriteTurns {
    lock: parking_lot::Mutex<()>,
}

/// A turn at the write lock, given back when dropped.
#[derive(Debug)]
pub struct Turn<'a> {
    _held: parking_lot::MutexGuard<'a, ()>,
}

impl WriteTurns {
    /// Waits for the turn until `until`; `None` if another writer still has it then.
    pub fn take(&self, until: Instant) -> Option<Turn<'_>> {
        self.lock
            .try_lock_until(until)
            .map(|held| Turn { _held: held })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    #[test]
    fn one_writer_has_the_turn_at_a_time_and_the_next_gets_it_when_it_is_given_back() {
        let turns = Arc::new(WriteTurns::default());
        let held = turns
            .take(Instant::now())
            .expect("a free turn is taken at once");
        assert!(
            turns
                .take(Instant::now() + Duration::from_millis(5))
                .is_none(),
            "a turn that is held is not given twice"
        );
        let taken = Arc::new(Barrier::new(2));
        let waiter = {
            let turns = Arc::clone(&turns);
            let taken = Arc::clone(&taken);
            std::thread::spawn(move || {
                taken.wait();
                turns
                    .take(Instant::now() + Duration::from_secs(30))
                    .is_some()
            })
        };
        taken.wait();
        drop(held);
        assert!(
            waiter.join().unwrap(),
            "the waiter gets the turn given back"
        );
    }
}
