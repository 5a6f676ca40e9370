//! A running operation's progress, its stop flag and its pause, shared between the thread
//! doing the work and whoever watches it (the job table, a progress bar).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::error::BackupError;

#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
    /// Paused past [`MAX_PAUSE`]: stopped for good.
    paused_too_long: AtomicBool,
    /// When the work must stop, and the timeout that set it.
    deadline: OnceLock<(Instant, Duration)>,
    /// Read at every check without the lock; the lock's state says the rest.
    pause_requested: AtomicBool,
    pause: Mutex<Pause>,
    /// Wakes a parked worker (resume, cancel) and whoever waits for it to park.
    pause_changed: Condvar,
}

#[derive(Debug, Default)]
struct Pause {
    requested: bool,
    /// The worker waits in [`Progress::check`].
    parked: bool,
    /// Time spent parked so far (a rate limit leaves it out).
    parked_for: Duration,
    /// The work is over: nothing will park any more.
    ended: bool,
    /// What [`Progress::report_pause`] last reported.
    reported: Option<bool>,
}

impl Pause {
    /// Paused, and the worker waits.
    fn waiting(&self) -> bool {
        self.requested && self.parked
    }
}

/// The longest a job with no deadline of its own stays paused: then it stops, rather than
/// hold its snapshot (and the WAL behind it), its files and its database for ever.
pub const MAX_PAUSE: Duration = Duration::from_secs(86_400);

impl Progress {
    pub fn set_total(&self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
    }

