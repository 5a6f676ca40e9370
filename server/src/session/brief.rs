//! Brief runs: a read-only query run on the caller's own thread (the connection's thread) under
//! a short deadline, so that a point select costs no hand-off to a statement thread and back.
//! A query that would take longer, or whose result would not fit what its output holds, is
//! given up before anything it produced was used, and the caller runs it again the usual way.
//! Only statements that giving up leaves as if they had never run are run briefly: queries
//! that SQLite says write nothing, and single writes outside a transaction (whose implicit
//! transaction SQLite rolls back), calling none of the functions that act or wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::types::Value;

use super::output::{Output, RowValues, Stopped};
use super::{Column, Executed, Prepared, Session, interruption_error, outcomes, stopped};
use crate::group_commit::PendingSync;
use crate::sql::lexer::{Spanned, Token};
use crate::sqlstate::{self, SqlError};

/// How many SQLite virtual machine steps pass between two looks at the deadline.
const STEPS_BETWEEN_LOOKS: i32 = 1000;

/// What a brief run came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Brief {
    /// The statement ran; its outcome went to the output.
    Done,
    /// Not run, or given up: nothing of it went to the output as a finished result, and
    /// the caller runs it the usual way.
    TooLong,
}

/// The deadline of the brief run in progress, looked at by SQLite's progress handler.
#[derive(Debug)]
pub(super) struct Deadline {
    origin: Instant,
    /// Nanoseconds after `origin`; zero when no brief run is in progress.
    at: AtomicU64,
}

impl Deadline {
    /// A deadline installed as the progress handler of `conn`. `committed` is the flag its
    /// commit hook sets (and its rollback hook clears), if it has one: SQLite looks at the
    /// handler once more after a statement's last instruction, which for a write outside a
    /// transaction is after its commit, and a write stopped then would be reported given up
    /// although it had committed. A committed statement is never stopped by the deadline.
    pub(super) fn install(
        conn: &mut rusqlite::Connection,
        committed: Option<Arc<AtomicBool>>,
    ) -> rusqlite::Result<Arc<Deadline>> {
        let deadline = Arc::new(Deadline {
            origin: Instant::now(),
            at: AtomicU64::new(0),
        });
        let looked_at = Arc::clone(&deadline);
        conn.progress_handler(
            STEPS_BETWEEN_LOOKS,
            Some(move || {
                looked_at.has_passed()
                    && !committed
                        .as_ref()
                        .is_some_and(|c| c.load(Ordering::Acquire))
            }),
        )?;
        Ok(deadline)
    }

    fn arm(&self, within: Duration) {
        let at = self
            .nanos_now()
            .saturating_add(within.as_nanos() as u64)
            .max(1);
        self.at.store(at, Ordering::Relaxed);
    }

    /// Whether a brief run is in progress.
    pub(super) fn armed(&self) -> bool {
        self.at.load(Ordering::Relaxed) != 0
    }

    fn disarm(&self) {
        self.at.store(0, Ordering::Relaxed);
    }

    /// Whether the brief run in progress has run out of time (which stops its statement).
    pub(super) fn has_passed(&self) -> bool {
        let at = self.at.load(Ordering::Relaxed);
        at != 0 && self.nanos_now() >= at
    }

    fn nanos_now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The longest string or blob a brief run may make (SQLITE_LIMIT_LENGTH meanwhile).
const BRIEF_VALUE_LIMIT: i32 = 1 << 20;

/// The error a statement stopped in its brief run ends with. The run is then given up and
/// the statement run again; a client sees this only if giving up was impossible.
pub(super) fn out_of_time() -> SqlError {
    SqlError::new(
        sqlstate::QUERY_CANCELED,
        "canceling statement: it was stopped before it finished and could not be resumed; run it again".into(),
    )
}

/// The functions a brief run must not call: running one of the terminating or locking
/// ones twice would act twice (a lock taken twice stays held once), an advisory lock may
/// wait, and `archives()` lists a destination, which may wait on the network (a statement
/// that names a table of one of these names merely runs the usual way).
const NOT_RUN_BRIEFLY: [&str; 8] = [
    "pg_cancel_backend",
    "set_config",
    "pg_terminate_backend",
    "archives",
    "pg_advisory_lock",
    "pg_try_advisory_lock",
    "pg_advisory_unlock",
    "pg_advisory_unlock_all",
];

/// Whether, and when, a prepared statement may be run briefly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Briefly {
    Never,
    /// A query (SELECT, WITH, VALUES) that SQLite says is read-only: given up, it leaves
    /// nothing behind, in a transaction or not.
    Query,
    /// One INSERT, UPDATE, DELETE or REPLACE that returns no rows, when no transaction is
    /// open: given up, SQLite rolls its implicit transaction back, so running it again
    /// changes nothing twice. (Given up inside a transaction, it could take the whole
    /// transaction with it, and a RETURNING statement stopped after its first row commits.)
    WriteOutsideTransaction,
}

