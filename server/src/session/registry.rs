//! Every logged-in session, as an admin sees it (`SHOW SESSIONS`, `sessions()`) and as the
//! server reaches it from outside its own thread: a cancel request, `pg_cancel_backend`,
//! `pg_terminate_backend` and the statement timeout interrupt its running statement through
//! SQLite's interrupt. Also where `max_connections` is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::roles::Role;
use crate::sql::settings::Timeouts;

/// Admins may log in this many sessions above `max_connections` (PostgreSQL's
/// superuser_reserved_connections), so that an operator can always get in to look.
pub const RESERVED_FOR_ADMIN: usize = 3;

/// Why a running statement was interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interruption {
    Cancel = 1,
    Timeout = 2,
    Terminate = 3,
}

/// What a session is doing, as PostgreSQL's pg_stat_activity says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doing {
    pub state: &'static str,
    pub query: String,
    pub query_start: Option<SystemTime>,
    pub xact_start: Option<SystemTime>,
}

/// One logged-in session.
pub struct Activity {
    pub id: i32,
    pub user: String,
    pub role: Role,
    pub database: String,
    pub client: SocketAddr,
    pub backend_start: SystemTime,
    doing: Mutex<Doing>,
    interrupt: Mutex<Option<rusqlite::InterruptHandle>>,
    reason: AtomicU8,
    /// Cancelled by `pg_terminate_backend`: the connection ends.
    pub terminated: CancellationToken,
    timeouts: Mutex<Timeouts>,
    /// The cancel key the client was given (BackendKeyData).
    secret: Mutex<Vec<u8>>,
    /// Stops the running statement's delivery of rows: a statement parked while its client
    /// does not read is out of SQLite's reach, so an interrupt cancels this too.
    statement: Mutex<Option<CancellationToken>>,
    /// The connection is handling one of its client's messages.
    busy: AtomicBool,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity")
            .field("id", &self.id)
            .field("user", &self.user)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Activity {
    pub fn timeouts(&self) -> Timeouts {
        *lock(&self.timeouts)
    }

    pub fn set_timeouts(&self, timeouts: Timeouts) {
        *lock(&self.timeouts) = timeouts;
    }

    /// A statement starts, stopped by `stop`: a reason left by an interruption that came
    /// with nothing running is forgotten.
    pub fn set_statement(&self, stop: CancellationToken) {
        self.reason.store(0, Ordering::Release);
        *lock(&self.statement) = Some(stop);
    }

    /// The token that stops the running statement (none before the first).
    pub fn statement_stop(&self) -> Option<CancellationToken> {
        lock(&self.statement).clone()
    }

    /// Whether the connection is handling a message of its client (the others, between
    /// messages, are not interrupted by a cancel or a timeout, as in PostgreSQL; a portal
    /// suspended between Executes keeps its rows).
    pub fn set_busy(&self, busy: bool) {
        self.busy.store(busy, Ordering::Release);
    }

    pub fn set_secret(&self, secret: Vec<u8>) {
        *lock(&self.secret) = secret;
    }

    /// Whether `secret` is this session's cancel key.
    pub fn has_secret(&self, secret: &[u8]) -> bool {
        let mine = lock(&self.secret);
        !mine.is_empty() && mine.as_slice() == secret
    }

    pub fn doing(&self) -> Doing {
        lock(&self.doing).clone()
    }

    /// Records what the session does now.
    pub fn set(&self, update: impl FnOnce(&mut Doing)) {
        update(&mut lock(&self.doing));
    }

    /// The connection SQLite interrupts on this session's behalf.
    pub fn set_interrupt(&self, handle: rusqlite::InterruptHandle) {
        *lock(&self.interrupt) = Some(handle);
    }

    /// Interrupts the running statement, if any (SQLite ignores an interrupt between
    /// statements, as PostgreSQL ignores a cancel with nothing running).
    pub fn interrupt(&self, why: Interruption) {
        if why == Interruption::Terminate {
            self.terminated.cancel();
        } else if !self.busy.load(Ordering::Acquire) {
            return;
        }
        self.reason.store(why as u8, Ordering::Release);
        if let Some(handle) = lock(&self.interrupt).as_ref() {
            handle.interrupt();
        }
        if let Some(stop) = lock(&self.statement).as_ref() {
            stop.cancel();
        }
    }

    /// Whether the running statement was interrupted (and the reason not yet taken): a wait
    /// for a lock ends at it, as SQLite's interrupt does not reach one.
    pub fn interruption_pending(&self) -> bool {
        self.reason.load(Ordering::Acquire) != 0
    }

    /// Why the last statement was interrupted, once.
    pub fn take_interruption(&self) -> Option<Interruption> {
        match self.reason.swap(0, Ordering::AcqRel) {
            1 => Some(Interruption::Cancel),
            2 => Some(Interruption::Timeout),
            3 => Some(Interruption::Terminate),
            _ => None,
        }
    }
}

/// Why a login was refused for too many sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooMany {
    #[error(
        "sorry, too many clients already ({0} sessions; raise [server] max_connections, or close idle sessions)"
    )]
    Server(usize),
    #[error(
        "too many connections for user \"{user}\" ({limit}; raise [users.{user}] max_connections)"
    )]
    User { user: String, limit: usize },
}

/// The server's sessions.
#[derive(Debug)]
pub struct Registry {
    max_connections: usize,
    per_user: HashMap<String, usize>,
    sessions: Mutex<HashMap<i32, Arc<Activity>>>,
    /// Told whenever a session leaves.
    left: Condvar,
    next_id: AtomicI32,
}