    pub fn advance(&self, bytes: u64) {
        self.done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes done and bytes in all.
    pub fn position(&self) -> (u64, u64) {
        (
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }

    /// 0–100; 0 until the total is known.
    pub fn percent(&self) -> f64 {
        let (done, total) = self.position();
        if total == 0 {
            0.0
        } else {
            (done as f64 * 100.0 / total as f64).min(100.0)
        }
    }

    /// Asks the work to stop at its next check (a paused one at once).
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        let _state = self.pause_state();
        self.pause_changed.notify_all();
    }

    fn pause_state(&self) -> MutexGuard<'_, Pause> {
        self.pause.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks the work to wait at its next check until [`Progress::resume`], a cancellation
    /// or its deadline. What it holds (its snapshot, its files) it keeps while it waits.
    pub fn pause(&self) {
        let mut state = self.pause_state();
        state.requested = true;
        self.pause_requested.store(true, Ordering::SeqCst);
    }

    /// Lets paused work go on.
    pub fn resume(&self) {
        let mut state = self.pause_state();
        state.requested = false;
        self.pause_requested.store(false, Ordering::SeqCst);
        self.pause_changed.notify_all();
    }

    /// Calls `report` with whether the work waits paused now, unless that is what it was
    /// last called with: one place says it (the history), in the order it changed.
    pub fn report_pause(&self, report: impl FnOnce(bool)) {
        let mut state = self.pause_state();
        let paused = state.waiting();
        if state.reported != Some(paused) {
            state.reported = Some(paused);
            report(paused);
        }
    }

    /// Marks the work over (it will reach no check again), waking whoever waits for it to
    /// pause.
    pub fn end(&self) {
        let mut state = self.pause_state();
        state.ended = true;
        self.pause_changed.notify_all();
    }

    /// Waits up to `timeout` for paused work to reach a check and wait there; whether it
    /// did (not if it ended or was stopped first).
    pub fn wait_paused(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut state = self.pause_state();
        while state.requested && !state.parked && !state.ended && self.stopped().is_ok() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            state = self
                .pause_changed
                .wait_timeout(state, until - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.waiting()
    }

    /// How long the work has waited paused, in all.
    pub fn paused_for(&self) -> Duration {
        self.pause_state().parked_for
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Stops the work at its first check once `timeout` has passed from now.
    pub fn set_timeout(&self, timeout: Duration) {
        // Too far to reach is no limit at all.
        if let Some(deadline) = Instant::now().checked_add(timeout) {
            let _ = self.deadline.set((deadline, timeout));
        }
    }

    /// An error if the work was asked to stop, or ran past its timeout; while it is
    /// paused, waits here first. The timeout is a deadline: time paused counts. Without
    /// one, a pause past [`MAX_PAUSE`] stops the work.
    pub fn check(&self) -> Result<(), BackupError> {
        self.stopped()?;
        if self.pause_requested.load(Ordering::SeqCst) {
            self.wait_while_paused();
            self.stopped()?;
        }
        Ok(())
    }

    /// Parks until resumed, stopped, or paused past [`MAX_PAUSE`] (then stopped for good).
    fn wait_while_paused(&self) {
        let mut state = self.pause_state();
        if !state.requested {
            return;
        }
        let since = Instant::now();
        // Woken by resume or cancel; the deadline, or the longest pause, by the clock.
        let (wake, limited) = match self.deadline.get() {
            Some(&(deadline, _)) => (deadline, false),
            None => (since + MAX_PAUSE, true),
        };
        state.parked = true;
        self.pause_changed.notify_all();
        while state.requested && self.stopped().is_ok() {
            let now = Instant::now();
            if limited && now >= wake {
                self.paused_too_long.store(true, Ordering::SeqCst);
                break;
            }
            state = self
                .pause_changed
                .wait_timeout(state, wake.saturating_duration_since(now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.parked = false;
        state.parked_for += since.elapsed();
    }

    /// As [`Progress::check`], without waiting when paused: why the work must stop, if it
    /// must (to tell a stop from another error).
    pub fn stopped(&self) -> Result<(), BackupError> {
        if self.is_cancelled() {
            return Err(BackupError::Aborted);
        }
        if self.paused_too_long.load(Ordering::SeqCst) {
            return Err(BackupError::PausedTooLong { after: MAX_PAUSE });
        }
        match self.deadline.get() {
            Some(&(deadline, after)) if Instant::now() >= deadline => {
                Err(BackupError::TimedOut { after })
            }
            _ => Ok(()),
        }
    }
}

/// Keeps the average rate of bytes at or under a limit by pausing the caller.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_second: u64,
    started: Instant,
    bytes: u64,
    /// The work's time paused when the limit began: time paused since is not time to
    /// catch up on (no burst after a resume).
    paused_before: Duration,
}

impl RateLimit {
    pub fn new(bytes_per_second: u64, progress: &Progress) -> RateLimit {
        RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            bytes: 0,
            paused_before: progress.paused_for(),
        }
    }

    /// Accounts for `bytes` and pauses until the average rate is back under the limit, in
    /// short steps so that a cancellation is seen promptly.
    pub fn pace(&mut self, bytes: u64, progress: &Progress) -> Result<(), BackupError> {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
        loop {
            progress.check()?;
            let paused = progress.paused_for().saturating_sub(self.paused_before);
            let elapsed = self.started.elapsed().saturating_sub(paused);
            if elapsed >= due {
                return Ok(());
            }
            std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn paused_worker() -> (
        Arc<Progress>,
        std::thread::JoinHandle<Result<(), BackupError>>,
    ) {
        let progress = Arc::new(Progress::default());
        progress.pause();
        let worker = std::thread::spawn({
            let progress = Arc::clone(&progress);
            move || progress.check()
        });
        assert!(progress.wait_paused(Duration::from_secs(30)));
        (progress, worker)
    }

    #[test]
    fn a_paused_check_waits_until_resumed() {
        let (progress, worker) = paused_worker();
        assert!(progress.pause_state().waiting());
        assert!(!worker.is_finished(), "parked until resumed");
        progress.resume();
        assert!(worker.join().unwrap().is_ok());
        assert!(!progress.pause_state().waiting());
        assert!(progress.paused_for() > Duration::ZERO);
        // Once resumed, checks pass at once.
        assert!(progress.check().is_ok());
    }

    #[test]
    fn a_cancel_ends_a_pause_as_an_abort() {
        let (progress, worker) = paused_worker();
        progress.cancel();
        assert!(matches!(worker.join().unwrap(), Err(BackupError::Aborted)));
    }

    #[test]
    fn a_pause_does_not_outlast_the_deadline() {
        let progress = Progress::default();
        progress.set_timeout(Duration::from_millis(50));
        progress.pause();
        assert!(matches!(
            progress.check(),
            Err(BackupError::TimedOut { .. })
        ));
    }

    #[test]
    fn a_pause_no_step_reaches_is_not_reported_as_paused() {
        let progress = Progress::default();
        progress.pause();
        assert!(!progress.wait_paused(Duration::from_millis(10)));
        assert!(!progress.pause_state().waiting());
        // Work that has ended answers at once.
        progress.end();
        let asked = Instant::now();
        assert!(!progress.wait_paused(Duration::from_secs(30)));
        assert!(asked.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn a_pause_is_reported_once_per_change() {
        let (progress, worker) = paused_worker();
        let mut said = Vec::new();
        progress.report_pause(|p| said.push(p));
        progress.report_pause(|p| said.push(p));
        progress.resume();
        worker.join().unwrap().unwrap();
        progress.report_pause(|p| said.push(p));
        assert_eq!(said, [true, false]);
    }
}