/// Whether these tokens name one of the functions of [`NOT_RUN_BRIEFLY`], which act (cancel,
/// lock, list a destination) rather than compute: such a statement runs once, the usual
/// way, and is not stepped ahead of time either (to type its columns).
pub(super) fn acts(tokens: &[Spanned<'_>]) -> bool {
    tokens.iter().any(|t| {
        let name = match &t.token {
            Token::Word(w) => *w,
            Token::QuotedIdent(q) => q.as_str(),
            _ => return false,
        };
        NOT_RUN_BRIEFLY.iter().any(|f| name.eq_ignore_ascii_case(f))
    })
}

/// How a statement of these tokens may be run briefly; none that names one of the
/// functions of [`NOT_RUN_BRIEFLY`] may.
pub(super) fn briefly(tokens: &[Spanned<'_>], readonly: bool, columns: usize) -> Briefly {
    let first = tokens.iter().find_map(|t| match t.token {
        Token::Word(w) => Some(w),
        _ => None,
    });
    let starts_with =
        |words: &[&str]| first.is_some_and(|w| words.iter().any(|k| w.eq_ignore_ascii_case(k)));
    if acts(tokens) {
        Briefly::Never
    } else if readonly && starts_with(&["SELECT", "WITH", "VALUES"]) {
        Briefly::Query
    } else if !readonly && columns == 0 && starts_with(&["INSERT", "UPDATE", "DELETE", "REPLACE"]) {
        Briefly::WriteOutsideTransaction
    } else {
        Briefly::Never
    }
}

/// An output that notes whether it stopped taking rows.
struct Watched<'a> {
    out: &'a mut dyn Output,
    stopped: bool,
}

impl Output for Watched<'_> {
    fn columns(&mut self, command: &str, columns: &[Column]) -> Result<(), Stopped> {
        let taken = self.out.columns(command, columns);
        self.stopped |= taken.is_err();
        taken
    }

    fn row(&mut self, row: &dyn RowValues) -> Result<(), Stopped> {
        let taken = self.out.row(row);
        self.stopped |= taken.is_err();
        taken
    }

    fn finished(&mut self, result: Result<Executed, SqlError>) -> Result<(), Stopped> {
        self.out.finished(result)
    }

    fn failed(&self) -> bool {
        self.out.failed()
    }
}

