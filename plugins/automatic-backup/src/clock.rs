//! Where the plugin reads the time. Everything that depends on it takes a [`Clock`], so
//! tests drive schedules through DST changes and whole days with a [`FakeClock`] instead of
//! waiting or faking the process's time.

use chrono::{DateTime, Utc};

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[cfg(test)]
#[derive(Debug)]
pub struct FakeClock(std::sync::Mutex<DateTime<Utc>>);

#[cfg(test)]
impl FakeClock {
    pub fn at(start: DateTime<Utc>) -> FakeClock {
        FakeClock(std::sync::Mutex::new(start))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    pub fn advance(&self, by: chrono::Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

#[cfg(test)]
impl Clock for FakeClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An instant written as RFC 3339 ("2026-10-25T01:15:00Z"), for tests.
#[cfg(test)]
pub fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .with_timezone(&Utc)
}
