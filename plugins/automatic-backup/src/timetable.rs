//! The per-second decision: which database is due now, and moving its schedule on after a
//! run. The plugin's check asks [`Timetable::is_due`] every second and calls
//! [`Timetable::advance`] after each run; time comes only from the [`Clock`], so the tests
//! below drive whole nights (DST changes included) through exactly this code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use crate::clock::Clock;
use crate::config::Overlap;
use crate::schedule::Schedule;
use crate::state::{Armed, DatabaseState, StateError, StateFile};

/// Which runs a timetable keeps: backups, or restore drills (each in its own part of the
/// state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runs {
    Backups,
    Drills,
}

impl Runs {
    fn of(
        self,
        state: &mut crate::state::State,
    ) -> &mut std::collections::BTreeMap<String, DatabaseState> {
        match self {
            Runs::Backups => &mut state.databases,
            Runs::Drills => &mut state.drills,
        }
    }
}

/// Each scheduled database's next run, as in the state file.
#[derive(Debug)]
pub struct Timetable {
    runs: Runs,
    schedule: Schedule,
    overlap: Overlap,
    catch_up: bool,
    clock: Arc<dyn Clock>,
    due: Mutex<HashMap<String, Due>>,
}

/// One database's next run, and the first run of its schedule (see `DatabaseState`).
#[derive(Debug, Clone, Copy)]
struct Due {
    next: DateTime<Utc>,
    first_run: Option<DateTime<Utc>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Timetable {
    pub fn new(
        schedule: Schedule,
        overlap: Overlap,
        catch_up: bool,
        clock: Arc<dyn Clock>,
    ) -> Timetable {
        Timetable::of(Runs::Backups, schedule, overlap, catch_up, clock)
    }

    /// A timetable of `runs`.
    pub fn of(
        runs: Runs,
        schedule: Schedule,
        overlap: Overlap,
        catch_up: bool,
        clock: Arc<dyn Clock>,
    ) -> Timetable {
        Timetable {
            runs,
            schedule,
            overlap,
            catch_up,
            clock,
            due: Mutex::new(HashMap::new()),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Puts `database` on the timetable: its next run from the state file, or afresh.
    /// `backup_running`: the server is backing it up (a previous instance's run).
    pub fn arm(
        &self,
        state: &StateFile,
        database: &str,
        backup_running: bool,
    ) -> Result<(Armed, Option<DateTime<Utc>>), StateError> {
        let now = self.now();
        let ((armed, next, first_run), _) = state.update(|state| {
            let entry = self.runs.of(state).entry(database.to_owned()).or_default();
            let armed = entry.arm(&self.schedule, now, self.catch_up, backup_running);
            (armed, entry.next_run, entry.first_run)
        })?;
        self.set(database, next, first_run);
        Ok((armed, next))
    }

    /// Whether `database` is due now.
    pub fn is_due(&self, database: &str) -> bool {
        lock(&self.due)
            .get(database)
            .is_some_and(|due| due.next <= self.now())
    }

    /// Moves `database`'s schedule on after a run (or a skipped one) that started at
    /// `started` and ends now; returns the next run.
    pub fn advance(
        &self,
        state: &StateFile,
        database: &str,
        started: DateTime<Utc>,
        overlap: Option<Overlap>,
    ) -> Result<Option<DateTime<Utc>>, StateError> {
        let ended = self.now();
        let overlap = overlap.unwrap_or(self.overlap);
        let saved = state.update(|state| {
            let entry = self.runs.of(state).entry(database.to_owned()).or_default();
            entry.advance(&self.schedule, overlap, started, ended);
            (entry.next_run, entry.first_run)
        });
        match saved {
            Ok(((next, first_run), _)) => {
                self.set(database, next, first_run);
                Ok(next)
            }
            Err(e) => {
                // Not saved (a full disk, say): the schedule still moves on here, or the run
                // just done would be due again at the next check, and again.
                let known = lock(&self.due).get(database).copied();
                let mut scratch = DatabaseState {
                    schedule: Some(self.schedule.key().to_owned()),
                    first_run: known.and_then(|d| d.first_run),
                    ..DatabaseState::default()
                };
                scratch.advance(&self.schedule, overlap, started, ended);
                self.set(database, scratch.next_run, scratch.first_run);
                Err(e)
            }
        }
    }

    /// The next run of `database`, if it is scheduled.
    pub fn next_run(&self, database: &str) -> Option<DateTime<Utc>> {
        lock(&self.due).get(database).map(|due| due.next)
    }

    /// Takes `database` off the timetable (it was dropped).
    pub fn forget(&self, database: &str) {
        lock(&self.due).remove(database);
    }

    fn set(&self, database: &str, next: Option<DateTime<Utc>>, first_run: Option<DateTime<Utc>>) {
        let mut due = lock(&self.due);
        match next {
            Some(next) => due.insert(database.to_owned(), Due { next, first_run }),
            None => due.remove(database),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::clock::instant as at;
    use chrono::Duration;
    use chrono_tz::{Europe::Berlin, UTC};

    /// The server fires the check every second, up to half a second late.
    const TICK_LATENESS_MS: i64 = 300;

    /// One database on a timetable, a state file and a fake clock.
    struct Simulation {
        _dir: tempfile::TempDir,
        clock: Arc<FakeClock>,
        state: StateFile,
        timetable: Timetable,
    }

    impl Simulation {
        /// Armed at `start` (a first start, or a start with a changed schedule).
        fn armed(schedule: Schedule, start: &str) -> Simulation {
            let dir = tempfile::tempdir().unwrap();
            let clock = Arc::new(FakeClock::at(at(start)));
            let state = StateFile::in_directory(dir.path());
            let timetable = Timetable::new(schedule, Overlap::Skip, true, clock.clone());
            timetable.arm(&state, "sales", false).unwrap();
            Simulation {
                _dir: dir,
                clock,
                state,
                timetable,
            }
        }

        /// Fires the check every second until `until`; each due run takes `run_takes`.
        /// Returns the start of every run.
        fn tick_until(&self, until: &str, run_takes: Duration) -> Vec<DateTime<Utc>> {
            let until = at(until);
            let mut runs = Vec::new();
            while self.clock.now() < until {
                if self.timetable.is_due("sales") {
                    let started = self.clock.now();
                    runs.push(started);
                    self.clock.advance(run_takes);
                    self.timetable
                        .advance(&self.state, "sales", started, None)
                        .unwrap();
                }
                // The next firing: the next whole second, a little late.
                let next_second = self.clock.now().timestamp() + 1;
                self.clock.set(
                    DateTime::from_timestamp(next_second, 0).unwrap()
                        + Duration::milliseconds(TICK_LATENESS_MS),
                );
            }
            runs
        }

        fn next_run(&self) -> Option<DateTime<Utc>> {
            self.timetable.next_run("sales")
        }
    }

    fn nightly_in_berlin() -> Schedule {
        Schedule::cron("30 2 * * *", Berlin).unwrap()
    }

    #[test]
    fn dst_fall_back_backup_storm_restart_or_run_end_inside_the_repeated_hour() {
        // Berlin, 25 October 2026: 02:00-03:00 happens twice (00:00-01:00 UTC in CEST, then
        // 01:00-02:00 UTC in CET). 02:30 runs once, at 00:30 UTC.
        let night = Simulation::armed(nightly_in_berlin(), "2026-10-24T12:00:00Z");
        let runs = night.tick_until("2026-10-25T00:31:00Z", Duration::seconds(20));
        assert_eq!(runs.len(), 1, "{runs:?}");

        // A run that ends inside the repeated hour.
        let long_run = Simulation::armed(nightly_in_berlin(), "2026-10-25T00:29:00Z");
        let runs = long_run.tick_until("2026-10-25T01:45:00Z", Duration::minutes(45));
        assert_eq!(runs.len(), 1, "one night, one run: {runs:?}");
        assert_eq!(long_run.next_run(), Some(at("2026-10-26T01:30:00Z")));

        // A (re)start at 01:15 UTC, 02:15 CET, inside the repeated hour, arming a new
        // schedule there (as after a config change).
        let restart = Simulation::armed(nightly_in_berlin(), "2026-10-25T01:15:00Z");
        let runs = restart.tick_until("2026-10-25T02:00:00Z", Duration::seconds(2));
        assert!(runs.is_empty(), "a storm of {} runs: {runs:?}", runs.len());
        assert_eq!(restart.next_run(), Some(at("2026-10-26T01:30:00Z")));
        // And the next night runs once.
        let runs = restart.tick_until("2026-10-26T02:00:00Z", Duration::seconds(2));
        assert_eq!(runs, [at("2026-10-26T01:30:00.300Z")]);
    }

    #[test]
    fn runs_one_second_late_every_second_means_every_second() {
        for (cron, expected) in [("* * * * * *", 59), ("*/2 * * * * *", 29)] {
            let minute = Simulation::armed(
                Schedule::cron(cron, UTC).unwrap(),
                "2026-05-01T10:00:00.300Z",
            );
            let runs = minute.tick_until("2026-05-01T10:01:00Z", Duration::milliseconds(200));
            assert_eq!(runs.len(), expected, "{cron}: {runs:?}");
            if cron.starts_with("*/2") {
                assert!(
                    runs.iter().all(|r| r.timestamp() % 2 == 0),
                    "runs on odd seconds: {runs:?}"
                );
            }
        }
    }

    #[test]
    fn a_state_file_that_cannot_be_saved_still_moves_the_schedule_on() {
        let hourly = Simulation::armed(
            Schedule::cron("0 * * * *", UTC).unwrap(),
            "2026-05-01T09:59:00Z",
        );
        // Saving now fails: the temporary file's name is taken by a directory.
        std::fs::create_dir(hourly._dir.path().join("state.json.tmp")).unwrap();
        let started = hourly.clock.now();
        hourly.clock.set(at("2026-05-01T10:00:00.300Z"));
        assert!(hourly.timetable.is_due("sales"));
        hourly.clock.advance(Duration::seconds(5));
        assert!(
            hourly
                .timetable
                .advance(&hourly.state, "sales", started, None)
                .is_err()
        );
        assert!(!hourly.timetable.is_due("sales"), "due again at once");
        assert_eq!(hourly.next_run(), Some(at("2026-05-01T11:00:00Z")));
    }

    #[test]
    fn first_time_is_the_first_run_driven_by_the_clock() {
        let every_30s =
            Schedule::every("12:00:00", std::time::Duration::from_secs(30), UTC).unwrap();
        let noon = Simulation::armed(every_30s, "2026-05-01T11:58:00Z");
        let runs = noon.tick_until("2026-05-01T12:01:01Z", Duration::seconds(1));
        assert_eq!(
            runs,
            [
                at("2026-05-01T12:00:00.300Z"),
                at("2026-05-01T12:00:30.300Z"),
                at("2026-05-01T12:01:00.300Z")
            ]
        );
    }
}
