//! The change feed: the row changes of committed transactions, delivered to the plugins that
//! subscribed to them (ABI 1.8), in each database's commit order, once durable.
//!
//! A session's connection records the rows each statement changes (SQLite's update hook,
//! installed only while some subscription wants its database) into a buffer of its
//! own ([`Capture`]). The buffer follows SQLite's undo: a rollback empties it, a statement
//! that fails and is undone inside a transaction gives its part back, and so does a
//! `ROLLBACK TO` a savepoint. The commit hook, which runs while the connection holds the
//! database's write lock, numbers the commit (so numbers follow commit order) and stages
//! its changes; the session settles it once the commit is durable (when its client hears of
//! it), or the rollback hook withdraws it if the commit fails. A database's commits go out
//! in number order as they settle, each to every subscription that wants some of its
//! changes, into a bounded queue per subscription: a commit that does not fit is dropped
//! and counted, and the count reaches the plugin with the next commit that fits (or alone).
//!
//! Not row changes, and not delivered: schema changes, RESTORE (of a database or a table) and
//! IMPORT (written through connections of their own); `WITHOUT ROWID` tables, SQLite's own
//! tables, and a row deleted because an `INSERT OR REPLACE` replaced it on a UNIQUE
//! constraint other than its rowid (SQLite's update hook does not see them). A replace on the rowid itself is an insert of that rowid.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use cairn_plugin_api::abi;
use cairn_plugin_api::ffi::host::CommitBatch;

use crate::feed_queue::{FeedQueue, Queued, Undelivered};

/// The most changes one commit carries; beyond them its changes are counted, not listed.
pub const MAX_CHANGES_PER_COMMIT: usize = 16_384;
/// The most changes a subscription's queue holds.
pub const QUEUE_CHANGES: usize = 65_536;
/// The most commits a subscription's queue holds.
pub const QUEUE_COMMITS: usize = 4_096;

type Row = (Arc<str>, abi::CairnChangeOp, i64);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Every subscription, and the order of each database's commits.
#[derive(Debug, Default)]
pub struct ChangeFeed {
    /// Moves on at every subscription change: connections then look at their interest again.
    version: AtomicU64,
    subscriptions: RwLock<Vec<Arc<Subscription>>>,
    orders: Mutex<HashMap<String, Arc<Mutex<Order>>>>,
    /// Per plugin: commits an ended subscription discarded, reported as missed to the
    /// plugin's next one (its next instance, after a reload).
    undelivered: Undelivered,
}

/// What one plugin instance subscribed to, and its queue.
#[derive(Debug)]
pub struct Subscription {
    pub plugin: String,
    pub generation: u64,
    /// Empty: every database.
    databases: Vec<String>,
    /// Lowercase; empty: every table.
    tables: Vec<String>,
    queue: Arc<ChangeQueue>,
    /// What is left of an ended instance's subscription until the plugin subscribes again
    /// (a reload) or is unloaded: it only counts the commits it would have delivered, so
    /// that the next instance hears how many it missed.
    counting: bool,
}

impl Subscription {
    fn wants_database(&self, database: &str) -> bool {
        self.databases.is_empty() || self.databases.iter().any(|d| d == database)
    }

    fn wants_table(&self, table: &str) -> bool {
        self.tables.is_empty() || self.tables.iter().any(|t| t.eq_ignore_ascii_case(table))
    }
}

/// A database's commits between their numbering and their delivery.
#[derive(Debug, Default)]
struct Order {
    last: u64,
    staged: BTreeMap<u64, Staged>,
}

#[derive(Debug)]
enum Staged {
    /// Numbered in the commit hook; not yet known to have committed.
    Pending(Vec<Row>, u64),
    Committed(Vec<Row>, u64),
    Withdrawn,
}