impl Registry {
    /// `per_user`: the users that have their own `max_connections`.
    pub fn new(max_connections: usize, per_user: HashMap<String, usize>) -> Registry {
        Registry {
            max_connections,
            per_user,
            sessions: Mutex::default(),
            left: Condvar::new(),
            next_id: AtomicI32::new(1),
        }
    }

    /// Admits a session, or says why not. The seat leaves the registry when dropped.
    pub fn admit(
        self: &Arc<Self>,
        user: &str,
        role: Role,
        database: &str,
        client: SocketAddr,
        timeouts: Timeouts,
    ) -> Result<Seat, TooMany> {
        let mut sessions = lock(&self.sessions);
        let limit = self.max_connections
            + if role == Role::Admin {
                RESERVED_FOR_ADMIN
            } else {
                0
            };
        if sessions.len() >= limit {
            return Err(TooMany::Server(sessions.len()));
        }
        if let Some(&limit) = self.per_user.get(user)
            && sessions.values().filter(|s| s.user == user).count() >= limit
        {
            return Err(TooMany::User {
                user: user.to_owned(),
                limit,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            user: user.to_owned(),
            role,
            database: database.to_owned(),
            client,
            backend_start: SystemTime::now(),
            doing: Mutex::new(Doing {
                state: "idle",
                query: String::new(),
                query_start: None,
                xact_start: None,
            }),
            interrupt: Mutex::new(None),
            reason: AtomicU8::new(0),
            terminated: CancellationToken::new(),
            timeouts: Mutex::new(timeouts),
            secret: Mutex::default(),
            statement: Mutex::default(),
            busy: AtomicBool::new(false),
        });
        sessions.insert(id, Arc::clone(&activity));
        Ok(Seat {
            registry: Arc::clone(self),
            activity,
        })
    }

    /// Every session, by id.
    pub fn list(&self) -> Vec<Arc<Activity>> {
        let mut all: Vec<_> = lock(&self.sessions).values().cloned().collect();
        all.sort_by_key(|a| a.id);
        all
    }

    pub fn get(&self, id: i32) -> Option<Arc<Activity>> {
        lock(&self.sessions).get(&id).cloned()
    }

    /// Ends every session of `user` and waits until they are gone, up to `patience`: the
    /// sessions of `user` still there then.
    pub fn end_sessions_of(&self, user: &str, patience: std::time::Duration) -> usize {
        // Interrupted outside the lock, which admits and lists every session.
        let ending: Vec<Arc<Activity>> = lock(&self.sessions)
            .values()
            .filter(|a| a.user == user)
            .cloned()
            .collect();
        for activity in &ending {
            activity.interrupt(Interruption::Terminate);
        }
        drop(ending);
        let (sessions, _) = self
            .left
            .wait_timeout_while(lock(&self.sessions), patience, |sessions| {
                sessions.values().any(|a| a.user == user)
            })
            .unwrap_or_else(|p| p.into_inner());
        sessions.values().filter(|a| a.user == user).count()
    }
}

/// A session's place in the registry.
#[derive(Debug)]
pub struct Seat {
    registry: Arc<Registry>,
    pub activity: Arc<Activity>,
}

impl Drop for Seat {
    fn drop(&mut self) {
        lock(&self.registry.sessions).remove(&self.activity.id);
        self.registry.left.notify_all();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cancel that came with nothing running was kept and blamed on a later statement,
    /// failing its transaction (found in review).
    #[test]
    fn a_cancel_between_messages_is_ignored_and_forgotten() {
        let registry = Arc::new(Registry::new(5, HashMap::new()));
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let seat = registry
            .admit("bob", Role::Readonly, "default", addr, Timeouts::default())
            .unwrap();
        let activity = &seat.activity;
        let suspended = CancellationToken::new();
        activity.set_statement(suspended.clone());
        activity.interrupt(Interruption::Cancel);
        assert!(
            !suspended.is_cancelled(),
            "a suspended portal keeps its rows"
        );
        assert_eq!(activity.take_interruption(), None);
        activity.set_busy(true);
        activity.interrupt(Interruption::Timeout);
        activity.set_statement(CancellationToken::new());
        assert_eq!(
            activity.take_interruption(),
            None,
            "forgotten at the next statement"
        );
        activity.set_busy(false);
        activity.interrupt(Interruption::Terminate);
        assert!(activity.terminated.is_cancelled());
    }

    #[test]
    fn limits_count_sessions_and_admins_have_a_reserve() {
        let registry = Arc::new(Registry::new(2, HashMap::from([("bob".into(), 1)])));
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let bob = registry
            .admit("bob", Role::Readonly, "default", addr, Timeouts::default())
            .unwrap();
        assert!(matches!(
            registry.admit("bob", Role::Readonly, "default", addr, Timeouts::default()),
            Err(TooMany::User { limit: 1, .. })
        ));
        let _carol = registry
            .admit(
                "carol",
                Role::Readwrite,
                "default",
                addr,
                Timeouts::default(),
            )
            .unwrap();
        assert_eq!(
            registry
                .admit(
                    "dave",
                    Role::Readwrite,
                    "default",
                    addr,
                    Timeouts::default()
                )
                .unwrap_err(),
            TooMany::Server(2)
        );
        let admins: Vec<_> = (0..RESERVED_FOR_ADMIN)
            .map(|_| {
                registry
                    .admit("admin", Role::Admin, "default", addr, Timeouts::default())
                    .unwrap()
            })
            .collect();
        assert!(
            registry
                .admit("admin", Role::Admin, "default", addr, Timeouts::default())
                .is_err()
        );
        drop(bob);
        drop(admins);
        let _dave = registry
            .admit(
                "dave",
                Role::Readwrite,
                "default",
                addr,
                Timeouts::default(),
            )
            .unwrap();
        assert_eq!(registry.list().len(), 2);
    }
}
