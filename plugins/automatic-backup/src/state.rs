//! What the plugin remembers across restarts and reloads, in `state.json` in its state
//! directory: per database, when the next run is due, how the last one went, and the ledger
//! of archives it wrote (the only files retention may ever delete).
//!
//! Every change is a read-modify-write under an exclusive lock on `state.lock`, written to a
//! temporary file and renamed, so two instances (an old one finishing a run during a reload,
//! and its replacement) never lose each other's changes and a crash never leaves half a file.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Overlap;
use crate::schedule::Schedule;

/// The state file's layout version (docs/FORMATS.md). 2 added archive kinds and directories,
/// first runs and run ownership; 3 archives in destinations (`location`); 4 increments
/// (`parent`). A plugin that reads only an older one refuses a newer file, rather than prune by
/// a ledger it half understands (one that knows no parents would delete a chain's full).
const VERSION: u32 = 4;

/// Everything remembered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    pub databases: BTreeMap<String, DatabaseState>,
    /// Each database's restore drills: their schedule and last outcome (`last_archive` is
    /// the archive drilled).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drills: BTreeMap<String, DatabaseState>,
}

/// One database's schedule, last outcome and archives.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatabaseState {
    /// The schedule `next_run` was computed from ([`Schedule::key`]).
    pub schedule: Option<String>,
    pub next_run: Option<DateTime<Utc>>,
    /// The first run of this schedule: OrientDB's `first_time` schedule counts from it.
    #[serde(default)]
    pub first_run: Option<DateTime<Utc>>,
    /// The run the `last_*` fields describe: only that run may change them, so an instance
    /// replaced during its run cannot overwrite its successor's outcome.
    #[serde(default)]
    pub run: Option<String>,
    pub last_run: Option<DateTime<Utc>>,
    /// `running`, `retrying`, `ok`, `failed`, `skipped` or `interrupted`.
    pub last_status: Option<String>,
    pub last_error: Option<String>,
    pub last_archive: Option<String>,
    /// The archives this plugin wrote, oldest first.
    #[serde(default)]
    pub archives: Vec<ArchiveRecord>,
}

/// What kind of file an archive is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// A ZIP backup archive (`mode = "full"`).
    Full,
    /// A gzip JSON-lines export (`mode = "export"`).
    Export,
}

impl ArchiveKind {
    /// As the config's `mode` spells it.
    pub fn mode(self) -> &'static str {
        match self {
            ArchiveKind::Full => "full",
            ArchiveKind::Export => "export",
        }
    }
}

/// An archive this plugin wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    /// The file name in its directory.
    pub file: String,
    /// The snapshot's instant, from the archive's manifest.
    pub created_at: DateTime<Utc>,
    /// The archive's size when it was written.
    pub bytes: u64,
    /// Whether it was reopened and every checksum matched.
    pub verified: bool,
    /// What was written; absent in ledgers from before kinds were recorded (then the file's
    /// own first bytes tell).
    #[serde(default)]
    pub kind: Option<ArchiveKind>,
    /// The directory it was written in; absent in older ledgers (then the current target
    /// directory), and for an archive in a destination.
    #[serde(default)]
    pub directory: Option<DirectoryId>,
    /// Where it is when it was written to a destination of the server (`offsite:auto/x.zip`,
    /// since state version 3, with ABI 1.3); then `directory` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// For an archive in a destination: since when listings of it no longer show it (it is
    /// forgotten only after a day of that: a destination pointed elsewhere by mistake in the
    /// config, then back, loses nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_since: Option<DateTime<Utc>>,
    /// Of an increment (since state version 4): the file name of the archive beside it that
    /// it applies to, which stays while it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// A directory and its identity when an archive was written there. A directory that is
/// missing, or is another directory now (an unmounted file system's mount point, a
/// directory re-created empty), holds no evidence that its archives are gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryId {
    pub path: PathBuf,
    pub device: u64,
    pub inode: u64,
}

impl DirectoryId {
    /// The identity of the directory at `path` now.
    pub fn of(path: &Path) -> std::io::Result<DirectoryId> {
        use std::os::unix::fs::MetadataExt;
        let metadata = std::fs::metadata(path)?;
        if !metadata.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("{} is not a directory", path.display()),
            ));
        }
        Ok(DirectoryId {
            path: path.to_owned(),
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }

    /// Whether `path` is still this directory.
    pub fn is_present(&self) -> bool {
        DirectoryId::of(&self.path).is_ok_and(|now| now == *self)
    }
}

