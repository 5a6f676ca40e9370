//! `/status`: the running server in one JSON document, what `cairn status` shows. Computed
//! from the same sources as `/metrics` (the catalog, the backup history, the plugins, the
//! sessions); the types are shared with the CLI, which reads them back.

use serde::{Deserialize, Serialize};

use super::Observed;

/// The server as `/status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The server's version.
    pub version: String,
    /// False once shutdown has begun.
    pub ready: bool,
    pub databases: Vec<DatabaseStatus>,
    pub plugins: Vec<PluginStatus>,
    /// Logged-in sessions.
    pub connections: usize,
    pub running_jobs: Vec<RunningJob>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatabaseStatus {
    pub name: String,
    pub size_bytes: u64,
    pub wal_bytes: u64,
    /// The newest complete backup (not export) of the database.
    pub last_backup: Option<LastBackup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastBackup {
    /// When it ended, RFC 3339.
    pub ended_at: String,
    pub bytes: u64,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub version: String,
    pub state: String,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunningJob {
    pub database: String,
    pub kind: String,
    pub percent: f64,
}

/// The status now. A source that cannot be read is logged and left empty: the rest is still
/// worth answering.
pub fn collect(observed: &Observed) -> ServerStatus {
    let summary = observed.backups.history().summary().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "status: the backup history could not be read");
        Default::default()
    });
    let databases = observed.catalog.list().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "status: the databases could not be listed");
        Vec::new()
    });
    ServerStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ready: !observed.stopping.is_cancelled(),
        databases: databases
            .into_iter()
            .map(|db| {
                let last_backup = summary
                    .last
                    .iter()
                    .find(|l| l.database == db.name && l.kind == "backup")
                    .and_then(|l| {
                        let ended = l.ended?;
                        Some(LastBackup {
                            ended_at: ended.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                            bytes: l.bytes,
                            seconds: l
                                .started
                                .map(|s| (ended - s).num_milliseconds() as f64 / 1000.0),
                        })
                    });
                DatabaseStatus {
                    name: db.name,
                    size_bytes: db.size_bytes,
                    wal_bytes: db.wal_bytes,
                    last_backup,
                }
            })
            .collect(),
        plugins: observed
            .plugins
            .list()
            .into_iter()
            .map(|p| PluginStatus {
                name: p.name,
                version: p.version,
                state: p.state.to_owned(),
                last_error: p.last_error,
            })
            .collect(),
        connections: observed.registry.list().len(),
        running_jobs: summary
            .running
            .into_iter()
            .map(|(database, kind, percent)| RunningJob {
                database,
                kind,
                percent,
            })
            .collect(),
    }
}
