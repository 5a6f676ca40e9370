//! A running operation's progress and its stop flag, shared between the thread doing the work
//! and whoever watches it (the job table, a progress bar).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::BackupError;

#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    cancelled: AtomicBool,
    /// When the work must stop, and the timeout that set it.
    deadline: OnceLock<(Instant, Duration)>,
}

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

    /// Asks the work to stop at its next check.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
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

    /// An error if the work was asked to stop, or ran past its timeout.
    pub fn check(&self) -> Result<(), BackupError> {
        if self.is_cancelled() {
            return Err(BackupError::Aborted);
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
}

impl RateLimit {
    pub fn new(bytes_per_second: u64) -> RateLimit {
        RateLimit {
            bytes_per_second: bytes_per_second.max(1),
            started: Instant::now(),
            bytes: 0,
        }
    }

    /// Accounts for `bytes` and pauses until the average rate is back under the limit, in
    /// short steps so that a cancellation is seen promptly.
    pub fn pace(&mut self, bytes: u64, progress: &Progress) -> Result<(), BackupError> {
        self.bytes += bytes;
        let due = Duration::from_secs_f64(self.bytes as f64 / self.bytes_per_second as f64);
        loop {
            progress.check()?;
            let elapsed = self.started.elapsed();
            if elapsed >= due {
                return Ok(());
            }
            std::thread::sleep((due - elapsed).min(Duration::from_millis(50)));
        }
    }
}