impl Session {
    /// Runs `prepared` on this thread if it may run briefly ([`Briefly`]: a read-only query,
    /// or a single write outside a transaction, whose commit is synced before it is
    /// answered) and finishes `within` (lock waits included), with rows that `out` takes:
    /// an output that stops taking rows in a brief run means they do not fit, and the
    /// statement is given up (a cancel, a timeout or a termination that
    /// arrives meanwhile still ends it with its error, as in a full run). On
    /// [`Brief::TooLong`] the caller discards what `out` took and runs the statement again.
    pub fn execute_prepared_briefly(
        &mut self,
        prepared: &Prepared,
        params: &[Value],
        out: &mut dyn Output,
        within: Duration,
    ) -> Brief {
        // A parameter over the brief length limit would fail to bind rather than give up.
        let too_long = |v: &Value| match v {
            Value::Text(t) => t.len() > BRIEF_VALUE_LIMIT as usize,
            Value::Blob(b) => b.len() > BRIEF_VALUE_LIMIT as usize,
            _ => false,
        };
        if params.iter().any(too_long) {
            return Brief::TooLong;
        }
        if let Some(changes) = &self.changes {
            changes.sync(&mut self.conn);
        }
        let failed = self.failed_transaction;
        let was_autocommit = self.conn.is_autocommit();
        match prepared.brief {
            Briefly::Query => {}
            // Only a connection that tells of its commits keeps the deadline from stopping a
            // write that has committed (see `Deadline::install`); none is pending here.
            Briefly::WriteOutsideTransaction
                if was_autocommit && self.unsynced.as_ref().is_some_and(|u| !u.has_committed()) => {
            }
            Briefly::WriteOutsideTransaction | Briefly::Never => return Brief::TooLong,
        }
        // A write waits for its turn at the database's write lock within the same deadline.
        let until = Instant::now() + within;
        let turns = match prepared.brief {
            Briefly::WriteOutsideTransaction => self.unsynced.as_ref().map(PendingSync::turns),
            _ => None,
        };
        let turn = turns.as_deref().map(|turns| turns.take(until));
        let mut watched = Watched {
            out,
            stopped: false,
        };
        self.statement_starts(&prepared.sql);
        // One step of SQLite's can outlast the deadline (randomblob(1e9) is one function
        // call) and so can a wait for a lock: a brief run makes no value over
        // BRIEF_VALUE_LIMIT (which gives it up), and waits for a lock only until its
        // deadline (`lock_wait.rs`).
        let length = self.conn.set_limit(
            rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH,
            BRIEF_VALUE_LIMIT,
        );
        self.deadline
            .arm(until.saturating_duration_since(Instant::now()));
        let started = super::Started::now();
        let result = match &turn {
            // Another session's write had the turn until the deadline: given up as a run
            // that ran out of time is (a cancel that came meanwhile still ends it).
            Some(None) => Err(out_of_time()),
            _ => self.execute_prepared_inner(prepared, params, &mut watched),
        };
        // Its commit (if any) is written: the next writer may go while this one waits for
        // the sync.
        drop(turn);
        self.deadline.disarm();
        if let Ok(length) = length {
            let _ = self
                .conn
                .set_limit(rusqlite::limits::Limit::SQLITE_LIMIT_LENGTH, length);
        }
        let gave_up = match &result {
            Ok(_) => false,
            Err(e) => *e == out_of_time() || (watched.stopped && *e == stopped(Stopped)),
        };
        let mut result = result;
        if gave_up {
            // A cancel that arrived while it ran ends it, as it would have ended a full run
            // (the full run's start would forget it).
            if let Some(why) = self.activity().and_then(|a| a.take_interruption()) {
                result = Err(interruption_error(why));
            } else if was_autocommit == self.conn.is_autocommit() {
                // A statement given up leaves the transaction as it was (SQLite rolls back
                // nothing for a stopped read, and all of a stopped write outside a
                // transaction), so it can run again as if for the first time.
                self.failed_transaction = failed;
                self.statement_ends();
                return Brief::TooLong;
            }
        }
        // A write's commit is answered once it is on disk, as in a full run.
        let result = self.once_durable(result);
        outcomes::record(&result);
        self.report_statement(&prepared.sql, started, &result);
        self.statement_ends();
        let _ = watched.out.finished(result);
        Brief::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::lexer;

    fn brief(sql: &str, readonly: bool) -> bool {
        briefly(&lexer::tokenize(sql).unwrap(), readonly, 1) == Briefly::Query
    }

    #[test]
    fn only_read_only_queries_without_side_effects_run_briefly() {
        assert!(brief("SELECT k FROM t WHERE id = $1", true));
        assert!(brief("with x as (select 1) select * from x", true));
        assert!(brief("VALUES (1)", true));
        assert!(!brief("SELECT k FROM t", false));
        assert!(!brief("BEGIN", true));
        assert!(!brief("PRAGMA table_info(t)", true));
        assert!(!brief("SELECT pg_cancel_backend(4)", true));
        assert!(!brief("select PG_TERMINATE_BACKEND(4)", true));
        assert!(!brief("SELECT * FROM archives('offsite:auto')", true));
        assert!(!brief("SELECT \"pg_cancel_backend\"(4)", true));
    }

    #[test]
    fn single_writes_that_return_no_rows_run_briefly_outside_a_transaction() {
        let write = |sql: &str, columns| briefly(&lexer::tokenize(sql).unwrap(), false, columns);
        for sql in [
            "INSERT INTO t(k) VALUES ($1)",
            "update t set k = 1 where id = $1",
            "DELETE FROM t WHERE id = $1",
            "REPLACE INTO t VALUES (1)",
        ] {
            assert_eq!(write(sql, 0), Briefly::WriteOutsideTransaction, "{sql}");
        }
        assert_eq!(
            write("INSERT INTO t VALUES (1) RETURNING id", 1),
            Briefly::Never
        );
        assert_eq!(write("CREATE TABLE u(a)", 0), Briefly::Never);
        assert_eq!(
            write("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", 0),
            Briefly::Never
        );
        assert_eq!(
            write("INSERT INTO t SELECT pg_terminate_backend(4)", 0),
            Briefly::Never
        );
    }
}
