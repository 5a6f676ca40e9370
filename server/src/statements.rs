//! The statement feed (ABI 1.10): every statement a session runs, after it ends, for the
//! plugins that subscribed (a query log, a slow-query report), each through a bounded queue
//! whose drops are counted and reported. A plugin never gets its own SQL (that would feed
//! a query log with its own writes). Nothing is done per statement while no plugin listens
//! but one atomic load.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use cairn_plugin_api::ffi::host::StatementRecord;

use crate::feed_queue::{FeedQueue, Queued, Undelivered};

/// The most bytes of a statement's text handed over.
pub const MAX_TEXT: usize = 4096;
/// The most statements a plugin's queue holds.
pub const QUEUE_STATEMENTS: usize = 16_384;
/// The most bytes of text a plugin's queue holds.
pub const QUEUE_BYTES: usize = 8 << 20;

/// A plugin's statements waiting for it.
pub type StatementQueue = FeedQueue<StatementRecord>;

impl Queued for StatementRecord {
    fn weight(&self) -> usize {
        self.text.len() + 1
    }

    fn set_missed(&mut self, missed: u64) {
        self.missed = missed;
    }

    fn missed_report(missed: u64) -> StatementRecord {
        StatementRecord {
            missed,
            ..StatementRecord::default()
        }
    }
}

#[derive(Debug)]
struct Subscription {
    plugin: String,
    generation: u64,
    /// The user its own SQL runs as.
    own_user: String,
    min_duration: Duration,
    queue: Arc<StatementQueue>,
}

/// Every statement subscription.
#[derive(Debug, Default)]
pub struct StatementFeed {
    subscriptions: RwLock<Vec<Arc<Subscription>>>,
    /// How many subscriptions there are: the one load per statement.
    count: AtomicUsize,
    /// Per plugin: statements an ended subscription left, reported to its next one.
    undelivered: Undelivered,
}

fn cut(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl StatementFeed {
    /// Subscribes `plugin`'s instance `generation` to the statements that ran for at least
    /// `min_duration`, replacing its earlier subscription; returns its queue and whether it
    /// is new (a delivery task is then needed).
    pub fn subscribe(
        &self,
        plugin: &str,
        generation: u64,
        min_duration: Duration,
    ) -> (Arc<StatementQueue>, bool) {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let existing = subscriptions
            .iter()
            .position(|s| s.plugin == plugin && s.generation == generation);
        let (queue, new) = match existing {
            Some(i) => (Arc::clone(&subscriptions.remove(i).queue), false),
            None => (
                Arc::new(self.undelivered.new_queue(
                    plugin,
                    "statements",
                    QUEUE_STATEMENTS,
                    QUEUE_BYTES,
                )),
                true,
            ),
        };
        subscriptions.push(Arc::new(Subscription {
            plugin: plugin.to_owned(),
            generation,
            own_user: format!("plugin:{plugin}"),
            min_duration,
            queue: Arc::clone(&queue),
        }));
        self.count.store(subscriptions.len(), Ordering::Release);
        (queue, new)
    }

    /// Ends the subscription of `plugin`'s instance `generation`, if any.
    pub fn unsubscribe(&self, plugin: &str, generation: u64) {
        let mut subscriptions = self
            .subscriptions
            .write()
            .unwrap_or_else(|p| p.into_inner());
        subscriptions.retain(|s| {
            let gone = s.plugin == plugin && s.generation == generation;
            if gone {
                self.undelivered.close(plugin, &s.queue);
            }
            !gone
        });
        self.count.store(subscriptions.len(), Ordering::Release);
    }

    /// The plugin is unloaded: what its ended subscriptions left is forgotten.
    pub fn forget(&self, plugin: &str) {
        self.undelivered.forget(plugin);
    }

    /// The minimum duration `plugin`'s instance `generation` subscribed with.
    pub fn subscribed(&self, plugin: &str, generation: u64) -> Option<Duration> {
        self.subscriptions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|s| s.plugin == plugin && s.generation == generation)
            .map(|s| s.min_duration)
    }

    /// Whether any plugin listens.
    pub fn wanted(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Hands a statement that ended to every subscription that wants it. `outcome`: the
    /// rows it returned or changed, or its SQLSTATE.
    pub fn publish(
        &self,
        database: &str,
        user: &str,
        text: &str,
        started: (SystemTime, Duration),
        outcome: Result<u64, &str>,
    ) {
        if !self.wanted() {
            return;
        }
        let (started_at, duration) = started;
        let subscriptions: Vec<Arc<Subscription>> = self
            .subscriptions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|s| duration >= s.min_duration && s.own_user != user)
            .cloned()
            .collect();
        if subscriptions.is_empty() {
            return;
        }
        let started_at_micros = started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        let record = StatementRecord {
            database: database.to_owned(),
            user: user.to_owned(),
            text: cut(text),
            sqlstate: outcome.err().map(str::to_owned),
            started_at_micros,
            duration_micros: u64::try_from(duration.as_micros()).unwrap_or(u64::MAX),
            rows: outcome.unwrap_or(0),
            missed: 0,
        };
        for s in subscriptions {
            s.queue.push(&s.plugin, record.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_statements_of_others_reach_a_subscriber_and_a_long_text_is_cut() {
        let feed = StatementFeed::default();
        assert!(!feed.wanted());
        let (queue, new) = feed.subscribe("slowlog", 1, Duration::from_millis(10));
        assert!(new);
        let at = (SystemTime::now(), Duration::from_millis(20));
        feed.publish(
            "db",
            "alice",
            "SELECT 1",
            (at.0, Duration::from_millis(1)),
            Ok(1),
        );
        feed.publish("db", "plugin:slowlog", "INSERT INTO log …", at, Ok(1));
        let long = "é".repeat(MAX_TEXT);
        feed.publish("db", "bob", &long, at, Err("57014"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let got = runtime.block_on(queue.next()).unwrap();
        assert_eq!(
            (got.user.as_str(), got.sqlstate.as_deref()),
            ("bob", Some("57014"))
        );
        assert!(got.text.len() <= MAX_TEXT && got.text.len() > MAX_TEXT - 2);
        assert!(
            queue.is_empty(),
            "the fast one and the plugin's own were not queued"
        );
        feed.unsubscribe("slowlog", 1);
        assert!(!feed.wanted());
    }
}
