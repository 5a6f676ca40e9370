//! Group commit: the commits of a database's sessions share fdatasyncs of its write-ahead
//! log instead of paying one each while they hold SQLite's write lock.
//!
//! A session's connection runs with `synchronous = NORMAL`, so SQLite writes a commit's
//! frames to the log without syncing it. Right after (SQLite's WAL hook, once the write lock
//! is released) the commit takes a ticket, and before its client hears of it the session
//! waits until a sync of the log that began after the ticket was taken has finished. One
//! waiter at a time syncs (the leader); the commits that arrive while it does are covered by
//! the next sync, which one of them leads.
//!
//! Promised, as by `synchronous = FULL`: a commit is on disk when its client hears of it.
//! Not promised: SQLite shows a commit to the other connections once its frames are written,
//! so another session may read it up to one sync before it is durable (PostgreSQL shows it
//! only after). Checkpoints sync the log before copying it, as they do under FULL.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A sync of a database's log failed: its commits since the last good sync may not survive a
/// power loss, and none is promised durable from then on (the kernel may have dropped the
/// pages it could not write, so a later sync proves nothing).
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the commit was written, but the write-ahead log {path} could not be synced to disk ({why}), so it may not survive a power loss; no commit to this database is promised durable until the server is restarted: check the disk, then restart"
)]
pub struct SyncFailed {
    path: PathBuf,
    why: Arc<str>,
}

/// The syncs of one database's write-ahead log, shared by its sessions' connections.
#[derive(Debug)]
pub struct WalSync {
    wal: PathBuf,
    state: Mutex<State>,
    synced: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// The last ticket handed out (tickets start at 1).
    last_ticket: u64,
    /// Every commit whose ticket is at most this is on disk.
    durable_through: u64,
    /// A waiter is syncing the log now.
    syncing: bool,
    /// The first failed sync, which no later one undoes.
    failed: Option<SyncFailed>,
    /// How many syncs have run (for tests and figures).
    syncs: u64,
}

impl WalSync {
    /// The syncs of the database file at `database` (its log is `…-wal` beside it).
    pub fn new(database: &Path) -> WalSync {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        WalSync {
            wal: PathBuf::from(wal),
            state: Mutex::new(State::default()),
            synced: Condvar::new(),
        }
    }

    /// A connection of this database to wait on, for its commits.
    pub fn connection(self: &Arc<Self>) -> PendingSync {
        PendingSync {
            sync: Arc::clone(self),
            ticket: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How many syncs of the log have run.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// A ticket for a commit whose frames have just been written.
    fn ticket(&self) -> u64 {
        let mut state = self.lock();
        state.last_ticket += 1;
        state.last_ticket
    }

    /// Returns once the commit that took `ticket` is on disk, syncing the log if no one is.
    fn wait(&self, ticket: u64) -> Result<(), SyncFailed> {
        let mut state = self.lock();
        loop {
            if state.durable_through >= ticket {
                return Ok(());
            }
            if let Some(failed) = &state.failed {
                return Err(failed.clone());
            }
            if state.syncing {
                state = self
                    .synced
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                continue;
            }
            // Every ticket handed out so far was taken after its frames were written, so the
            // sync about to start covers them all.
            state.syncing = true;
            let through = state.last_ticket;
            drop(state);
            // Opened for each sync, not kept: the log is deleted when a database's last
            // connection closes, and a kept descriptor would then sync a file no one uses.
            let result = File::open(&self.wal).and_then(|log| log.sync_data());
            state = self.lock();
            state.syncing = false;
            state.syncs += 1;
            match result {
                Ok(()) => state.durable_through = state.durable_through.max(through),
                Err(e) => {
                    tracing::error!(wal = %self.wal.display(), error = %e, "syncing a write-ahead log failed; commits to its database are not promised durable until a restart");
                    state.failed.get_or_insert(SyncFailed {
                        path: self.wal.clone(),
                        why: e.to_string().into(),
                    });
                }
            }
            self.synced.notify_all();
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is a few plain assignments: a panic cannot leave them half done.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's newest commit that may not be on disk yet.
#[derive(Debug, Clone)]
pub struct PendingSync {
    sync: Arc<WalSync>,
    /// 0: none.
    ticket: Arc<AtomicU64>,
}

impl PendingSync {
    /// Called by the connection's WAL hook right after each of its commits.
    pub fn committed(&self) {
        self.ticket.store(self.sync.ticket(), Ordering::Release);
    }

    /// How many syncs of the database's log have run.
    pub fn syncs(&self) -> u64 {
        self.sync.syncs()
    }

    /// Returns once the connection's commits so far are on disk.
    pub fn wait(&self) -> Result<(), SyncFailed> {
        match self.ticket.swap(0, Ordering::AcqRel) {
            0 => Ok(()),
            ticket => self.sync.wait(ticket),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> PathBuf {
        let path = dir.join("d.sqlite");
        std::fs::write(dir.join("d.sqlite-wal"), b"frames").unwrap();
        path
    }

    #[test]
    fn a_connection_without_commits_waits_for_no_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(WalSync::new(&database(dir.path())));
        let pending = sync.connection();
        pending.wait().unwrap();
        pending.committed();
        pending.wait().unwrap();
        pending.wait().unwrap();
        assert_eq!(
            sync.syncs(),
            1,
            "one commit, one sync; a second wait has nothing to sync"
        );
    }

    #[test]
    fn commits_taken_before_a_sync_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(WalSync::new(&database(dir.path())));
        let connections: Vec<PendingSync> = (0..4).map(|_| sync.connection()).collect();
        for c in &connections {
            c.committed();
        }
        for c in &connections {
            c.wait().unwrap();
        }
        assert_eq!(sync.syncs(), 1);
    }

    #[test]
    fn a_failed_sync_fails_every_later_commit_until_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        // No log beside it: the sync cannot open it.
        let sync = Arc::new(WalSync::new(&dir.path().join("gone.sqlite")));
        let first = sync.connection();
        first.committed();
        let error = first.wait().unwrap_err().to_string();
        assert!(error.contains("gone.sqlite-wal"), "{error}");
        assert!(error.contains("restart"), "{error}");
        std::fs::write(dir.path().join("gone.sqlite-wal"), b"frames").unwrap();
        let later = sync.connection();
        later.committed();
        assert!(
            later.wait().is_err(),
            "a sync after a failed one proves nothing"
        );
        assert_eq!(sync.syncs(), 1);
    }
}
