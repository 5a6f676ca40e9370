//! When each transaction committed, as continuous archiving needs it: every connection the
//! server opens to a watched database gets SQLite's WAL hook, which runs right after each
//! commit with the log's length in frames. The hook stamps the time and the log's
//! generation (read from the log's header then) so that the archiver can give each commit
//! frame it ships its commit time. A WAL hook also replaces SQLite's automatic checkpoints
//! on that connection: the archiver checkpoints, after it has shipped (and a commit past the
//! log's hard bound, twice `max_wal`, checkpoints, so that the disk never fills).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The commit times remembered per database while no archiver takes them (a bound).
const MAX_PENDING: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The databases continuous archiving watches, and their commit clocks.
#[derive(Debug)]
pub struct CommitClocks {
    /// Names, or `*` for every database.
    databases: Vec<String>,
    clocks: Mutex<HashMap<String, Arc<CommitClock>>>,
}

impl CommitClocks {
    pub fn new(databases: Vec<String>) -> CommitClocks {
        CommitClocks {
            databases,
            clocks: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `database` is archived continuously.
    pub fn watches(&self, database: &str) -> bool {
        self.databases.iter().any(|d| d == "*" || d == database)
    }

    /// The clock of `database` (whose file is `path`), if it is watched.
    pub fn clock(&self, database: &str, path: &Path) -> Option<Arc<CommitClock>> {
        if !self.watches(database) {
            return None;
        }
        let mut clocks = lock(&self.clocks);
        let clock = clocks
            .entry(database.to_owned())
            .or_insert_with(|| Arc::new(CommitClock::new(wal_path(path))));
        Some(Arc::clone(clock))
    }
}

impl crate::catalog::CommitObserver for CommitClocks {
    fn observer(&self, database: &str, path: &Path) -> Option<crate::catalog::OnCommit> {
        let clock = self.clock(database, path)?;
        Some(Box::new(move |frames| clock.record(frames)))
    }
}

/// The log beside a database file.
pub fn wal_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

/// One commit as the hook saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    generation: u64,
    frames: u32,
    at: i64,
}

/// The commits of one database not yet given to the archiver.
#[derive(Debug)]
pub struct CommitClock {
    wal_path: PathBuf,
    wal: Mutex<Option<File>>,
    stamps: Mutex<VecDeque<Stamp>>,
    /// See [`CommitClock::bound_log`].
    hard_bound: AtomicU32,
    forced: AtomicBool,
}

/// Now, in Unix microseconds.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl CommitClock {
    fn new(wal_path: PathBuf) -> CommitClock {
        CommitClock {
            wal_path,
            wal: Mutex::new(None),
            stamps: Mutex::new(VecDeque::new()),
            hard_bound: AtomicU32::new(0),
            forced: AtomicBool::new(false),
        }
    }

    /// Called right after a commit that left the log `frames` frames long; whether the log
    /// must be checkpointed now (it is past the hard bound, unshipped).
    pub fn record(&self, frames: i32) -> bool {
        let at = now_micros();
        let generation = self.generation().unwrap_or(0);
        let mut stamps = lock(&self.stamps);
        if stamps.len() >= MAX_PENDING {
            stamps.pop_front();
        }
        stamps.push_back(Stamp {
            generation,
            frames: u32::try_from(frames).unwrap_or(0),
            at,
        });
        drop(stamps);
        let bound = self.hard_bound.load(Ordering::Relaxed);
        if bound != 0 && i64::from(frames) >= i64::from(bound) {
            self.forced.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// A commit that leaves the log `frames` frames long or longer checkpoints it (0:
    /// never): the bound holds however fast writers are.
    pub fn bound_log(&self, frames: u32) {
        self.hard_bound.store(frames, Ordering::Relaxed);
    }

    /// Whether a commit checkpointed the log past its bound since the last call.
    pub fn take_forced(&self) -> bool {
        self.forced.swap(false, Ordering::Relaxed)
    }

    /// The log's generation now (its salts), from its header.
    fn generation(&self) -> Option<u64> {
        let mut wal = lock(&self.wal);
        if wal.is_none() {
            *wal = File::open(&self.wal_path).ok();
        }
        let mut salts = [0u8; 8];
        wal.as_ref()?.read_exact_at(&mut salts, 16).ok()?;
        Some(u64::from_be_bytes(salts))
    }

    /// Moves the stamps so far into `into`, by (generation, frame count).
    pub fn drain_into(&self, into: &mut BTreeMap<(u64, u32), i64>) {
        for stamp in lock(&self.stamps).drain(..) {
            into.insert((stamp.generation, stamp.frames), stamp.at);
        }
    }

    /// Forgets the log file handle (the log was deleted or replaced).
    pub fn reopen(&self) {
        *lock(&self.wal) = None;
    }
}
