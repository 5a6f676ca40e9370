//! One database's continuous archiver: every interval it reads the committed frames the log
//! gained, ships them as a segment, and only then lets a checkpoint copy them back into the
//! database (so no frame is overwritten before it is shipped); it takes base archives, writes
//! their markers, removes what the oldest kept base no longer needs, and keeps the log
//! bounded when the destination fails.
//!
//! Why nothing is lost: the server's connections to a watched database never checkpoint by
//! themselves (their WAL hook replaces SQLite's automatic checkpoints), so only this archiver
//! copies frames back, and the log only starts again at frame 1 once every frame was copied
//! back. Each step pins a read transaction while holding the write lock for an instant, so
//! the pin is at the log's end as it was read; the checkpoint that follows cannot copy past
//! the pin. If the log is restarted by anyone else all the same (a `sqlite3` shell on the
//! file), or must be checkpointed unshipped because the destination is down past `max_wal`,
//! the stream gets a gap (a skipped sequence number, so no replay crosses it) and a new base
//! is taken.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::ContinuousConfig;
use super::commits::{CommitClock, now_micros, wal_path};
use super::segment::{MAX_PAGE_BYTES, Segment};
use super::store::{BaseMarker, IDLE_NOTE, Idle, MARKER_FORMAT, Store};
use super::wal::{self, Frame, Position};
use crate::backup::{BackupError, BackupOptions, Backups, Job, chain};
use crate::catalog::{Access, Catalog};

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long a commit frame waits for its commit time from the hook (which runs right after
/// the commit) before the time it was read stands in.
const STAMP_PATIENCE: Duration = Duration::from_millis(200);
/// After how long of failing uploads an alert is raised.
const ALERT_AFTER: Duration = Duration::from_secs(30);
/// How often an idle stream says it is still complete (so that an instant after its last
/// transaction can be restored to).
const IDLE_EVERY: Duration = Duration::from_secs(10);

/// Set once, at shutdown; waited on between steps.
#[derive(Debug, Default)]
pub struct StopSignal {
    stopped: Mutex<bool>,
    changed: Condvar,
}

impl StopSignal {
    pub fn set(&self) {
        *lock(&self.stopped) = true;
        self.changed.notify_all();
    }

    /// Waits up to `timeout`; whether stopping was asked for.
    pub fn wait(&self, timeout: Duration) -> bool {
        let guard = lock(&self.stopped);
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |stopped| !*stopped)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard
    }
}

/// A running archiver's thread.
#[derive(Debug)]
pub struct Handle(std::thread::JoinHandle<()>);

impl Handle {
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// Where the base archive stands.
#[derive(Debug)]
enum Base {
    /// One is to be taken (at start, after a gap, when `base_every` has passed).
    Due,
    /// Being written; segments from `replay_from` on replay onto it.
    Running { job: Job, replay_from: u64 },
    /// Written; its marker goes once the log has been shipped past it.
    Written {
        base: String,
        created_at: String,
        replay_from: u64,
    },
    /// Its marker is written.
    Current { since: Instant },
}

#[derive(Debug)]
pub struct Archiver {
    database: String,
    path: PathBuf,
    /// The database file's device and inode: another file under its name is another database.
    identity: (u64, u64),
    config: Arc<ContinuousConfig>,
    backups: Arc<Backups>,
    clock: Arc<CommitClock>,
    store: Store,
    /// Holds the read transaction that bounds each checkpoint.
    reader: Connection,
    /// Takes the write lock for an instant, and checkpoints.
    writer: Connection,
    wal: Option<File>,
    /// After the last frame shipped (or skipped at start: the first base holds those).
    position: Option<Position>,
    /// Whether what the log held when archiving (re)started was skipped: after that, a log
    /// that appears is read from its first frame.
    skipped: bool,
    /// Where the last checkpoint had copied everything back (a restart then loses nothing).
    checkpointed: Option<Position>,
    next_sequence: u64,
    stamps: BTreeMap<(u64, u32), i64>,
    last_commit_time: i64,
    base: Base,
    failing_since: Option<Instant>,
    alerted: bool,
    /// When the stream last said how far it is complete (a segment, or the idle note).
    last_said: Option<Instant>,
}

impl Archiver {
    /// Opens the database and its stream, and starts the archiver's thread.
    pub fn spawn(
        database: String,
        path: PathBuf,
        config: Arc<ContinuousConfig>,
        backups: Arc<Backups>,
        catalog: Arc<Catalog>,
        clock: Arc<CommitClock>,
        stop: Arc<StopSignal>,
    ) -> Result<Handle, BackupError> {
        let io = |source| BackupError::Io {
            action: "reading",
            path: path.clone(),
            source,
        };
        let metadata = std::fs::metadata(&path).map_err(io)?;
        let reader = catalog.open_unleased(&database, Access::ReadOnly)?;
        let writer = catalog.open_unleased(&database, Access::ReadWrite)?;
        let store = Store::of(
            backups.rules(),
            backups.destinations(),
            &config.destination,
            &database,
        )?;
        // The stream goes on after the newest segment there, past a gap: this start is one
        // (what the log held before it is in the first base).
        let newest = store
            .list()?
            .iter()
            .filter_map(|name| Segment::sequence_of(name))
            .max()
            .unwrap_or(0);
        let mut archiver = Archiver {
            database,
            identity: (metadata.dev(), metadata.ino()),
            path,
            config,
            backups,
            clock,
            store,
            reader,
            writer,
            wal: None,
            position: None,
            skipped: false,
            checkpointed: None,
            next_sequence: if newest == 0 { 1 } else { newest + 2 },
            stamps: BTreeMap::new(),
            last_commit_time: 0,
            base: Base::Due,
            failing_since: None,
            alerted: false,
            last_said: None,
        };
        let name = format!("archiver-{}", archiver.database);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || archiver.run(&stop))
            .map(Handle)
            .map_err(|source| BackupError::Io {
                action: "starting a thread for",
                path: PathBuf::from("continuous archiving"),
                source,
            })
    }