impl ChangeFeed {
    /// Subscribes `plugin`'s instance `generation` (replacing its earlier subscription);
    /// returns its queue and whether it is new (a delivery task is then needed).
    pub fn subscribe(
        &self,
        plugin: &str,
        generation: u64,
        databases: Vec<String>,
        tables: Vec<String>,
    ) -> (Arc<ChangeQueue>, bool) {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        // The counting remains of the plugin's earlier instances give way to this one.
        subscriptions.retain(|s| !(s.plugin == plugin && s.counting));
        let existing = subscriptions
            .iter()
            .position(|s| s.plugin == plugin && s.generation == generation);
        let (queue, new) = match existing {
            Some(i) => (Arc::clone(&subscriptions.remove(i).queue), false),
            None => (
                Arc::new(self.undelivered.new_queue(
                    plugin,
                    "committed changes",
                    QUEUE_COMMITS,
                    QUEUE_CHANGES,
                )),
                true,
            ),
        };
        subscriptions.push(Arc::new(Subscription {
            plugin: plugin.to_owned(),
            generation,
            databases,
            tables: tables.into_iter().map(|t| t.to_ascii_lowercase()).collect(),
            queue: Arc::clone(&queue),
            counting: false,
        }));
        self.version.fetch_add(1, Ordering::AcqRel);
        (queue, new)
    }