/// What arming a database at start-up found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Armed {
    /// A next run in the future (kept, or computed afresh).
    Waiting,
    /// A run came due while the server was down; it runs now, once.
    CatchUp,
    /// A run came due while the server was down and `catch_up` is off: skipped.
    Missed,
}

impl DatabaseState {
    /// Sets `next_run` when an instance starts: a new schedule starts afresh from `now` (its
    /// first run); a run that came due while nobody was running (or whose run a crash
    /// interrupted) is kept due with `catch_up`, and skipped without. `backup_running` says
    /// whether the server is running a backup of this database (a previous instance's run,
    /// during a reload).
    pub fn arm(
        &mut self,
        schedule: &Schedule,
        now: DateTime<Utc>,
        catch_up: bool,
        backup_running: bool,
    ) -> Armed {
        if self.last_status.as_deref() == Some("running") && !backup_running {
            self.last_status = Some("interrupted".into());
            self.last_error = Some(
                "this run was cut short (the server stopped, or the plugin was reloaded)".into(),
            );
        }
        let same_schedule = self.schedule.as_deref() == Some(schedule.key());
        if same_schedule && self.first_run.is_none() {
            // A state file from before the first run was kept: the pending run anchors it.
            self.first_run = self.next_run;
        }
        match self.next_run {
            Some(due) if same_schedule && due <= now => {
                if catch_up {
                    Armed::CatchUp
                } else {
                    self.next_run = schedule.next_after(now, self.first_run);
                    Armed::Missed
                }
            }
            Some(_) if same_schedule => Armed::Waiting,
            _ => {
                self.schedule = Some(schedule.key().to_owned());
                self.next_run = schedule.first_after(now);
                self.first_run = self.next_run;
                Armed::Waiting
            }
        }
    }

    /// Sets `next_run` after a run that started at `started` and ended at `ended`. `skip`
    /// drops the times that came due during the run; `wait` runs once right away if any did.
    /// Times missed before the run started are covered by it either way. The next run is
    /// always a time of the schedule after `started`, so however the clock and the zone move,
    /// a run is followed by at most one catch-up, never by a burst.
    pub fn advance(
        &mut self,
        schedule: &Schedule,
        overlap: Overlap,
        started: DateTime<Utc>,
        ended: DateTime<Utc>,
    ) {
        if self.schedule.as_deref() != Some(schedule.key()) {
            // Armed under another schedule meanwhile: this one starts afresh.
            self.schedule = Some(schedule.key().to_owned());
            self.next_run = schedule.first_after(ended);
            self.first_run = self.next_run;
            return;
        }
        self.next_run = match overlap {
            Overlap::Skip => schedule.next_after(ended.max(started), self.first_run),
            Overlap::Wait => schedule.next_after(started, self.first_run),
        };
    }

    /// Makes `run` the run this entry describes, running since `at`.
    pub fn begin(&mut self, run: &str, at: DateTime<Utc>) {
        self.run = Some(run.to_owned());
        self.last_run = Some(at);
        self.last_status = Some("running".into());
        self.last_error = None;
    }

    /// Records `status` for `run`, unless another run has begun since (its outcome stands).
    /// Returns whether it was recorded.
    pub fn record(&mut self, run: &str, status: &str, error: Option<String>) -> bool {
        if self.run.as_deref() != Some(run) {
            return false;
        }
        self.last_status = Some(status.to_owned());
        self.last_error = error;
        true
    }
}

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a state file this plugin can read ({message}); move it away to start afresh (retention then leaves the archives it listed alone)"
    )]
    Unreadable { path: PathBuf, message: String },
}

/// The state file of one plugin.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    lock: PathBuf,
}

impl StateFile {
    /// The state file in `directory`.
    pub fn in_directory(directory: &Path) -> StateFile {
        StateFile {
            path: directory.join("state.json"),
            lock: directory.join("state.lock"),
        }
    }

    /// The current state.
    pub fn read(&self) -> Result<State, StateError> {
        self.update(|_| ()).map(|((), state)| state)
    }

