//! Group commit: the commits of a database's sessions share fdatasyncs of its write-ahead
//! log instead of paying one each while they hold SQLite's write lock.
//!
//! A session's connection runs with `synchronous = NORMAL`, so SQLite writes a commit's
//! frames to the log without syncing it, and its commit hook marks that it committed. Once
//! the statement has finished (and SQLite's write lock is released), the commit takes a
//! ticket, and before its client hears of it the session waits until a sync of the log that
//! began after the ticket was taken has finished. One waiter at a time syncs (the leader);
//! the commits that arrive while it does are covered by the next sync, which one of them
//! leads.
//!
//! Promised, as by `synchronous = FULL`: a commit is on disk when its client hears of it.
//! Not promised: SQLite shows a commit to the other connections once its frames are written,
//! so another session may read it up to one sync before it is durable (PostgreSQL shows it
//! only after), and the continuous archiver may ship a commit before it is on the local disk.
//! Checkpoints sync the log before copying it, as they do under FULL.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::write_turns::WriteTurns;

/// A commit could not be promised durable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncFailed {
    /// A sync of the log failed: its commits since the last good sync may not survive a power
    /// loss, and none is promised durable from then on (the kernel may have dropped the pages
    /// it could not write, so a later sync proves nothing).
    #[error(
        "the commit was written, but the write-ahead log {path} could not be synced to disk ({why}), so it may not survive a power loss; no commit to this database is promised durable until the server is restarted: check the disk, then restart"
    )]
    Lasting { path: PathBuf, why: Arc<str> },
    /// The log could not be opened to sync it (out of file descriptors, say): this commit is
    /// not promised durable, and the next one tries again.
    #[error(
        "the commit was written, but the write-ahead log {path} could not be opened to sync it ({why}), so it may not survive a power loss; later commits try again (if the server is out of file descriptors, raise its limit)"
    )]
    Passing { path: PathBuf, why: Arc<str> },
}

impl SyncFailed {
    /// Why a write is refused once a sync has failed.
    pub fn refusal(&self) -> String {
        match self {
            SyncFailed::Lasting { path, why } | SyncFailed::Passing { path, why } => format!(
                "cannot write to this database: a sync of its write-ahead log {} failed ({why}), so no commit can be promised durable; check the disk, then restart the server",
                path.display()
            ),
        }
    }
}

/// The syncs of one database's write-ahead log, shared by its sessions' connections.
#[derive(Debug)]
pub struct WalSync {
    wal: PathBuf,
    state: Mutex<State>,
    synced: Condvar,
    /// The turns of the sessions' brief writes at SQLite's write lock.
    turns: Arc<WriteTurns>,
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
    /// The connections waiting on this log's syncs.
    connections: usize,
    /// The log, opened at the first sync and kept while any of them is open: SQLite deletes
    /// the log only when the database's last connection closes, so while one of these is
    /// open the kept file is the log. Not opened for each sync: a descriptor opened after a
    /// write error was seen elsewhere (by a checkpoint's own sync) would not see it, and
    /// would call the lost commits durable; and a `stat` of the log to notice a new file
    /// made each sync a fifth slower here.
    log: Option<File>,
}

impl WalSync {
    /// The syncs of the log of the database file at `database` (as SQLite named it when it
    /// opened it, so that the log is `…-wal` beside it).
    pub fn new(database: &Path) -> WalSync {
        let mut wal = database.as_os_str().to_owned();
        wal.push("-wal");
        WalSync {
            wal: PathBuf::from(wal),
            state: Mutex::new(State::default()),
            synced: Condvar::new(),
            turns: Arc::default(),
        }
    }

    /// A connection of this database to wait on, for the commits it marks in `committed`
    /// (its commit hook sets it).
    pub fn connection(self: &Arc<Self>, committed: Arc<AtomicBool>) -> PendingSync {
        self.lock().connections += 1;
        PendingSync {
            sync: Arc::clone(self),
            committed,
        }
    }

    /// How many syncs of the log have run.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// The failed sync after which no commit is promised durable, if one has failed.
    pub fn failed(&self) -> Option<SyncFailed> {
        self.lock().failed.clone()
    }