    /// Ends the subscription of `plugin`'s instance `generation`, if any: its queue closes,
    /// and what it held is counted for the plugin's next subscription, as is every commit it
    /// would have delivered from now on, until the plugin subscribes again or is
    /// [forgotten](ChangeFeed::forget).
    pub fn unsubscribe(&self, plugin: &str, generation: u64) {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let Some(i) = subscriptions
            .iter()
            .position(|s| s.plugin == plugin && s.generation == generation && !s.counting)
        else {
            return;
        };
        let ended = subscriptions.remove(i);
        self.undelivered.close(plugin, &ended.queue);
        if !subscriptions.iter().any(|s| s.plugin == plugin) {
            subscriptions.push(Arc::new(Subscription {
                plugin: ended.plugin.clone(),
                generation: ended.generation,
                databases: ended.databases.clone(),
                tables: ended.tables.clone(),
                queue: Arc::clone(&ended.queue),
                counting: true,
            }));
        }
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The plugin is unloaded: nothing is counted for it any more.
    pub fn forget(&self, plugin: &str) {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        subscriptions.retain(|s| !(s.plugin == plugin && s.counting));
        self.undelivered.forget(plugin);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The databases and tables instance `generation` of `plugin` subscribed to (empty: all).
    pub fn subscribed(&self, plugin: &str, generation: u64) -> Option<(Vec<String>, Vec<String>)> {
        self.subscriptions()
            .iter()
            .find(|s| s.plugin == plugin && s.generation == generation && !s.counting)
            .map(|s| (s.databases.clone(), s.tables.clone()))
    }

    fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn subscriptions(&self) -> Vec<Arc<Subscription>> {
        self.subscriptions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn order(&self, database: &str) -> Arc<Mutex<Order>> {
        Arc::clone(lock(&self.orders).entry(database.to_owned()).or_default())
    }

    /// Numbers a commit about to be written (its connection holds the write lock).
    fn stage(&self, database: &str, rows: Vec<Row>, truncated: u64) -> u64 {
        let order = self.order(database);
        let mut order = lock(&order);
        order.last += 1;
        let sequence = order.last;
        order
            .staged
            .insert(sequence, Staged::Pending(rows, truncated));
        sequence
    }

    /// Settles a staged commit (committed, or withdrawn), then delivers every commit at
    /// the head of the database's order that is settled.
    fn settle(&self, database: &str, sequence: u64, committed: bool) {
        let order = self.order(database);
        let mut order = lock(&order);
        if let Some(staged) = order.staged.get_mut(&sequence) {
            let settled = match std::mem::replace(staged, Staged::Withdrawn) {
                Staged::Pending(rows, truncated) if committed => Staged::Committed(rows, truncated),
                other @ Staged::Committed(..) => other,
                _ => Staged::Withdrawn,
            };
            *staged = settled;
        }
        // Delivered under the order's lock, so that two settlers cannot interleave commits.
        let subscriptions = self.subscriptions();
        while let Some(entry) = order.staged.first_entry() {
            if matches!(entry.get(), Staged::Pending(..)) {
                break;
            }
            let (sequence, staged) = entry.remove_entry();
            if let Staged::Committed(rows, truncated) = staged {
                deliver(self, &subscriptions, database, sequence, &rows, truncated);
            }
        }
    }
}

fn deliver(
    feed: &ChangeFeed,
    subscriptions: &[Arc<Subscription>],
    database: &str,
    sequence: u64,
    rows: &[Row],
    truncated: u64,
) {
    for s in subscriptions.iter().filter(|s| s.wants_database(database)) {
        let changes: Vec<Row> = rows
            .iter()
            .filter(|(table, _, _)| s.wants_table(table))
            .cloned()
            .collect();
        if changes.is_empty() && truncated == 0 {
            continue;
        }
        if s.counting {
            feed.undelivered.add(&s.plugin, 1);
            continue;
        }
        s.queue.push(
            &s.plugin,
            CommitBatch {
                database: database.to_owned(),
                sequence,
                changes,
                missed: 0,
                truncated,
            },
        );
    }
}

/// A subscription's commits waiting for its plugin, bounded by [`QUEUE_CHANGES`] and
/// [`QUEUE_COMMITS`].
pub type ChangeQueue = FeedQueue<CommitBatch>;

impl Queued for CommitBatch {
    fn weight(&self) -> usize {
        self.changes.len()
    }

    fn set_missed(&mut self, missed: u64) {
        self.missed = missed;
    }

    fn missed_report(missed: u64) -> CommitBatch {
        CommitBatch {
            missed,
            ..CommitBatch::default()
        }
    }
}

/// One connection's row changes since its transaction began (see the module's comment).
#[derive(Debug)]
pub struct Capture {
    feed: Arc<ChangeFeed>,
    database: String,
    /// The feed's version the hook was last installed or removed for ([`Capture::sync`]
    /// runs before every statement: one load when nothing changed).
    synced: AtomicU64,
    state: Mutex<CaptureState>,
}

#[derive(Debug, Default)]
struct CaptureState {
    /// Whether some subscription wants this database (the hook is installed then).
    wanted: bool,
    /// Per table: its shared name if some subscription wants it.
    tables: HashMap<String, Option<Arc<str>>>,
    /// The feed's version `tables` was worked out for (apart from `Capture::synced`, which
    /// only `sync` moves, so that it still sees a change the hook saw first).
    tables_version: u64,
    rows: Vec<Row>,
    truncated: u64,
    /// The commit numbered by the last commit hook, not yet settled.
    staged: Option<u64>,
    /// Open savepoints: name (lowercase) and how many rows were recorded before it.
    savepoints: Vec<(String, usize, u64)>,
    /// Moves on at every commit and rollback: a mark from before one is stale.
    epoch: u64,
}

/// Where a statement began in a connection's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Mark {
    rows: usize,
    truncated: u64,
    total_changes: u64,
    epoch: u64,
}

impl Capture {
    /// The capture of a connection to `database`.
    pub fn new(feed: Arc<ChangeFeed>, database: &str) -> Arc<Capture> {
        Arc::new(Capture {
            feed,
            database: database.to_owned(),
            synced: AtomicU64::new(0),
            state: Mutex::new(CaptureState::default()),
        })
    }

    fn state(&self) -> MutexGuard<'_, CaptureState> {
        lock(&self.state)
    }

    /// Installs the update hook on `conn` while some subscription wants its database, and
    /// removes it otherwise (it costs a call per changed row). While it is installed the
    /// connection's authorizer answers "ignore" to a DELETE, which SQLite documents as
    /// running it row by row instead of emptying the table in one step the hook would not
    /// see. Called before each statement: one atomic load when nothing changed.
    pub fn sync(self: &Arc<Self>, conn: &mut rusqlite::Connection) {
        let version = self.feed.version();
        if self.synced.load(Ordering::Acquire) == version {
            return;
        }
        let mut state = self.state();
        let wanted = self
            .feed
            .subscriptions()
            .iter()
            .any(|s| s.wants_database(&self.database));
        self.synced.store(version, Ordering::Release);
        let was = std::mem::replace(&mut state.wanted, wanted);
        // Wanted from the middle of a transaction: its earlier rows were not recorded, so
        // its commit says some changes are not listed.
        if wanted && !was && !conn.is_autocommit() {
            state.truncated = state.truncated.max(1);
        }
        drop(state);
        if wanted == was {
            return;
        }
        let changed = if wanted {
            let capture = Arc::clone(self);
            conn.update_hook(Some(
                move |action: rusqlite::hooks::Action, schema: &str, table: &str, rowid: i64| {
                    capture.record(action, schema, table, rowid);
                },
            ))
            .and_then(|()| conn.authorizer(Some(authorize_row_by_row)))
        } else {
            conn.update_hook(None::<fn(rusqlite::hooks::Action, &str, &str, i64)>)
                .and_then(|()| conn.authorizer(Some(crate::catalog::authorize)))
        };
        // Statements prepared before were authorized the other way.
        conn.flush_prepared_statement_cache();
        if let Err(e) = changed {
            tracing::error!(database = %self.database, error = %e, "the row-change hook could not be changed; changes of this session may not be delivered");
        }
    }

    /// Makes the next [`Capture::sync`] install its hook and authorizer again (after
    /// something replaced the authorizer).
    pub fn reinstall(&self) {
        let mut state = self.state();
        self.synced.store(0, Ordering::Release);
        state.wanted = false;
    }

    fn record(&self, action: rusqlite::hooks::Action, schema: &str, table: &str, rowid: i64) {
        use rusqlite::hooks::Action;
        // The attached backup history and temporary tables are not the database's rows.
        if schema != "main" {
            return;
        }
        let op = match action {
            Action::SQLITE_INSERT => abi::CAIRN_CHANGE_INSERT,
            Action::SQLITE_UPDATE => abi::CAIRN_CHANGE_UPDATE,
            Action::SQLITE_DELETE => abi::CAIRN_CHANGE_DELETE,
            _ => return,
        };
        let mut state = self.state();
        let version = self.feed.version();
        if state.tables_version != version {
            state.tables_version = version;
            state.tables.clear();
        }
        let name = match state.tables.get(table) {
            Some(name) => name.clone(),
            None => {
                let wanted = self
                    .feed
                    .subscriptions()
                    .iter()
                    .any(|s| s.wants_database(&self.database) && s.wants_table(table));
                let name = wanted.then(|| Arc::<str>::from(table));
                state.tables.insert(table.to_owned(), name.clone());
                name
            }
        };
        let Some(name) = name else { return };
        if state.rows.len() < MAX_CHANGES_PER_COMMIT {
            state.rows.push((name, op, rowid));
        } else {
            state.truncated += 1;
        }
    }

    /// The commit hook: numbers the commit and stages its changes.
    pub fn on_commit(&self) {
        let mut state = self.state();
        state.epoch += 1;
        // A commit staged earlier that no rollback withdrew has committed.
        if let Some(sequence) = state.staged.take() {
            self.feed.settle(&self.database, sequence, true);
        }
        state.savepoints.clear();
        if state.rows.is_empty() && state.truncated == 0 {
            return;
        }
        let rows = std::mem::take(&mut state.rows);
        let truncated = std::mem::take(&mut state.truncated);
        state.staged = Some(self.feed.stage(&self.database, rows, truncated));
    }

    /// The rollback hook: the transaction's changes are gone, and a commit that failed after
    /// its hook is withdrawn.
    pub fn on_rollback(&self) {
        let mut state = self.state();
        state.epoch += 1;
        state.rows.clear();
        state.truncated = 0;
        state.savepoints.clear();
        if let Some(sequence) = state.staged.take() {
            self.feed.settle(&self.database, sequence, false);
        }
    }

    /// Called once the connection's commits are durable: its staged commit goes out.
    pub fn settle(&self) {
        let staged = self.state().staged.take();
        if let Some(sequence) = staged {
            self.feed.settle(&self.database, sequence, true);
        }
    }

    /// Where a statement about to run begins.
    pub fn mark(&self, conn: &rusqlite::Connection) -> Mark {
        let state = self.state();
        Mark {
            rows: state.rows.len(),
            truncated: state.truncated,
            total_changes: conn.total_changes(),
            epoch: state.epoch,
        }
    }

    /// A statement that began at `mark` failed inside a transaction. SQLite undid its
    /// changes unless it failed under `OR FAIL`, which keeps those made before the failure:
    /// then its changes count in the connection's total. (Rows that only its triggers made
    /// do not count there; they are given back too. The session rolls back any transaction
    /// in which a statement failed, as PostgreSQL does, so none of them is committed today.)
    pub fn failed(&self, mark: Mark, conn: &rusqlite::Connection) {
        if conn.total_changes() != mark.total_changes {
            return;
        }
        let mut state = self.state();
        // The transaction ended meanwhile (a rollback emptied the buffer): nothing to undo.
        if state.epoch != mark.epoch {
            return;
        }
        state.rows.truncate(mark.rows);
        state.truncated = mark.truncated;
    }

    /// `SAVEPOINT name` succeeded.
    pub fn savepoint(&self, name: &str) {
        let mut state = self.state();
        let (rows, truncated) = (state.rows.len(), state.truncated);
        state
            .savepoints
            .push((name.to_ascii_lowercase(), rows, truncated));
    }

    /// `RELEASE name` succeeded: it and the savepoints opened after it are gone (their
    /// changes stay).
    pub fn release(&self, name: &str) {
        let mut state = self.state();
        if let Some(i) = state
            .savepoints
            .iter()
            .rposition(|(n, _, _)| n.eq_ignore_ascii_case(name))
        {
            state.savepoints.truncate(i);
        }
    }

    /// `ROLLBACK TO name` succeeded: the changes since it are undone; it stays open.
    pub fn rollback_to(&self, name: &str) {
        let mut state = self.state();
        if let Some(i) = state
            .savepoints
            .iter()
            .rposition(|(n, _, _)| n.eq_ignore_ascii_case(name))
        {
            let (_, rows, truncated) = state.savepoints[i].clone();
            state.savepoints.truncate(i + 1);
            state.rows.truncate(rows);
            state.truncated = truncated;
        }
    }
}

/// The session authorizer, but a DELETE row by row (see [`Capture::sync`]).
fn authorize_row_by_row(ctx: rusqlite::hooks::AuthContext<'_>) -> rusqlite::hooks::Authorization {
    use rusqlite::hooks::{AuthAction, Authorization};
    match (ctx.action, crate::catalog::authorize(ctx)) {
        (AuthAction::Delete { .. }, Authorization::Allow) => Authorization::Ignore,
        (_, decided) => decided,
    }
}

impl Drop for Capture {
    /// A connection closing with a commit staged and not withdrawn had committed it.
    fn drop(&mut self) {
        let staged = lock(&self.state).staged.take();
        if let Some(sequence) = staged {
            self.feed.settle(&self.database, sequence, true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: i64) -> Vec<Row> {
        (1..=n)
            .map(|i| (Arc::<str>::from("t"), abi::CAIRN_CHANGE_INSERT, i))
            .collect()
    }

    fn drain(queue: &ChangeQueue) -> Vec<CommitBatch> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        while !queue.is_empty() {
            out.push(runtime.block_on(queue.next()).unwrap());
        }
        out
    }

    #[test]
    fn commits_go_out_in_number_order_whichever_settles_first() {
        let feed = ChangeFeed::default();
        let (queue, new) = feed.subscribe("audit", 1, vec![], vec![]);
        assert!(new);
        let first = feed.stage("db", rows(1), 0);
        let second = feed.stage("db", rows(2), 0);
        let withdrawn = feed.stage("db", rows(3), 0);
        feed.settle("db", second, true);
        assert!(drain(&queue).is_empty(), "the first is not settled yet");
        feed.settle("db", withdrawn, false);
        feed.settle("db", first, true);
        let got: Vec<(u64, usize)> = drain(&queue)
            .iter()
            .map(|c| (c.sequence, c.changes.len()))
            .collect();
        assert_eq!(got, [(first, 1), (second, 2)]);
    }

    #[test]
    fn a_full_queue_drops_commits_and_says_how_many() {
        let feed = ChangeFeed::default();
        let (queue, _) = feed.subscribe("audit", 1, vec!["db".into()], vec!["T".into()]);
        for _ in 0..QUEUE_COMMITS + 3 {
            let sequence = feed.stage("db", rows(1), 0);
            feed.settle("db", sequence, true);
        }
        // Another database, and another table, are not this subscription's.
        let other = feed.stage("elsewhere", rows(1), 0);
        feed.settle("elsewhere", other, true);
        let got = drain(&queue);
        assert_eq!(got.len(), QUEUE_COMMITS + 1);
        let report = got.last().unwrap();
        assert_eq!((report.missed, report.changes.len()), (3, 0));
        let after = feed.stage("db", rows(1), 0);
        feed.settle("db", after, true);
        let next = drain(&queue);
        assert_eq!((next[0].sequence, next[0].missed), (after, 0));
    }

    #[test]
    fn commits_between_two_instances_are_counted_for_the_next() {
        let feed = ChangeFeed::default();
        let (old, _) = feed.subscribe("audit", 1, vec![], vec![]);
        let queued = feed.stage("db", rows(1), 0);
        feed.settle("db", queued, true);
        // A reload: the old instance goes, a commit comes, the new one subscribes.
        feed.unsubscribe("audit", 1);
        assert!(old.is_empty(), "closed");
        let unseen = feed.stage("db", rows(2), 0);
        feed.settle("db", unseen, true);
        let (new, _) = feed.subscribe("audit", 2, vec![], vec![]);
        let next = feed.stage("db", rows(1), 0);
        feed.settle("db", next, true);
        let got = drain(&new);
        assert_eq!((got[0].sequence, got[0].missed), (next, 2));
        // Unloaded for good: nothing is counted any more.
        feed.unsubscribe("audit", 2);
        feed.forget("audit");
        assert!(feed.subscriptions().is_empty());
    }

    #[test]
    fn a_savepoint_rolled_back_gives_its_changes_back() {
        let feed = Arc::new(ChangeFeed::default());
        feed.subscribe("audit", 1, vec![], vec![]);
        let capture = Capture::new(Arc::clone(&feed), "db");
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        capture.sync(&mut conn);
        conn.execute_batch("CREATE TABLE t(x UNIQUE); BEGIN; INSERT INTO t VALUES (1)")
            .unwrap();
        conn.execute_batch("SAVEPOINT a").unwrap();
        capture.savepoint("a");
        conn.execute_batch("INSERT INTO t VALUES (2), (3)").unwrap();
        conn.execute_batch("ROLLBACK TO a").unwrap();
        capture.rollback_to("A");
        assert_eq!(capture.state().rows.len(), 1);
        // A failed statement that SQLite undid gives its rows back too; one under OR FAIL
        // keeps those it made before failing, as SQLite does.
        let mark = capture.mark(&conn);
        assert!(conn.execute_batch("INSERT INTO t VALUES (7), (1)").is_err());
        capture.failed(mark, &conn);
        assert_eq!(capture.state().rows.len(), 1);
        let mark = capture.mark(&conn);
        assert!(
            conn.execute_batch("INSERT OR FAIL INTO t VALUES (8), (1)")
                .is_err()
        );
        capture.failed(mark, &conn);
        assert_eq!(capture.state().rows.len(), 2);
        conn.execute_batch("COMMIT").unwrap();
    }
}