    fn run(&mut self, stop: &StopSignal) {
        tracing::info!(database = %self.database, stream = %self.store.display(""), "continuous archiving started");
        // Steps start every interval (not an interval after the last one ended): a commit
        // waits at most the interval, plus its own step's upload, to be shipped.
        let mut next = Instant::now();
        loop {
            if !self.same_file() {
                tracing::info!(database = %self.database, "the database was dropped or replaced; its stream ends here (a new one starts with a new base if it is there again)");
                return;
            }
            next += self.config.interval;
            self.step(true);
            // A step that overran starts the next at once, with no burst to catch up.
            let now = Instant::now();
            next = next.max(now);
            if stop.wait(next - now) {
                // The last step: everything committed until now is shipped before the
                // server's final checkpoint (no new base: the server is stopping).
                self.step(false);
                tracing::info!(database = %self.database, "continuous archiving stopped");
                return;
            }
        }
    }

    /// Whether the file under the database's name is still the one this archiver opened.
    fn same_file(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.identity)
    }

    /// One step: the base's progress, shipping, checkpointing, and (`may_start_base`) a new
    /// base when due.
    fn step(&mut self, may_start_base: bool) {
        self.follow_base();
        match self.ship() {
            Ok(()) => {
                if self.failing_since.take().is_some() {
                    tracing::info!(database = %self.database, "continuous archiving ships again");
                }
                self.alerted = false;
                self.write_marker();
            }
            Err(e) => self.failed(&e),
        }
        // Not while shipping fails: its snapshot would pin the log (and a store that is
        // down would refuse the base too).
        if matches!(self.base, Base::Due) && may_start_base && self.failing_since.is_none() {
            self.start_base();
        } else if let Base::Current { since } = self.base
            && since.elapsed() >= self.config.base_every
        {
            self.base = Base::Due;
        }
    }

    /// The log file, opened when it exists.
    fn wal(&mut self) -> Option<&File> {
        if self.wal.is_none() {
            self.wal = File::open(wal_path(&self.path)).ok();
        }
        self.wal.as_ref()
    }

    /// Reads and ships every committed frame the log gained, then checkpoints what was
    /// shipped.
    fn ship(&mut self) -> Result<(), BackupError> {
        let path = self.path.clone();
        let wal_io = |source| BackupError::Io {
            action: "reading the write-ahead log of",
            path: path.clone(),
            source,
        };
        let Some(wal) = self.wal() else {
            return Ok(());
        };
        let wal = wal.try_clone().map_err(wal_io)?;
        let Some(header) = wal::header(&wal).map_err(wal_io)? else {
            // No log yet (or one being created): nothing committed since the last checkpoint.
            self.wal = None;
            self.clock.reopen();
            self.skipped = true;
            return Ok(());
        };
        // A commit that takes the log past twice max_wal checkpoints it at once, however fast
        // the writers (the archiver looks only once an interval).
        let frame = wal::FRAME_HEADER_BYTES + u64::from(header.page_size);
        self.clock
            .bound_log((2 * self.config.max_wal / frame).min(u64::from(u32::MAX - 1)) as u32);
        if self.clock.take_forced() {
            self.overflowed("a commit took the log past twice max_wal before it was shipped");
        }
        let from = match self.position {
            None if !self.skipped => {
                // At start: what the log holds now is in the first base.
                let end = end_of(&wal, Position::start(header)).map_err(wal_io)?;
                self.position = Some(end);
                self.skipped = true;
                return Ok(());
            }
            None => Position::start(header),
            Some(p) if p.header == header => p,
            Some(p) => {
                if self.checkpointed != Some(p) {
                    self.gap("the log was restarted before it was shipped (by a process other than this server?)");
                }
                Position::start(header)
            }
        };
        // Most of it before the pin: a pin held while a slow (or failing) store is written
        // would keep the log from starting again. (Frames a restart overwrote meanwhile fail
        // their checksums and end the read; none is lost, as only this archiver restarts it.)
        let started = now_micros();
        let begin = from;
        let from = self.ship_from(&wal, from)?;
        // The pin, taken while no transaction can commit (an instant under the write lock),
        // so that it is at the log's end; it bounds the checkpoint only if the log then held
        // frames not yet copied back.
        self.writer
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.sqlite("taking the write lock of", e))?;
        let pinned = self.pin();
        let unread = match self.checkpointed {
            Some(done) if done.header == header => wal::frame_follows(&wal, done),
            _ => Ok(true),
        };
        let _ = self.writer.execute_batch("COMMIT");
        let result = pinned.and_then(|()| {
            let unread = unread.map_err(wal_io)?;
            let at = self.ship_from(&wal, from)?;
            if at == begin {
                self.say_idle(started)?;
            }
            if unread { self.checkpoint(at) } else { Ok(()) }
        });
        let _ = self.reader.execute_batch("COMMIT");
        result
    }

    /// Begins the read transaction that bounds the checkpoint.
    fn pin(&self) -> Result<(), BackupError> {
        self.reader
            .execute_batch("BEGIN")
            .and_then(|()| {
                self.reader
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| {
                        r.get::<_, i64>(0)
                    })
            })
            .map(drop)
            .map_err(|e| self.sqlite("pinning a read of", e))
    }

    /// With nothing to ship, now and then: everything committed before `at` is in the
    /// segments so far.
    fn say_idle(&mut self, at: i64) -> Result<(), BackupError> {
        if self.last_said.is_some_and(|t| t.elapsed() < IDLE_EVERY) {
            return Ok(());
        }
        let note = Idle {
            through: self.next_sequence - 1,
            complete_at: at,
        };
        let bytes = serde_json::to_vec(&note).map_err(|e| BackupError::Io {
            action: "writing the idle note of",
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.store.put(IDLE_NOTE, bytes)?;
        self.last_said = Some(Instant::now());
        Ok(())
    }

    /// Ships the committed frames after `from` in segments; the one that reaches the log's
    /// end is marked complete. Returns the position after the last frame shipped.
    fn ship_from(&mut self, wal: &File, from: Position) -> Result<Position, BackupError> {
        let mut at = from;
        loop {
            // Everything committed before this instant is in the log now.
            let started = now_micros();
            let (frames, end) =
                wal::committed_after(wal, at, MAX_PAGE_BYTES).map_err(|source| {
                    BackupError::Io {
                        action: "reading the write-ahead log of",
                        path: self.path.clone(),
                        source,
                    }
                })?;
            if frames.is_empty() {
                return Ok(at);
            }
            let more = frames.len() as u64 * u64::from(at.header.page_size) >= MAX_PAGE_BYTES;
            let commit_times = self.commit_times(at, &frames, started);
            let segment = Segment {
                sequence: self.next_sequence,
                page_size: at.header.page_size,
                generation: at.header.generation(),
                first_frame: at.frame + 1,
                shipped_at: started,
                complete: !more,
                frames,
                commit_times,
            };
            let bytes = segment.encode().map_err(|source| BackupError::Io {
                action: "compressing a segment of",
                path: self.path.clone(),
                source,
            })?;
            self.store.put(&Segment::name(segment.sequence), bytes)?;
            self.next_sequence += 1;
            self.last_said = Some(Instant::now());
            at = end;
            self.position = Some(end);
            if !more {
                return Ok(at);
            }
        }
    }

    /// The commit time of each commit frame in `frames` (which follow `at`): the hook's
    /// stamp, waited for briefly; never earlier than the commit before.
    fn commit_times(&mut self, at: Position, frames: &[Frame], fallback: i64) -> Vec<i64> {
        let generation = at.header.generation();
        self.clock.drain_into(&mut self.stamps);
        let mut times = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            if frame.commit_pages == 0 {
                continue;
            }
            let number = at.frame + i as u32 + 1;
            let mut stamp = self.stamps.remove(&(generation, number));
            let deadline = Instant::now() + STAMP_PATIENCE;
            while stamp.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
                self.clock.drain_into(&mut self.stamps);
                stamp = self.stamps.remove(&(generation, number));
            }
            let time = stamp.unwrap_or_else(|| {
                tracing::debug!(database = %self.database, frame = number, "a commit without a time from the hook (a connection this server did not open?); the time it was read stands in");
                fallback
            });
            let time = time.max(self.last_commit_time);
            self.last_commit_time = time;
            times.push(time);
        }
        let last = at.frame + frames.len() as u32;
        self.stamps
            .retain(|(g, n), _| *g == generation && *n > last);
        times
    }

    /// Copies shipped frames back into the database (never past the pin).
    fn checkpoint(&mut self, shipped: Position) -> Result<(), BackupError> {
        let (busy, log, copied): (i64, i64, i64) = self
            .writer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| self.sqlite("checkpointing", e))?;
        self.checkpointed =
            (busy == 0 && log == copied && log == i64::from(shipped.frame)).then_some(shipped);
        Ok(())
    }

    fn sqlite(&self, action: &'static str, source: rusqlite::Error) -> BackupError {
        BackupError::Sqlite {
            action,
            path: self.path.clone(),
            source,
        }
    }

    /// The stream cannot be replayed across this point: the sequence skips a number, and a
    /// new base is taken.
    fn gap(&mut self, why: &str) {
        tracing::warn!(database = %self.database, segment = self.next_sequence, "the continuous archive has a gap: {why}; a new base archive is taken");
        self.next_sequence += 1;
        self.base = Base::Due;
    }

    /// A step that could not ship: alert once it lasts, and past `max_wal` checkpoint anyway.
    fn failed(&mut self, e: &BackupError) {
        let since = *self.failing_since.get_or_insert_with(Instant::now);
        tracing::warn!(database = %self.database, error = %e, "continuous archiving could not ship; retrying every interval");
        let unshipped = self.unshipped_bytes();
        if unshipped > self.config.max_wal {
            self.overflowed(&format!("{unshipped} bytes behind; last error: {e}"));
            let _ = self
                .writer
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        } else if !self.alerted && since.elapsed() >= ALERT_AFTER {
            let message = format!(
                "continuous archiving of {:?} to {} has failed for {} s ({unshipped} bytes of log unshipped; at {} the log is checkpointed anyway): {e}",
                self.database,
                self.config.destination,
                since.elapsed().as_secs(),
                self.config.max_wal
            );
            self.backups.alert(&self.database, &message);
            self.alerted = true;
        }
    }

    /// The log was (or is about to be) checkpointed unshipped to stay bounded: an alert, and
    /// a gap in the stream.
    fn overflowed(&mut self, why: &str) {
        let message = format!(
            "continuous archiving of {:?} to {} could not keep up ({why}; max_wal is {}): the log was checkpointed unshipped to keep it bounded, so the stream has a gap; a new base is taken once the destination works",
            self.database, self.config.destination, self.config.max_wal
        );
        self.backups.alert(&self.database, &message);
        self.alerted = true;
        self.position = None;
        self.skipped = false;
        self.checkpointed = None;
        self.gap("the log was checkpointed before it was shipped");
    }

    /// The committed log after the last frame shipped, in bytes.
    fn unshipped_bytes(&mut self) -> u64 {
        let Some(position) = self.position else {
            return 0;
        };
        let Some(wal) = self.wal() else {
            return 0;
        };
        let Ok(Some(header)) = wal::header(wal) else {
            return 0;
        };
        let from = if header == position.header {
            position
        } else {
            Position::start(header)
        };
        let frames = end_of(wal, from).map_or(0, |end| end.frame - position.frame.min(end.frame));
        u64::from(frames) * (wal::FRAME_HEADER_BYTES + u64::from(header.page_size))
    }

    /// Starts a base archive (a full archive into the collection).
    fn start_base(&mut self) {
        let started = self.backups.start_into(
            &self.database,
            &self.config.destination,
            false,
            true,
            BackupOptions::default(),
            "continuous archiving",
        );
        match started {
            Ok(job) => {
                self.base = Base::Running {
                    job,
                    replay_from: self.next_sequence,
                }
            }
            // Someone's backup of the database is running: the next step tries again.
            Err(e) => {
                tracing::debug!(database = %self.database, error = %e, "the base archive could not start yet")
            }
        }
    }

    /// Moves a finished base job on.
    fn follow_base(&mut self) {
        let Base::Running { job, replay_from } = &self.base else {
            return;
        };
        if !job.is_done() {
            return;
        }
        let replay_from = *replay_from;
        self.base = match job.finished() {
            Ok((crate::backup::jobs::Product::Archive(written), _)) => Base::Written {
                base: chain::file_name(&written.path.display().to_string()).to_owned(),
                created_at: written.manifest.created_at,
                replay_from,
            },
            Ok(_) => Base::Due,
            Err(e) => {
                tracing::warn!(database = %self.database, error = %e, "the base archive failed; trying again");
                Base::Due
            }
        };
        // (A gap while it was written made the base due again: that one is never marked.)
    }

    /// Writes the marker of a written base, once the log is shipped past it; then removes
    /// the bases beyond `keep_bases` and the segments no kept base needs.
    fn write_marker(&mut self) {
        let Base::Written {
            base,
            created_at,
            replay_from,
        } = &self.base
        else {
            return;
        };
        let marker = BaseMarker {
            format: MARKER_FORMAT.into(),
            version: 1,
            database: self.database.clone(),
            base: base.clone(),
            base_created_at: created_at.clone(),
            replay_from: *replay_from,
            through: self.next_sequence - 1,
        };
        let bytes = match serde_json::to_vec_pretty(&marker) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(error = %e, "a base marker could not be written");
                return;
            }
        };
        match self.store.put(&BaseMarker::name_for(&marker.base), bytes) {
            Ok(()) => {
                tracing::info!(database = %self.database, base = %marker.base, replay_from = marker.replay_from, "base archive of the continuous archive");
                self.base = Base::Current {
                    since: Instant::now(),
                };
                self.retain();
            }
            Err(e) => {
                tracing::warn!(database = %self.database, error = %e, "the base marker could not be written; trying again")
            }
        }
    }

    /// Keeps the newest `keep_bases` bases; removes older ones (unless an increment someone
    /// wrote builds on one) with their markers, and the segments before the oldest kept.
    fn retain(&self) {
        let Ok(names) = self.store.list() else {
            return;
        };
        let mut markers: Vec<(String, BaseMarker)> = names
            .iter()
            .filter(|n| BaseMarker::is_marker_name(n))
            .filter_map(|n| {
                let bytes = self.store.get(n).ok()?;
                let marker: BaseMarker = serde_json::from_slice(&bytes).ok()?;
                (marker.database == self.database).then(|| (n.clone(), marker))
            })
            .collect();
        markers.sort_by(|a, b| b.1.base_created_at.cmp(&a.1.base_created_at));
        if markers.len() <= self.config.keep_bases {
            return;
        }
        let needed: std::collections::BTreeSet<String> = self
            .backups
            .archives(&self.config.destination, false)
            .map(|list| list.into_iter().filter_map(|a| a.parent).collect())
            .unwrap_or_default();
        let (kept, old) = markers.split_at(self.config.keep_bases);
        let mut oldest_needed = kept.iter().map(|(_, m)| m.replay_from).min().unwrap_or(0);
        for (name, marker) in old {
            if needed.contains(&marker.base) {
                oldest_needed = oldest_needed.min(marker.replay_from);
                continue;
            }
            let location = chain::in_collection(&self.config.destination, &marker.base);
            match self
                .backups
                .delete_archive(&location, "continuous archiving")
                .and_then(|_| self.store.delete(name))
            {
                Ok(()) => {
                    tracing::info!(database = %self.database, base = %marker.base, "old base archive of the continuous archive removed")
                }
                Err(e) => {
                    tracing::warn!(database = %self.database, base = %marker.base, error = %e, "an old base could not be removed");
                    oldest_needed = oldest_needed.min(marker.replay_from);
                }
            }
        }
        for name in &names {
            if Segment::sequence_of(name).is_some_and(|s| s < oldest_needed)
                && let Err(e) = self.store.delete(name)
            {
                tracing::warn!(database = %self.database, segment = %name, error = %e, "an old segment could not be removed");
            }
        }
    }
}

/// The position after the last committed frame of the log after `from`.
fn end_of(wal: &File, from: Position) -> std::io::Result<Position> {
    let mut at = from;
    loop {
        let (frames, end) = wal::committed_after(wal, at, MAX_PAGE_BYTES)?;
        if frames.is_empty() {
            return Ok(at);
        }
        at = end;
    }
}