    /// Applies `change` to the current state and saves it; returns what `change` returned and
    /// the new state.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut State) -> T,
    ) -> Result<(T, State), StateError> {
        let io = |action, path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io {
                action,
                path,
                source,
            }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&self.lock)
            .map_err(io("opening", &self.lock))?;
        lock.lock().map_err(io("locking", &self.lock))?;
        let mut state = match std::fs::read(&self.path) {
            Ok(bytes) => {
                serde_json::from_slice::<State>(&bytes).map_err(|e| StateError::Unreadable {
                    path: self.path.clone(),
                    message: e.to_string(),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io("reading", &self.path)(e)),
        };
        if state.version > VERSION {
            return Err(StateError::Unreadable {
                path: self.path.clone(),
                message: format!("layout version {} is newer than {VERSION}", state.version),
            });
        }
        state.version = VERSION;
        let before = state.clone();
        let answer = change(&mut state);
        // Reading (a change that changes nothing) writes nothing.
        if state != before {
            let after = serde_json::to_vec_pretty(&state).map_err(|e| StateError::Unreadable {
                path: self.path.clone(),
                message: e.to_string(),
            })?;
            let temporary = self.path.with_extension("json.tmp");
            // It lists the archives: owner-only, like everything Cairn writes.
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&temporary)
                .map_err(io("creating", &temporary))?;
            file.write_all(&after)
                .and_then(|()| file.sync_all())
                .map_err(io("writing", &temporary))?;
            std::fs::rename(&temporary, &self.path).map_err(io("renaming", &temporary))?;
        }
        Ok((answer, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::instant as at;
    use chrono_tz::UTC;

    fn nightly() -> Schedule {
        Schedule::cron("0 2 * * *", UTC).unwrap()
    }

    #[test]
    fn a_first_start_waits_for_the_next_time() {
        let mut db = DatabaseState::default();
        assert_eq!(
            db.arm(&nightly(), at("2026-05-01T10:00:00Z"), true, false),
            Armed::Waiting
        );
        assert_eq!(db.next_run, Some(at("2026-05-02T02:00:00Z")));
    }

    #[test]
    fn catch_up_after_downtime_runs_once() {
        let schedule = nightly();
        let mut db = DatabaseState::default();
        db.arm(&schedule, at("2026-05-01T10:00:00Z"), true, false);
        // The server was down from 1 May to 4 May 09:00: three nightly runs were missed.
        let restart = at("2026-05-04T09:00:00Z");
        assert_eq!(db.arm(&schedule, restart, true, false), Armed::CatchUp);
        assert_eq!(db.next_run, Some(at("2026-05-02T02:00:00Z")));
        // The catch-up run covers all three: the next is tonight, not the 3rd or the 4th.
        for overlap in [Overlap::Skip, Overlap::Wait] {
            let mut after = db.clone();
            after.advance(&schedule, overlap, restart, at("2026-05-04T09:05:00Z"));
            assert_eq!(after.next_run, Some(at("2026-05-05T02:00:00Z")));
        }
        // Without catch_up the missed runs are dropped.
        let mut skipping = db.clone();
        assert_eq!(
            skipping.arm(&schedule, restart, false, false),
            Armed::Missed
        );
        assert_eq!(skipping.next_run, Some(at("2026-05-05T02:00:00Z")));
    }

    #[test]
    fn a_run_interrupted_by_a_crash_is_caught_up_and_marked() {
        let schedule = nightly();
        let mut db = DatabaseState {
            schedule: Some(schedule.key().into()),
            next_run: Some(at("2026-05-02T02:00:00Z")),
            last_status: Some("running".into()),
            ..DatabaseState::default()
        };
        assert_eq!(
            db.arm(&schedule, at("2026-05-02T02:10:00Z"), true, false),
            Armed::CatchUp
        );
        assert_eq!(db.last_status.as_deref(), Some("interrupted"));
        // During a reload the previous instance's run is still going: not interrupted.
        let mut reloading = DatabaseState {
            last_status: Some("running".into()),
            ..db.clone()
        };
        reloading.arm(&schedule, at("2026-05-02T02:10:00Z"), true, true);
        assert_eq!(reloading.last_status.as_deref(), Some("running"));
    }

    #[test]
    fn first_time_is_the_first_run_then_every_delay() {
        // OrientDB: the first run is at first_time (tomorrow if it has passed), then every
        // delay; never a run before first_time.
        let every_30s =
            Schedule::every("12:00:00", std::time::Duration::from_secs(30), UTC).unwrap();
        let mut db = DatabaseState::default();
        db.arm(&every_30s, at("2026-05-01T11:58:00Z"), true, false);
        assert_eq!(db.next_run, Some(at("2026-05-01T12:00:00Z")));
        db.advance(
            &every_30s,
            Overlap::Skip,
            at("2026-05-01T12:00:00Z"),
            at("2026-05-01T12:00:02Z"),
        );
        assert_eq!(db.next_run, Some(at("2026-05-01T12:00:30Z")));
        // Passed today: tomorrow.
        let mut late = DatabaseState::default();
        late.arm(&every_30s, at("2026-05-01T12:00:01Z"), true, false);
        assert_eq!(late.next_run, Some(at("2026-05-02T12:00:00Z")));
        // Whole days count from the first run, not from a fixed epoch.
        let weekly =
            Schedule::every("03:00:00", std::time::Duration::from_secs(7 * 86_400), UTC).unwrap();
        let mut db = DatabaseState::default();
        db.arm(&weekly, at("2026-05-05T10:00:00Z"), true, false);
        assert_eq!(db.next_run, Some(at("2026-05-06T03:00:00Z")));
        db.advance(
            &weekly,
            Overlap::Skip,
            at("2026-05-06T03:00:00Z"),
            at("2026-05-06T03:00:05Z"),
        );
        assert_eq!(db.next_run, Some(at("2026-05-13T03:00:00Z")));
    }

    #[test]
    fn reload_during_a_retry_wait_the_old_instance_cannot_overwrite_the_new_outcome() {
        let mut db = DatabaseState::default();
        // The old instance's run fails and waits to retry; a reload replaces the instance,
        // whose run succeeds; then the old instance wakes up and ends its run.
        db.begin("old-1", at("2026-05-01T02:00:00Z"));
        assert!(db.record("old-1", "retrying", Some("disk full".into())));
        db.begin("new-1", at("2026-05-01T02:00:05Z"));
        assert!(db.record("new-1", "ok", None));
        assert!(!db.record(
            "old-1",
            "interrupted",
            Some("the plugin was reloaded".into())
        ));
        assert_eq!(db.last_status.as_deref(), Some("ok"));
        assert_eq!(db.last_error, None);
        assert_eq!(db.last_run, Some(at("2026-05-01T02:00:05Z")));
    }

    #[test]
    fn a_changed_schedule_starts_afresh() {
        let mut db = DatabaseState::default();
        db.arm(&nightly(), at("2026-05-01T10:00:00Z"), true, false);
        let hourly = Schedule::cron("0 * * * *", UTC).unwrap();
        assert_eq!(
            db.arm(&hourly, at("2026-05-03T10:30:00Z"), true, false),
            Armed::Waiting
        );
        assert_eq!(db.next_run, Some(at("2026-05-03T11:00:00Z")));
    }

    #[test]
    fn runs_longer_than_the_interval_skip_or_wait() {
        let every_10m = Schedule::cron("*/10 * * * *", UTC).unwrap();
        let mut db = DatabaseState::default();
        // Due at 10:00, ran until 10:25: 10:10 and 10:20 came due meanwhile.
        db.advance(
            &every_10m,
            Overlap::Skip,
            at("2026-05-01T10:00:00Z"),
            at("2026-05-01T10:25:00Z"),
        );
        assert_eq!(db.next_run, Some(at("2026-05-01T10:30:00Z")));
        db.advance(
            &every_10m,
            Overlap::Wait,
            at("2026-05-01T10:00:00Z"),
            at("2026-05-01T10:25:00Z"),
        );
        assert_eq!(db.next_run, Some(at("2026-05-01T10:10:00Z")));
    }

    #[test]
    fn updates_survive_and_a_damaged_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::in_directory(dir.path());
        assert!(file.read().unwrap().databases.is_empty());
        assert!(
            !dir.path().join("state.json").exists(),
            "a read wrote the file"
        );
        file.update(|s| {
            s.databases.entry("sales".into()).or_default().last_status = Some("ok".into())
        })
        .unwrap();
        let again = StateFile::in_directory(dir.path()).read().unwrap();
        assert_eq!(again.databases["sales"].last_status.as_deref(), Some("ok"));
        assert!(!dir.path().join("state.json.tmp").exists());
        std::fs::write(dir.path().join("state.json"), "{not json").unwrap();
        let message = file.read().unwrap_err().to_string();
        assert!(
            message.contains("state.json") && message.contains("move it away"),
            "{message}"
        );
    }
}
