//! A bounded queue from the server to one plugin (committed changes, statements): pushed
//! without waiting, popped by the plugin's delivery task. What does not fit is dropped and
//! counted, and the count reaches the plugin with the next item that fits, or alone once the
//! queue is empty: a loss is always reported, never silent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// What a [`FeedQueue`] carries.
pub trait Queued: Send {
    /// What it counts for against the queue's weight bound (changes in a commit, 1 for a
    /// statement).
    fn weight(&self) -> usize;
    /// Records that `missed` items were dropped just before this one.
    fn set_missed(&mut self, missed: u64);
    /// A report of `missed` items dropped with none after them.
    fn missed_report(missed: u64) -> Self;
}

/// A bounded queue of `T` for one plugin.
#[derive(Debug)]
pub struct FeedQueue<T> {
    state: Mutex<State<T>>,
    ready: tokio::sync::Notify,
    max_items: usize,
    max_weight: usize,
    /// What it carries, for the warning when it overflows.
    what: &'static str,
}

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    weight: usize,
    /// Items dropped since the last one queued.
    dropped: u64,
    closed: bool,
}

impl<T: Queued> FeedQueue<T> {
    /// A queue of at most `max_items` items weighing at most `max_weight` together.
    pub fn new(what: &'static str, max_items: usize, max_weight: usize) -> FeedQueue<T> {
        FeedQueue {
            state: Mutex::new(State {
                items: VecDeque::new(),
                weight: 0,
                dropped: 0,
                closed: false,
            }),
            ready: tokio::sync::Notify::new(),
            max_items,
            max_weight,
            what,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `item`, or drops and counts it when it does not fit.
    pub fn push(&self, plugin: &str, mut item: T) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        let weight = item.weight();
        if state.items.len() >= self.max_items || state.weight + weight > self.max_weight {
            if state.dropped == 0 {
                tracing::warn!(
                    plugin,
                    what = self.what,
                    "a plugin's queue is full; what does not fit is dropped (and counted for it) until it catches up"
                );
            }
            state.dropped += 1;
            return;
        }
        item.set_missed(std::mem::take(&mut state.dropped));
        state.weight += weight;
        state.items.push_back(item);
        drop(state);
        self.ready.notify_one();
    }

    /// Ends the queue: [`FeedQueue::next`] returns `None` from now on. Returns how many
    /// items it discarded (queued, or dropped and not yet reported).
    pub fn close(&self) -> u64 {
        let mut state = self.lock();
        state.closed = true;
        let discarded = state.items.len() as u64 + std::mem::take(&mut state.dropped);
        state.items.clear();
        state.weight = 0;
        drop(state);
        self.ready.notify_one();
        discarded
    }

    /// Counts `missed` items as dropped before the first one queued (what a previous queue
    /// of the same plugin discarded).
    pub fn count_missed(&self, missed: u64) {
        self.lock().dropped += missed;
    }

    /// Whether nothing is waiting (no item, no drop to report).
    pub fn is_empty(&self) -> bool {
        let state = self.lock();
        state.items.is_empty() && state.dropped == 0
    }

    /// The next item (or a report of drops with none after them); `None` once closed.
    pub async fn next(&self) -> Option<T> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if let Some(item) = state.items.pop_front() {
                    state.weight -= item.weight();
                    return Some(item);
                }
                if state.dropped > 0 {
                    return Some(T::missed_report(std::mem::take(&mut state.dropped)));
                }
            }
            // One consumer: a push between the check and here leaves a permit.
            self.ready.notified().await;
        }
    }
}

/// Per plugin: what its ended subscriptions left undelivered, to be reported as missed to its
/// next one (its next instance, after a reload).
#[derive(Debug, Default)]
pub struct Undelivered(Mutex<HashMap<String, u64>>);

impl Undelivered {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `count` more items for `plugin`.
    pub fn add(&self, plugin: &str, count: u64) {
        if count > 0 {
            *self.lock().entry(plugin.to_owned()).or_default() += count;
        }
    }

    /// Closes `plugin`'s ended queue and counts what it held.
    pub fn close<T: Queued>(&self, plugin: &str, queue: &FeedQueue<T>) {
        self.add(plugin, queue.close());
    }

    /// A new queue for `plugin`, its count of missed items starting at what was left.
    pub fn new_queue<T: Queued>(
        &self,
        plugin: &str,
        what: &'static str,
        max_items: usize,
        max_weight: usize,
    ) -> FeedQueue<T> {
        let queue = FeedQueue::new(what, max_items, max_weight);
        if let Some(missed) = self.lock().remove(plugin) {
            queue.count_missed(missed);
        }
        queue
    }

    /// The plugin is gone: nothing is kept for it.
    pub fn forget(&self, plugin: &str) {
        self.lock().remove(plugin);
    }
}
