//! `/metrics`: what an operator alerts on, in the Prometheus text format, computed at each
//! scrape from the server's own state (the backup history, the catalog, the plugins, the
//! sessions) so that nothing can drift from what `SHOW BACKUPS` or `SHOW PLUGINS` say.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Observed;

type Labels = Vec<(String, String)>;
type FloatGauges = Family<Labels, Gauge<f64, AtomicU64>>;
type Gauges = Family<Labels, Gauge>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The text of one scrape.
pub fn render(observed: &Observed) -> String {
    let mut registry = Registry::with_prefix("cairn");

    let last_success = FloatGauges::default();
    let last_bytes = Gauges::default();
    let last_duration = FloatGauges::default();
    let failures = Family::<Labels, Counter>::default();
    let running = Gauges::default();
    let progress = FloatGauges::default();
    match observed.backups.history().summary() {
        Ok(summary) => {
            for last in &summary.last {
                let l = labels(&[("database", &last.database), ("kind", &last.kind)]);
                if let Some(ended) = last.ended {
                    last_success
                        .get_or_create(&l)
                        .set(ended.timestamp_millis() as f64 / 1000.0);
                    if let Some(started) = last.started {
                        last_duration
                            .get_or_create(&l)
                            .set((ended - started).num_milliseconds() as f64 / 1000.0);
                    }
                }
                last_bytes.get_or_create(&l).set(last.bytes as i64);
            }
            for (database, kind, n) in &summary.failed {
                failures
                    .get_or_create(&labels(&[("database", database), ("kind", kind)]))
                    .inc_by(*n);
            }
            for (database, kind, percent) in &summary.running {
                let l = labels(&[("database", database), ("kind", kind)]);
                running.get_or_create(&l).set(1);
                progress.get_or_create(&l).set(percent / 100.0);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the backup history could not be read"),
    }
    registry.register(
        "backup_last_success_timestamp_seconds",
        "When the newest complete job of the database of this kind (backup, export, restore, import, drill) ended, Unix time",
        last_success,
    );
    registry.register(
        "backup_last_success_bytes",
        "Size of the newest complete job of the database of this kind (the archive; for a drill, the database restored)",
        last_bytes,
    );
    registry.register(
        "backup_last_success_duration_seconds",
        "How long the newest complete job of the database of this kind took",
        last_duration,
    );
    registry.register(
        "backup_failures",
        "Backups, exports, restores and imports that failed, as the history records them",
        failures,
    );
    registry.register(
        "backup_running",
        "Jobs running now (1 per database and kind)",
        running,
    );
    registry.register(
        "backup_progress_ratio",
        "How far each running job is, 0 to 1",
        progress,
    );

    let size = Gauges::default();
    let wal = Gauges::default();
    match observed.catalog.list() {
        Ok(databases) => {
            for db in databases {
                let l = labels(&[("database", &db.name)]);
                size.get_or_create(&l).set(db.size_bytes as i64);
                wal.get_or_create(&l).set(db.wal_bytes as i64);
            }
        }
        Err(e) => tracing::warn!(error = %e, "metrics: the databases could not be listed"),
    }
    registry.register("database_size_bytes", "Size of the database file", size);
    registry.register(
        "database_wal_bytes",
        "Size of the database's write-ahead log",
        wal,
    );

    let plugins = Gauges::default();
    for p in observed.plugins.list() {
        plugins
            .get_or_create(&labels(&[("plugin", &p.name), ("state", p.state)]))
            .set(1);
    }
    let reloads = Family::<Labels, Counter>::default();
    for (plugin, n) in observed.plugins.reloads() {
        reloads
            .get_or_create(&labels(&[("plugin", &plugin)]))
            .inc_by(n);
    }
    registry.register(
        "plugin_reloads",
        "Reloads (RELOAD PLUGIN, SIGHUP) that left the plugin running, by plugin",
        reloads,
    );
    registry.register(
        "plugin_state",
        "Each plugin, 1 in the state it is in (starting, running, disabled, failed)",
        plugins,
    );

    // What plugins publish (ABI 1.4), under their own names. Names are joined with `_`, so
    // two can meet (plugin `a` gauge `b_c`, plugin `a_b` gauge `c`; plugin `reloads` gauge
    // `total`): the first keeps the name, and a name already taken is left out.
    let mut taken: std::collections::HashSet<String> =
        ["plugin_state", "plugin_reloads", "plugin_reloads_total"]
            .map(String::from)
            .into();
    for (plugin, name, gauge) in observed.plugins.gauges().snapshot() {
        let metric = format!("plugin_{plugin}_{name}");
        if !taken.insert(metric.clone()) {
            tracing::debug!(
                plugin,
                gauge = name,
                metric,
                "a plugin gauge's metric name is taken; left out of the scrape"
            );
            continue;
        }
        let family = FloatGauges::default();
        for (labels, value) in &gauge.series {
            family.get_or_create(labels).set(*value);
        }
        let help = if gauge.help.is_empty() {
            format!("Published by plugin {plugin}")
        } else {
            format!("{} (plugin {plugin})", gauge.help)
        };
        registry.register(metric, help, family);
    }

    let connections = Gauges::default();
    for session in observed.registry.list() {
        connections
            .get_or_create(&labels(&[
                ("user", &session.user),
                ("state", session.doing().state),
            ]))
            .inc();
    }
    registry.register(
        "connections",
        "Logged-in sessions by user and state",
        connections,
    );

    let statements = Family::<Labels, Counter>::default();
    for (outcome, n) in crate::session::outcomes::counts() {
        statements
            .get_or_create(&labels(&[("outcome", outcome)]))
            .inc_by(n);
    }
    registry.register(
        "statements",
        "Statements run since the server started, by outcome (ok, canceled, error)",
        statements,
    );

    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        tracing::warn!(error = %e, "metrics could not be encoded");
    }
    text
}