    /// A ticket for a commit whose frames are written.
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
            let kept = state.log.take();
            drop(state);
            let (result, log) = self.sync_log(kept);
            state = self.lock();
            state.syncing = false;
            state.syncs += 1;
            if state.connections > 0 {
                state.log = log;
            }
            self.synced.notify_all();
            match result {
                Ok(()) => state.durable_through = state.durable_through.max(through),
                Err(failed @ SyncFailed::Passing { .. }) => return Err(failed),
                Err(failed @ SyncFailed::Lasting { .. }) => {
                    tracing::error!(error = %failed, "syncing a write-ahead log failed; commits to its database are not promised durable until a restart");
                    state.failed.get_or_insert(failed);
                }
            }
        }
    }

    /// Syncs the log through the kept descriptor, opened now if there is none.
    fn sync_log(&self, kept: Option<File>) -> (Result<(), SyncFailed>, Option<File>) {
        let file = match kept {
            Some(file) => file,
            None => match File::open(&self.wal) {
                Ok(file) => file,
                Err(e) => {
                    let failed = SyncFailed::Passing {
                        path: self.wal.clone(),
                        why: e.to_string().into(),
                    };
                    return (Err(failed), None);
                }
            },
        };
        let synced = file.sync_data().map_err(|e| SyncFailed::Lasting {
            path: self.wal.clone(),
            why: e.to_string().into(),
        });
        (synced, Some(file))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each update is a few plain assignments: a panic cannot leave them half done.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One connection's commits that may not be on disk yet.
#[derive(Debug)]
pub struct PendingSync {
    sync: Arc<WalSync>,
    /// Set by the connection's commit hook, cleared by its rollback hook (a commit that fails
    /// after its hook ran is rolled back); a commit's frames are written once its statement
    /// has finished, which is when the session waits.
    committed: Arc<AtomicBool>,
}

impl PendingSync {
    /// How many syncs of the database's log have run.
    pub fn syncs(&self) -> u64 {
        self.sync.syncs()
    }

    /// The failed sync after which no commit to this database is promised durable.
    pub fn failed(&self) -> Option<SyncFailed> {
        self.sync.failed()
    }

    /// The turns at the database's write lock, which its sessions' brief writes take.
    pub fn turns(&self) -> Arc<WriteTurns> {
        Arc::clone(&self.sync.turns)
    }

    /// Whether the connection has committed since the last [`PendingSync::wait`].
    pub fn has_committed(&self) -> bool {
        self.committed.load(Ordering::Acquire)
    }

    /// The flag the connection's commit hook sets, for others that must know a statement
    /// has committed (the brief run's deadline).
    pub fn commit_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.committed)
    }

    /// Returns once the connection's commits so far are on disk. Called after the statement
    /// that committed has finished (been reset), so its frames are written: a statement
    /// reset before its end (a RETURNING result closed early) commits in the reset, and
    /// SQLite's WAL hook would not have told of it.
    pub fn wait(&self) -> Result<(), SyncFailed> {
        if !self.committed.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let ticket = self.sync.ticket();
        self.sync.wait(ticket)
    }
}

/// Dropped before its connection closes (the session declares it first), so that the kept
/// log is let go before SQLite may delete it.
impl Drop for PendingSync {
    fn drop(&mut self) {
        let mut state = self.sync.lock();
        state.connections = state.connections.saturating_sub(1);
        if state.connections == 0 {
            // The last one's gone: the log may be deleted now, and must not be held open.
            state.log = None;
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

    fn connection(sync: &Arc<WalSync>) -> (PendingSync, Arc<AtomicBool>) {
        let committed = Arc::new(AtomicBool::new(false));
        (sync.connection(Arc::clone(&committed)), committed)
    }

    fn kept_inode(sync: &WalSync) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        sync.lock()
            .log
            .as_ref()
            .map(|file| file.metadata().unwrap().ino())
    }

    #[test]
    fn a_connection_without_commits_waits_for_no_sync() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(WalSync::new(&database(dir.path())));
        let (pending, committed) = connection(&sync);
        pending.wait().unwrap();
        assert_eq!(sync.syncs(), 0);
        committed.store(true, Ordering::Release);
        pending.wait().unwrap();
        pending.wait().unwrap();
        assert_eq!(
            sync.syncs(),
            1,
            "one commit, one sync; the second wait has none"
        );
    }

    #[test]
    fn commits_whose_tickets_were_taken_before_a_sync_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(WalSync::new(&database(dir.path())));
        let tickets: Vec<u64> = (0..4).map(|_| sync.ticket()).collect();
        for ticket in tickets {
            sync.wait(ticket).unwrap();
        }
        assert_eq!(sync.syncs(), 1);
    }

    #[test]
    fn a_log_that_cannot_be_opened_fails_that_commit_only() {
        let dir = tempfile::tempdir().unwrap();
        let sync = Arc::new(WalSync::new(&dir.path().join("gone.sqlite")));
        let (pending, committed) = connection(&sync);
        committed.store(true, Ordering::Release);
        let error = pending.wait().unwrap_err();
        assert!(matches!(error, SyncFailed::Passing { .. }), "{error}");
        assert!(error.to_string().contains("gone.sqlite-wal"), "{error}");
        assert!(sync.failed().is_none());
        std::fs::write(dir.path().join("gone.sqlite-wal"), b"frames").unwrap();
        committed.store(true, Ordering::Release);
        pending.wait().unwrap();
    }

    /// SQLite deletes the log when the database's last connection closes and starts a new
    /// file at the next: a descriptor kept from before would sync a deleted file.
    #[test]
    fn the_log_is_let_go_with_the_last_connection_and_a_new_one_is_opened_after() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("d.sqlite-wal");
        let sync = Arc::new(WalSync::new(&database(dir.path())));
        let (first, committed) = connection(&sync);
        committed.store(true, Ordering::Release);
        first.wait().unwrap();
        let old = std::fs::metadata(&wal).unwrap().ino();
        assert_eq!(kept_inode(&sync), Some(old));
        drop(first);
        assert_eq!(kept_inode(&sync), None);
        // A new log, while the old one's inode is still taken.
        let held = File::open(&wal).unwrap();
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(&wal, b"frames").unwrap();
        let new = std::fs::metadata(&wal).unwrap().ino();
        assert_ne!(old, new);
        drop(held);
        let (second, committed) = connection(&sync);
        committed.store(true, Ordering::Release);
        second.wait().unwrap();
        assert_eq!(kept_inode(&sync), Some(new));
    }
}
