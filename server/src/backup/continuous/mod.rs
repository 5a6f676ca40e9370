//! Continuous archiving (`[backup.continuous]`): every committed transaction of the watched
//! databases reaches a collection within `interval` plus the upload time, as segments of
//! their write-ahead log shipped before Cairn checkpoints them, on top of base archives taken
//! at start and every `base_every`. A restore replays the segments onto a base, up to any
//! instant of the restorable window.
//!
//! Layers: [`wal`] (reading the live log), [`commits`] (each commit's time, stamped by a WAL
//! hook on every connection), [`segment`] and [`store`] (the stream's format and where it
//! goes), [`archiver`] (one database: ship, checkpoint, bases, retention, bounds) and
//! [`replay`] (restoring a base and its stream to an instant).

pub mod archiver;
pub mod commits;
pub mod replay;
pub mod segment;
pub mod store;
pub mod wal;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backup::Backups;
use crate::catalog::Catalog;

pub use commits::CommitClocks;

/// `[backup.continuous]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContinuousConfig {
    /// The collection bases and streams go to: `NAME:prefix` or a directory.
    pub destination: String,
    /// How often the log is shipped.
    pub interval: Duration,
    /// Names, or `*` for every database.
    pub databases: Vec<String>,
    /// How often a new base archive is taken (one is also taken at start and after a gap).
    pub base_every: Duration,
    /// How many bases are kept (with the segments the oldest needs, and all after).
    pub keep_bases: usize,
    /// How large the unshipped log may grow while the destination fails before it is
    /// checkpointed anyway (a gap in the stream, alerted).
    pub max_wal: u64,
}

/// The archivers of every watched database, started as the databases appear.
#[derive(Debug)]
pub struct Continuous {
    config: Arc<ContinuousConfig>,
    backups: Arc<Backups>,
    catalog: Arc<Catalog>,
    clocks: Arc<CommitClocks>,
    running: Mutex<HashMap<String, archiver::Handle>>,
    stop: Arc<archiver::StopSignal>,
    supervisor: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Continuous {
    /// Starts archiving (a thread looks for watched databases every interval).
    pub fn start(
        config: ContinuousConfig,
        backups: Arc<Backups>,
        catalog: Arc<Catalog>,
        clocks: Arc<CommitClocks>,
    ) -> Arc<Continuous> {
        tracing::info!(destination = %config.destination, interval_ms = config.interval.as_millis() as u64, databases = %config.databases.join(", "), "continuous archiving");
        let continuous = Arc::new(Continuous {
            config: Arc::new(config),
            backups,
            catalog,
            clocks,
            running: Mutex::new(HashMap::new()),
            stop: Arc::new(archiver::StopSignal::default()),
            supervisor: Mutex::new(None),
        });
        let watcher = Arc::clone(&continuous);
        let spawned = std::thread::Builder::new()
            .name("continuous".into())
            .spawn(move || watcher.supervise());
        match spawned {
            Ok(handle) => *archiver::lock(&continuous.supervisor) = Some(handle),
            Err(e) => {
                tracing::error!(error = %e, "no thread for continuous archiving; nothing is archived continuously")
            }
        }
        continuous
    }

    /// Starts an archiver for each watched database that has none (or whose archiver ended:
    /// the database was dropped or replaced, and is there again).
    fn supervise(&self) {
        loop {
            let databases = match self.catalog.list() {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "continuous archiving cannot list the databases");
                    Vec::new()
                }
            };
            {
                let mut running = archiver::lock(&self.running);
                running.retain(|_, handle| !handle.is_finished());
                for db in databases {
                    if !self.clocks.watches(&db.name) || running.contains_key(&db.name) {
                        continue;
                    }
                    let path = self.catalog.path_of(&db.name);
                    let Some(clock) = self.clocks.clock(&db.name, &path) else {
                        continue;
                    };
                    let started = archiver::Archiver::spawn(
                        db.name.clone(),
                        path,
                        Arc::clone(&self.config),
                        Arc::clone(&self.backups),
                        Arc::clone(&self.catalog),
                        clock,
                        Arc::clone(&self.stop),
                    );
                    match started {
                        Ok(handle) => {
                            running.insert(db.name, handle);
                        }
                        Err(e) => {
                            tracing::warn!(database = %db.name, error = %e, "continuous archiving could not start; trying again")
                        }
                    }
                }
            }
            if self.stop.wait(self.config.interval) {
                return;
            }
        }
    }

    /// Ships what every archiver has not shipped yet, and stops them (at shutdown, before
    /// the final checkpoint).
    pub fn stop(&self) {
        self.stop.set();
        if let Some(supervisor) = archiver::lock(&self.supervisor).take() {
            let _ = supervisor.join();
        }
        let running: Vec<archiver::Handle> = archiver::lock(&self.running)
            .drain()
            .map(|(_, h)| h)
            .collect();
        for handle in running {
            handle.join();
        }
    }
}
